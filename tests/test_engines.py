"""Engine profiles: hand-computed defaults and block arithmetic, and the CLI's engine options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vramcalc.catalog import Catalog
from vramcalc.core.engines import resolve_engine
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.engines.sglang import mem_fraction_static
from vramcalc.core.estimate import Workload
from vramcalc.core.scenario import run
from vramcalc.errors import SpecError

Run = Callable[..., CliResult]
CAT = Catalog()


def test_sglang_mem_fraction_static() -> None:
    """0.5.23, H100 (81,559 MiB): reserve 512 + 1.5 x 8192 + 1024 / 8 + 2 x 256 = 13,440 MiB ->
    (81,559 - 13,440) / 81,559 = 0.835. RTX 4090 (24,564): 512 + 6144 + 128 + 96 = 6,880 -> 0.720.
    0.4.6 at tp 1: 0.88 (engines.md 4.1)."""
    assert mem_fraction_static("0.5.23", 81559, 1) == 0.835
    assert mem_fraction_static("0.5.23", 24564, 1) == 0.720
    assert mem_fraction_static("0.4.6", 81559, 1) == 0.88


def test_sglang_fraction_by_release() -> None:
    """Each release's own rule (read in the sglang wheels 0.4.6.post5 to 0.5.23):
    - 0.5.3 on an RTX 4090 (24,564 MiB): 2,048-token chunks and graphs up to 16, so 512 + 3,072 +
      128 + 32 = 3,744 MiB -> (24,564 - 3,744) / 24,564 = 0.848 (0.720 from 0.5.20 on, with 4,096
      and 48); on an H100 the same as 0.5.23, 0.835.
    - 0.4.8 on an RTX 5080 (16,303 MiB): (2.8 + 0.1) GiB = 2,969.6 MiB -> 0.818 (the published
      log sglang-06, ~0.4.10, leaves 13.91 GiB after weights and allocates 11.14 GiB of KV: 13.91 -
      15.16 x (1 - f) = 11.14 gives f = 0.817); on an H100 (9.5 + 0.5) GiB -> 0.874; on an H200
      (143,771) (12 + 0.5) GiB -> 0.911; on an MI300X (196,288) 32 GiB -> 0.833.
    - 0.4.6 above 96 GiB: an MI300X at tp 1 gets min(0.88 + 48 x 1024 x 0.12 / 196,288,
      (196,288 - 18,432) / 196,288) = min(0.910, 0.906) = 0.906; at tp 8 on an 80 GB card 0.81.
    The chunk and graph tier follow the release too: a 4090 takes 2,048 / 8 on 0.4.x, 2,048 / 16
    on 0.5.3, 4,096 / 48 on 0.5.23."""
    from vramcalc.core.engines.sglang import _tier

    assert mem_fraction_static("0.5.3", 24564, 1) == 0.848
    assert mem_fraction_static("0.5.3", 81559, 1) == 0.835
    assert mem_fraction_static("0.4.8", 16303, 1) == 0.818
    assert mem_fraction_static("0.4.8", 81559, 1) == 0.874
    assert mem_fraction_static("0.4.8", 143771, 1) == 0.911
    assert mem_fraction_static("0.4.8", 196288, 1) == 0.833
    assert mem_fraction_static("0.4.6", 196288, 1) == pytest.approx((196288 - 18432) / 196288)
    assert mem_fraction_static("0.4.6", 81559, 8) == 0.81
    assert [_tier(v, 24564, 1) for v in ("0.4.6", "0.4.8", "0.5.3", "0.5.23")] == [
        (2048, 8),
        (2048, 8),
        (2048, 16),
        (4096, 48),
    ]


def test_sglang_and_tgi_give_gemma2_no_window_savings() -> None:
    """Gemma-2-27B on an H100 in bf16: SGLang ~42.5k tokens, TGI ~55.7k (engines.md 9): both count
    all 46 layers at 368 KiB per token, the same pool at ctx 4096 and 8192."""
    m, h100 = CAT.models.get("gemma-2-27b"), CAT.gpus.get("h100-sxm")
    for engine, expected in (("sglang", 42_500), ("tgi", 55_700)):
        for ctx in (4096, 8192):
            view = run(m, Workload(ctx, 1), engine=engine, gpu=h100).view
            assert view is not None
            assert view.value("kv_capacity_tokens") == pytest.approx(expected, rel=0.01)
        assert run(m, Workload(8192, 4), engine=engine).estimate.kv.bytes == 4 * 8192 * 376_832


def test_vllm_hybrid_blocks_per_request() -> None:
    """vLLM 0.33, Gemma-2-27B, H100 defaults (8,192 batched tokens, async x2 in flight): at
    max_model_len 4096 a request needs 256 full-group blocks + (ceil(min(4095 + 16384, 4096)/16) + 1)
    = 257 sliding-group blocks = 513 (engines.md 1.9), so concurrency = blocks / 513. vLLM 0.34's
    blocks hold 64 tokens (vllm/config/cache.py DEFAULT_BLOCK_SIZE): 64 + (ceil(4096/64) + 1) = 129."""
    gemma, h100 = CAT.models.get("gemma-2-27b"), CAT.gpus.get("h100-sxm")
    for engine, per_request, block in (("vllm@0.33", 513, 16), ("vllm@0.34", 129, 64)):
        view = run(gemma, Workload(4096, 1), engine=engine, gpu=h100).view
        assert view is not None
        blocks = int(view.value("num_gpu_blocks"))
        pool = int(view.value("kv_pool_bytes"))
        assert blocks == pool // (block * 2 * 16 * 128 * 2 * 23)  # page x 23 layers per group
        assert view.value("max_concurrency") == round(blocks / per_request, 2)
        assert view.value("kv_capacity_tokens") == int(blocks / per_request * 4096)


def test_vllm_034_sizes_the_kv_cache_after_warmup_by_hand() -> None:
    """vLLM 0.34 (vllm/v1/worker/extensible_kv_cache.py measure_kv_cache_bytes), Llama-3.1-8B bf16
    on one H100 SXM at 8,192 tokens, --sampler flashinfer, gpu_memory_utilization unset (1.0):
    requested R = the CUDA total 85,018,542,080 (81,080 MiB); free at init I = R - CUDA context
    536,870,912 = 84,481,671,168. used = weights 16,094,076,928 + non-torch 139,586,437 + graphs
    536,870,912 = 16,770,534,277. Transient T = peak 1,838,678,016 (1,024 rows x 128,256 x 14 B) +
    graphs = 2,375,548,928; margin = max(1 GiB, 0.75 x T = 1,781,661,696) = 1,781,661,696.
    KV = min(R - used, I - used - margin = 65,929,475,195) - T = 63,553,926,267 B. The plan printed
    before warmup ("Available KV cache memory") is R - weights - peak - non-torch - graphs =
    66,409,329,787 B. With --enforce-eager no graphs are captured or estimated: used and T drop by
    536,870,912 each and the margin by 0.75 x that, 402,653,184: KV 65,030,321,275 B. On ROCm the
    margin's floor is 3 GiB."""
    from vramcalc.core.engines.vllm import extensible_kv_bytes

    m, h100 = CAT.models.get("llama-3.1-8b"), CAT.gpus.get("h100-sxm")
    view = run(
        m, Workload(8192, 1), engine="vllm@0.34", gpu=h100, settings=EngineSettings(sampler="flashinfer")
    ).view
    assert view is not None
    assert view.value("cuda_total_bytes") == view.value("requested_bytes") == 85_018_542_080
    assert view.value("weights_bytes_per_gpu") == 16_094_076_928
    assert view.value("activation_peak_bytes") == 1_838_678_016
    assert view.value("kv_pool_bytes") == 63_553_926_267
    assert view.value("kv_budget_bytes") == 66_409_329_787
    assert view.value("num_gpu_blocks") == 63_553_926_267 // (64 * 2 * 8 * 128 * 2 * 32)
    gib = 2**30  # R 100, I 99, used 20, T 2 GiB: margin max(1, 1.5) = 1.5 GiB (3 on ROCm)
    assert extensible_kv_bytes(100 * gib, 99 * gib, 20 * gib, 2 * gib, rocm=False) == int(75.5 * gib)
    assert extensible_kv_bytes(100 * gib, 99 * gib, 20 * gib, 2 * gib, rocm=True) == 74 * gib
    assert extensible_kv_bytes(50 * gib, 99 * gib, 20 * gib, 2 * gib, rocm=False) == 28 * gib  # util 0.5
    eager = run(
        m,
        Workload(8192, 1),
        engine="vllm@0.34",
        gpu=h100,
        settings=EngineSettings(sampler="flashinfer", enforce_eager=True),
    ).view
    assert eager is not None and eager.value("cuda_graph_bytes") == 0
    assert eager.value("kv_pool_bytes") == 65_030_321_275 == 63_553_926_267 + 2 * 536_870_912 + 402_653_184


def test_vllm_block_page_and_pool() -> None:
    """Llama-3.1-8B: page = 16 tokens x 2 x 8 x 128 x 2 B = 64 KiB per layer; a block id costs
    32 layers x 64 KiB = 2 MiB, so blocks = floor(pool / 2 MiB) and capacity = blocks x 16 (0.19)."""
    view = run(
        CAT.models.get("llama-3.1-8b"), Workload(8192, 1), engine="vllm@0.19", gpu=CAT.gpus.get("l40s")
    ).view
    assert view is not None
    assert view.value("num_gpu_blocks") == int(view.value("kv_pool_bytes")) // (2 * 2**20)
    assert view.value("kv_capacity_tokens") == int(view.value("num_gpu_blocks")) * 16


def test_vllm_tp_splits_weights_and_kv_heads() -> None:
    """tp=2 halves Llama-3.3-70B's matrices and KV heads (8 -> 4 per GPU): KV per token per GPU
    80 x 2 x 4 x 128 x 2 = 163,840 B; tp=16 keeps one KV head per GPU (replicated)."""
    m = CAT.models.get("llama-3.3-70b")
    one = run(m, Workload(8192, 1), quant="fp8").estimate
    two = run(m, Workload(8192, 1), quant="fp8", settings=EngineSettings(tp=2)).estimate
    assert two.kv_bytes_per_token == 163_840 == one.kv_bytes_per_token // 2
    assert two.weights_bytes == pytest.approx(one.weights_bytes / 2, rel=0.01)
    sixteen = run(m, Workload(8192, 1), quant="fp8", settings=EngineSettings(tp=16)).estimate
    assert sixteen.kv_bytes_per_token == 80 * 2 * 1 * 128 * 2


def test_mla_kv_is_not_split_by_tp() -> None:
    """DeepSeek-V3's latent (576 values x 61 layers x 2 B = 70,272 B) is replicated on every rank."""
    m = CAT.models.get("deepseek-v3")
    assert run(m, Workload(4096, 1), settings=EngineSettings(tp=8)).estimate.kv_bytes_per_token == 70_272


def test_vllm_versions_change_window_handling() -> None:
    """Before 0.9.1 Gemma-2's sliding layers were full length: 46 x 8192 B x 8192 tokens; since, with
    --max-num-batched-tokens 512, they keep 4096 + 512 in flight (0.19) -> rounded to 4608."""
    m = CAT.models.get("gemma-2-27b")
    tight = EngineSettings(max_num_batched_tokens=512)
    old = run(m, Workload(8192, 1), engine="vllm@0.9.0", settings=tight).estimate
    new = run(m, Workload(8192, 1), engine="vllm@0.19", settings=tight).estimate
    assert old.kv.bytes == 46 * 8192 * 8192
    assert new.kv.bytes == 23 * 8192 * (8192 + 4608)


def test_transformers_eager_gemma2_quadratic() -> None:
    """Gemma-2-27B bf16, one 8192-token prompt: eager scores 32 x 8192^2 x 6 B = 12 GiB on top of
    50.7 GiB of weights (engines.md 5.5: ~66 GiB peak); with --flash-attn the scores vanish."""
    m = CAT.models.get("gemma-2-27b")
    eager = run(m, Workload(8192, 1), engine="transformers").estimate
    flash = run(
        m, Workload(8192, 1), engine="transformers", settings=EngineSettings(flash_attn=True)
    ).estimate
    assert eager.activations.attention_bytes == 32 * 8192 * 8192 * 6
    assert flash.activations.attention_bytes == 0
    assert 60 * 2**30 < eager.total_bytes < 70 * 2**30


def test_resolve_engine_versions() -> None:
    assert resolve_engine("vllm")[1] == "0.34"
    assert resolve_engine("vllm@0.10.2")[1] == "0.10.2"  # behaves like 0.9.1
    with pytest.raises(
        SpecError,
        match=r"known vllm versions: 0\.6, 0\.6\.5, 0\.7\.1, 0\.8, 0\.9\.0, 0\.9\.1, 0\.11\.1, 0\.19, 0\.20, 0\.33, 0\.34",
    ):
        resolve_engine("vllm@1.2")
    with pytest.raises(SpecError, match="known vllm versions") as older:
        resolve_engine("vllm@0.5")
    assert "newer than the newest" not in str(older.value)
    # A release newer than the newest profile may size memory differently (0.34 did): refused, with
    # the flag that sizes it as the newest profile does.
    with pytest.raises(
        SpecError, match=r"newer than the newest profile.*--engine vllm@0\.34 sizes it as 0\.34"
    ):
        resolve_engine("vllm@0.35")
    with pytest.raises(SpecError, match="not a version"):
        resolve_engine("vllm@latest")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--engine", "vlm"), "unknown --engine 'vlm'; did you mean vllm?"),
        (
            ("--engine", "vllm@9.9"),
            "no profile for vllm 9.9 (known vllm versions: 0.6, 0.6.5, 0.7.1, 0.8, 0.9.0, 0.9.1, 0.11.1, 0.19, 0.20, 0.33, 0.34",
        ),
        (("--gpu-util", "1.5"), "--gpu-util must be in (0, 1], got 1.5"),
        (("--gpu-util", "0"), "--gpu-util must be in (0, 1]"),
        (("--engine", "transformers", "--max-num-seqs", "8"), "transformers has no --max-num-seqs setting"),
        (("--ubatch", "512"), "vllm has no --ubatch setting (vllm takes: --gpu-util, --max-num-seqs"),
        (("--tp", "3"), "--tp 3 does not divide gemma-2-27b's 32 attention heads"),
        (("--kv-dtype", "q8_0"), "vllm has no q8_0 KV cache (--kv-dtype for vllm: auto, bf16, fp16, fp8)"),
        (("--quant", "Q4_K_M"), "vllm does not serve GGUF weights (Q4_K_M)"),
        (("--max-num-seqs", "0"), "--max-num-seqs must be a positive integer"),
    ],
)
def test_engine_bad_input(run_cli: Run, args: tuple[str, ...], needle: str) -> None:
    r = run_cli("estimate", "gemma-2-27b", *args)
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_engine_json_view(run_cli: Run) -> None:
    """--gpu adds the engine's own figures under `engine` in the JSON."""
    d = json.loads(
        run_cli("estimate", "llama-3.1-8b", "--ctx", "16000", "--gpu", "h100-sxm", "--json").stdout
    )
    engine = d["engine"]
    for key in (
        "weights_bytes_per_gpu",
        "activation_peak_bytes",
        "non_torch_bytes",
        "cuda_graph_bytes",
        "kv_pool_bytes",
        "kv_capacity_tokens",
        "max_concurrency",
        "starts",
    ):
        assert key in engine
    assert engine["settings"]["max_num_seqs"] == 1024  # H100 tier of vllm serve
    assert engine["starts"] is True
    hf = json.loads(
        run_cli(
            "estimate", "qwen2.5-7b", "--engine", "transformers", "--gpu", "a100-80gb-sxm", "--json"
        ).stdout
    )
    assert hf["engine"]["peak_bytes"] > hf["weights"]["bytes"]


def test_engine_table_view_speaks_the_engines_words(run_cli: Run) -> None:
    out = " ".join(run_cli("estimate", "llama-3.1-8b", "--ctx", "16000", "--gpu", "h100-sxm").stdout.split())
    assert "What vllm 0.34 will do on h100-sxm" in out
    assert "GPU KV cache size:" in out and "Maximum concurrency for 16,000 tokens per request" in out


def test_refusal_to_start_is_reported(run_cli: Run) -> None:
    """Qwen3-32B bf16 at 32,000 tokens on one H100: vLLM's KV pool holds ~18k tokens, so it refuses."""
    r = run_cli(
        "estimate", "qwen3-32b", "--ctx", "32000", "--gpu", "h100-sxm", "--engine", "vllm@0.19", "--json"
    )
    d = json.loads(r.stdout)
    assert d["engine"]["starts"] is False
    assert any("refuse to start" in n for n in d["engine"]["notes"])


def test_vllm_sampler_path_is_a_range_unless_pinned(run_cli: Callable[..., CliResult]) -> None:
    """vLLM's profile run samples max_num_seqs rows of vocab-sized logits; the bytes per logit
    depend on the top-k/top-p path the install takes. Gemma-2-27B on an RTX 4090 (vLLM 0.33: 256
    rows, 256,000 vocab): PyTorch sort path 256 x 256,000 x 38.9 B = 2,549,350,400 B, FlashInfer
    256 x 256,000 x 14 B = 917,504,000 B (both above the 2,048-token forward). Unpinned, the
    figures are those of the path 0.33's images take (FlashInfer's kernels, #40376) and carry the
    range: the KV pool is 1,631,846,400 B smaller at the sort-path end; --sampler pins one path
    and the range goes."""
    args = (
        "estimate", "gemma-2-27b", "--bits", "4", "--ctx", "4096", "--users", "10", "--gpu", "rtx-4090",
        "--engine", "vllm@0.33",
    )  # fmt: skip
    unknown = json.loads(run_cli(*args, "--json").stdout)["engine"]
    pinned_pt = json.loads(run_cli(*args, "--sampler", "pytorch", "--json").stdout)["engine"]
    pinned_fi = json.loads(run_cli(*args, "--sampler", "flashinfer", "--json").stdout)["engine"]
    assert unknown["activation_peak_bytes"] == pinned_fi["activation_peak_bytes"] == 917_504_000
    assert pinned_pt["activation_peak_bytes"] == 2_549_350_400
    assert unknown["ranges"]["activation_peak_bytes"] == [917_504_000, 2_549_350_400]
    low, high = unknown["ranges"]["kv_pool_bytes"]
    assert high == unknown["kv_pool_bytes"] == pinned_fi["kv_pool_bytes"]
    assert high - low == 2_549_350_400 - 917_504_000 and low == pinned_pt["kv_pool_bytes"]
    assert unknown["ranges"]["num_gpu_blocks"] == [pinned_pt["num_gpu_blocks"], unknown["num_gpu_blocks"]]
    assert pinned_pt["ranges"] == {} and pinned_fi["ranges"] == {}
    assert "FlashInfer's kernels is the main value" in unknown["range_reason"]
    table = run_cli(*args).stdout
    assert "Available KV cache memory: 5.35 GiB (range 3.83 GiB to 5.35 GiB)" in table


def test_the_sampler_default_follows_the_release() -> None:
    """The path each release's standard images take in the profile: FlashInfer from #11394 (0.7)
    to #26859 (0.11.1), PyTorch's sort path until the V2 model runner's logits-only profile
    (0.25-0.32; for MoE models from 0.29), FlashInfer's again in 0.33's full-feature pass; V0
    always sorts."""
    from vramcalc.core.engines.vllm import default_sampler

    dense, moe = CAT.models.get("llama-3.1-8b"), CAT.models.get("qwen3-30b-a3b")
    versions = (
        "0.9.0",
        "0.10.1.1",
        "0.11.0",
        "0.11.1",
        "0.19.1",
        "0.24.0",
        "0.25.0",
        "0.28",
        "0.32.0",
        "0.33",
        "0.34",
    )
    assert [default_sampler(v, dense) for v in versions] == [
        "flashinfer", "flashinfer", "flashinfer", "pytorch", "pytorch", "pytorch", "v2", "v2", "v2",
        "flashinfer", "flashinfer",
    ]  # fmt: skip
    assert [default_sampler(v, moe) for v in ("0.27.1", "0.28", "0.29.0", "0.32.0")] == [
        "pytorch", "pytorch", "v2", "v2"
    ]  # fmt: skip


def test_v2_runner_profile_by_hand(run_cli: Run, tmp_path: Path) -> None:
    """vLLM 0.27.1, Qwen2.5-0.5B on an RTX 4090 at 2,048 tokens: the V2 model runner's profile
    computes 256 rows x 151,936 logits in bf16 and samples them with nothing else on: 256 x
    151,936 x 2 B = 77,791,232 B, above the 2,048-token forward. A published warm start of that
    setup (tests/fixtures/logs/published/vllm-d-06) logs 0.08 GiB. The range's other end is the
    sort path's 38.9 B (a cold start's torch.compile peak sits near it): 1,513,058,304 B. Pinning
    v2 launches VLLM_USE_V2_MODEL_RUNNER=1; pinning a top-k/top-p path on such a release launches
    the V1 runner (=0)."""
    args = (
        "estimate",
        "qwen2.5-0.5b",
        "--ctx",
        "2048",
        "--gpu",
        "rtx-4090",
        "--engine",
        "vllm@0.27.1",
        "--json",
    )
    e = json.loads(run_cli(*args).stdout)["engine"]
    assert e["activation_peak_bytes"] == 256 * 151_936 * 2 == 77_791_232
    assert e["ranges"]["activation_peak_bytes"] == [77_791_232, int(256 * 151_936 * 38.9)]
    assert "V2 model runner's logits-only profile" in e["range_reason"]
    plan = tmp_path / "p.yaml"
    body = (
        "deployments:\n  - model: qwen2.5-0.5b\n    engine: vllm@0.27.1\n    gpu: rtx-4090\n"
        "    ctx: 2048\n    users: 2\n    settings:\n      sampler: {}\n"
    )
    plan.write_text(body.format("v2"))
    assert "VLLM_USE_V2_MODEL_RUNNER=1" in run_cli("plan", "emit", str(plan)).stdout
    plan.write_text(body.format("flashinfer"))
    out = run_cli("plan", "emit", str(plan)).stdout
    assert "VLLM_USE_V2_MODEL_RUNNER=0" in out and "VLLM_USE_FLASHINFER_SAMPLER=1" in out


def test_check_sizes_an_unpinned_sampler_on_the_larger_peak(tmp_path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A plan that does not pin the sampler is checked on the sort path's larger peak (the
    pessimistic end) although 0.34's main figure is FlashInfer's: its assessment equals the one
    with `sampler: pytorch`, and pinning flashinfer gives a larger KV pool. On 0.34 the peak is
    kept free once and its margin (0.75 x the transient, above the 1 GiB floor at both ends) once
    more: the pools differ by 1.75 x (2,549,350,400 - 917,504,000) = 2,855,731,200 B."""
    body = (
        "deployments:\n  - model: gemma-2-27b\n    bits: 4\n    gpu: rtx-4090\n    ctx: 4096\n    users: 2\n"
    )
    plan = tmp_path / "p.yaml"

    def pool(extra: str) -> int:
        plan.write_text(body + extra)
        return int(
            json.loads(run_cli("check", str(plan), "--json").stdout)["deployments"][0]["assessment"][
                "kv_pool_bytes"
            ]
        )

    unpinned = pool("")
    assert unpinned == pool("    settings:\n      sampler: pytorch\n")
    assert pool("    settings:\n      sampler: flashinfer\n") - unpinned == 2_855_731_200


def test_sampler_bad_input(run_cli: Callable[..., CliResult]) -> None:
    """An unknown path names the two known; --sampler on an engine without it is refused."""
    bad = run_cli("estimate", "gemma-2-27b", "--sampler", "triton")
    assert bad.exit_code == 2 and "choose flashinfer, pytorch or v2" in bad.stderr
    other = run_cli("estimate", "gemma-2-27b", "--engine", "llama.cpp", "--sampler", "pytorch")
    assert other.exit_code == 2 and "llama.cpp has no --sampler setting" in other.stderr


def test_nccl_nvls_buffers_by_board_tp_and_release() -> None:
    """NCCL's NVLS buffer per rank (NVIDIA/nccl src/transport/nvls.cc: nvlsTotalSize = ranks x
    channels x 2 x per-channel buffer, allocated whole on every rank; two communicators per vLLM
    rank until NCCL connects lazily):
    - 8 H200, vLLM 0.6 (NCCL 2.20): 2 x 8 x 24 x 12 MiB = 4,608 MiB. vllm#9699 prints
      nvlsTotalSize 2,415,919,104 B = 8 x 24 x 12 MiB for one communicator, and its blocks with
      NVLS on and off differ by 4.9-5.0 GiB per rank (4.5 GiB here);
    - 8 H200, 0.7.x (NCCL 2.21.5, 1 MiB chunks + 2 MiB): 2 x 8 x 24 x 6 MiB = 2,304 MiB;
    - 4 H100 SXM, 0.8: 2 x 4 x 24 x 6 MiB = 1,152 MiB;
    - 8 H100 SXM, 0.11.1 (NCCL 2.27, lazy, PyNccl only): 8 x 16 x 2 MiB = 256 MiB;
    - none at TP 2 (NCCL returns for gpuCount <= 2), on PCIe cards (H100 PCIe, L40S), on the
      A100 (sm_80: no NVLS) or on AMD."""
    from vramcalc.core.engines.vllm import non_torch_bytes, nvls_bytes
    from vramcalc.units import GIB, MIB

    gpus = Catalog().gpus
    h200, h100 = gpus.get("h200"), gpus.get("h100-sxm")
    assert nvls_bytes(h200, 8, "0.6") == 4608 * MIB
    assert nvls_bytes(h200, 8, "0.7.1") == 2304 * MIB
    assert nvls_bytes(h100, 4, "0.8") == 1152 * MIB
    assert nvls_bytes(h100, 8, "0.11.1") == 256 * MIB
    assert nvls_bytes(h100, 2, "0.7.1") == 0
    for other in ("h100-pcie", "l40s", "a100-80gb-sxm", "mi300x"):
        assert nvls_bytes(gpus.get(other), 8, "0.7.1") == 0
    # One rank's non-torch: 0.13 GiB of its own + 0.42 GiB of ring buffers and custom all-reduce
    # + NVLS: 0.55 GiB on 2 A100s (the calibrated TP-2 record), 2.80 GiB on 8 H200s at 0.7.x.
    assert non_torch_bytes(gpus.get("a100-80gb-sxm"), 2, "0.7.1") == int(0.13 * GIB) + int(0.42 * GIB)
    assert non_torch_bytes(h200, 8, "0.7.1") == int(0.13 * GIB) + int(0.42 * GIB) + 2304 * MIB
    assert non_torch_bytes(h200, 8, "0.7.1", nvls=False) == int(0.13 * GIB) + int(0.42 * GIB)


def test_nccl_nvls_pin_collapses_the_range(run_cli: Run, tmp_path: Path) -> None:
    from vramcalc.units import MIB

    """Llama-3.1-70B fp8 on 4 H100 SXM at vLLM 0.34 (NCCL 2.22+: 4 ranks x 16 channels x 2 MiB =
    128 MiB of NVLS per GPU). Unpinned, non-torch counts them and the KV pool's high end is the pool
    without them; --nccl-nvls pins the main value, --no-nccl-nvls (NCCL_NVLS_ENABLE=0) the other
    end, and neither carries an NVLS range. plan emit launches the off regime with the variable."""
    args = ("estimate", "llama-3.1-70b", "--quant", "fp8", "--tp", "4", "--gpu", "h100-sxm", "--ctx", "8192",
            "--sampler", "flashinfer", "--gpu-p2p", "--json")  # fmt: skip
    unset = json.loads(run_cli(*args).stdout)["engine"]
    on = json.loads(run_cli(*args, "--nccl-nvls").stdout)["engine"]
    off = json.loads(run_cli(*args, "--no-nccl-nvls").stdout)["engine"]
    assert (
        unset["non_torch_bytes"] - off["non_torch_bytes"]
        == 128 * MIB
        == on["non_torch_bytes"] - off["non_torch_bytes"]
    )
    assert unset["ranges"]["non_torch_bytes"] == [off["non_torch_bytes"], on["non_torch_bytes"]]
    assert unset["ranges"]["kv_pool_bytes"] == [on["kv_pool_bytes"], off["kv_pool_bytes"]]
    assert on["ranges"] == {} and off["ranges"] == {}
    assert "NVLS" in unset["range_reason"] and "range_reason" not in on
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "deployments:\n  - model: llama-3.1-8b\n    gpu: h100-sxm\n    gpu_count: 4\n"
        "    layout: tensor-parallel\n    ctx: 8192\n    users: 4\n    settings:\n      nccl_nvls: false\n"
    )
    r = run_cli("plan", "emit", str(plan))
    assert r.exit_code == 0 and "NCCL_NVLS_ENABLE=0" in r.stdout, r.stderr
    bad = run_cli("estimate", "llama-3.1-8b", "--engine", "sglang", "--no-nccl-nvls")
    assert bad.exit_code == 2 and "sglang has no --nccl-nvls/--no-nccl-nvls setting" in bad.stderr


def test_nvls_is_a_range_that_narrows_the_deepseek_log(run_cli: Run) -> None:
    """vllm-a-04 (8 H200, DeepSeek-R1 FP8, vLLM 0.7.3) logs non_torch_memory 7.16 GiB and 21.43 GiB
    for KV (its command: --max-num-seqs 1024 --max-num-batched-tokens 32000). With the NVLS buffers
    ours is 2.80 GiB (0.55 before) and the KV pool +28.6% (was +39.1%); the rest (4.4 GiB) is not explained by the sources read. The figure carries the
    range [0.55, 2.80] GiB: NCCL_NVLS_ENABLE=0 frees the NVLS part."""
    from tests.test_calibrate import PUBLISHED

    r = run_cli(
        "calibrate", str(PUBLISHED / "vllm-a-04-h200-deepseek-r1.log"), "--gpu", "h200", "--model",
        "deepseek-r1", "--tp", "8", "--quantization", "fp8", "--version", "0.7.3", "--max-num-seqs", "1024",
        "--max-num-batched-tokens", "32000", "--json",
    )  # fmt: skip
    report = json.loads(r.stdout)
    figs = {f["key"]: f for f in report["figures"]}
    assert figs["kv_pool_bytes"]["theirs"] / 2**30 == pytest.approx(21.43, abs=0.005)
    assert figs["kv_pool_bytes"]["ours"] / figs["kv_pool_bytes"]["theirs"] - 1 == pytest.approx(
        0.286, abs=0.002
    )
    est = json.loads(
        run_cli(
            "estimate", "deepseek-r1", "--gpu", "h200", "--tp", "8", "--engine", "vllm@0.7.3", "--ctx", "8192",
            "--json",
        ).stdout
    )  # fmt: skip
    main = int(0.13 * 2**30) + int(0.42 * 2**30) + 2304 * 2**20
    # The low end also drops the ring buffers: whether the H200s reach each other peer to peer is not given.
    assert est["engine"]["ranges"]["non_torch_bytes"] == [int(0.13 * 2**30), main]
    pinned = json.loads(
        run_cli(
            "estimate", "deepseek-r1", "--gpu", "h200", "--tp", "8", "--engine", "vllm@0.7.3", "--ctx", "8192",
            "--gpu-p2p", "--json",
        ).stdout
    )  # fmt: skip
    assert pinned["engine"]["ranges"]["non_torch_bytes"] == [main - 2304 * 2**20, main]


def test_gpu_p2p_decides_where_nccl_keeps_its_ring_buffers(run_cli: Run, tmp_path: Path) -> None:
    """NCCL's P2P transport keeps its ring buffers in device memory (src/transport/p2p.cc); without
    P2P the SHM transport keeps them in host memory (src/transport/shm.cc). One rank at vLLM 0.11.1:
    0.13 GiB alone; + 0.42 GiB of ring buffers and custom all-reduce at TP 2 with P2P.
    - A100 SXM (datacenter: P2P by default): 0.13 + 0.42 = 0.55 GiB; --no-gpu-p2p 0.13 GiB.
    - RTX 4090 (GeForce: no P2P with the stock driver, NVIDIA/nccl#1127): 0.13 GiB; the range's other
      end 0.55 GiB, and the KV pool's low end (the verdict's side) is 0.42 GiB below the main value.
    - Pinned, no range; plan emit launches the no-P2P regime with NCCL_P2P_DISABLE=1.
    - vllm-c-04 (2 A100 pods, the log's "Custom allreduce is disabled because your platform lacks GPU
      P2P capability", wrapped over two lines): KV pool 31.83 GiB logged, ours 31.87 (+0.1%; -1.2%
      with the ring buffers counted)."""
    from tests.test_calibrate import PUBLISHED
    from vramcalc.core.engines.vllm import non_torch_bytes
    from vramcalc.units import GIB

    gpus = Catalog().gpus
    a100, rtx = gpus.get("a100-80gb-sxm"), gpus.get("rtx-4090")
    alone, extra = int(0.13 * GIB), int(0.42 * GIB)
    assert non_torch_bytes(a100, 2, "0.11.1") == alone + extra
    assert non_torch_bytes(a100, 2, "0.11.1", p2p=False) == alone
    assert non_torch_bytes(rtx, 2, "0.11.1") == alone
    assert non_torch_bytes(rtx, 2, "0.11.1", p2p=True) == alone + extra
    assert non_torch_bytes(rtx, 1, "0.11.1", p2p=True) == alone
    args = ("estimate", "qwen2.5-7b", "--gpu", "rtx-4090", "--tp", "2", "--engine", "vllm@0.11.1", "--ctx",
            "8192", "--sampler", "flashinfer", "--json")  # fmt: skip
    unset = json.loads(run_cli(*args).stdout)["engine"]
    assert unset["non_torch_bytes"] == alone
    assert unset["ranges"]["non_torch_bytes"] == [alone, alone + extra]
    low, high = unset["ranges"]["kv_pool_bytes"]
    assert high == unset["kv_pool_bytes"] and unset["kv_pool_bytes"] - low == extra
    assert "peer-to-peer" in unset["range_reason"]
    on = json.loads(run_cli(*args, "--gpu-p2p").stdout)["engine"]
    assert on["non_torch_bytes"] == alone + extra and on["ranges"] == {}
    one = run_cli("estimate", "qwen2.5-7b", "--gpu", "rtx-4090", "--engine", "vllm@0.11.1", "--no-gpu-p2p")
    assert one.exit_code in (0, 1) and "one GPU: --gpu-p2p and --nccl-nvls change nothing" in " ".join(
        one.stdout.split()
    )
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "deployments:\n  - model: qwen2.5-7b\n    gpu: rtx-4090\n    gpu_count: 2\n"
        "    layout: tensor-parallel\n    ctx: 8192\n    users: 4\n    settings:\n      gpu_p2p: false\n"
    )
    r = run_cli("plan", "emit", str(plan))
    assert r.exit_code == 0 and "NCCL_P2P_DISABLE=1" in r.stdout, r.stderr
    log = run_cli(
        "calibrate", str(PUBLISHED / "vllm-c-04-a100-80gb-qwen2-7b-tp2.log"), "--gpu", "a100-80gb-sxm",
        "--model", "qwen2.5-7b", "--json",
    )  # fmt: skip
    report = json.loads(log.stdout)
    pool = next(f for f in report["figures"] if f["key"] == "kv_pool_bytes")
    assert pool["theirs"] / GIB == pytest.approx(31.83, abs=0.005)
    assert pool["ours"] / pool["theirs"] - 1 == pytest.approx(0.0013, abs=0.001)


def test_cuda_graph_estimate_moves_inside_the_budget_at_0_20() -> None:
    """vllm/envs.py VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to "0" in 0.19.1 and "1" from
    0.20.0 (release sdists), and gpu_worker.py then takes the estimate out of the KV budget. Llama-3.1-8B
    on an L40S at the same gpu_memory_utilization 0.9 and sampler: 0.20's pool is the 512 MiB
    estimate smaller, and the process no longer holds the graphs beside its budget (it held
    requested + context + graphs), so it is 512 MiB smaller too."""
    m, l40s = CAT.models.get("llama-3.1-8b"), CAT.gpus.get("l40s")
    pinned = EngineSettings(gpu_util=0.9, sampler="pytorch")
    before = run(m, Workload(8192, 1), engine="vllm@0.19", gpu=l40s, settings=pinned).view
    after = run(m, Workload(8192, 1), engine="vllm@0.20", gpu=l40s, settings=pinned).view
    assert before is not None and after is not None
    assert int(before.value("kv_pool_bytes")) - int(after.value("kv_pool_bytes")) == 536_870_912
    assert int(before.value("process_bytes")) - int(after.value("process_bytes")) == 536_870_912


def test_vllm_batch_defaults_by_release_and_card() -> None:
    """`vllm serve`'s max_num_seqs / max_num_batched_tokens (vllm/engine/arg_utils.py
    get_batch_defaults, read in the release sdists): >= 70 GiB and not an A100 -> 1024 / 8192 (0.9.0
    on); >= 160 GiB -> 1024 / 16384 from 0.28.0 (a B200 at 0.27 is in the 70 GiB tier); a GB10 (DGX
    Spark) leaves the 70 GiB tier at 0.33.0; an A100 80GB stays at 256 / 2048."""
    from vramcalc.core.engines.vllm import _batch_defaults

    b200, spark, a100 = CAT.gpus.get("b200"), CAT.gpus.get("dgx-spark-gb10"), CAT.gpus.get("a100-80gb-sxm")
    assert _batch_defaults("0.27.1", b200) == (1024, 8192)
    assert _batch_defaults("0.28.0", b200) == (1024, 16384)
    assert _batch_defaults("0.32.0", spark) == (1024, 8192)
    assert _batch_defaults("0.33", spark) == (256, 2048)
    assert _batch_defaults("0.34", a100) == (256, 2048)


def test_window_in_flight_and_capacity_report_follow_the_release() -> None:
    """Gemma-2-27B (23 sliding layers, window 4,096) at 8,192 tokens with --max-num-batched-tokens 512.
    A sliding layer keeps window - 1 + the tokens in flight, rounded to blocks: one batch (512) up to
    0.25, max_concurrent_batches (2 with async scheduling) x 512 from 0.26.0
    (VllmConfig.max_in_flight_tokens, release sdists): 4,095 + 512 -> 4,608 and 4,095 + 1,024 -> 5,120
    tokens of 8,192 B. "GPU KV cache size" is blocks // groups x 16 in 0.20 and
    int(max_concurrency x max_model_len) from 0.21.0 (kv_cache_utils.get_kv_cache_capacity)."""
    m = CAT.models.get("gemma-2-27b")
    tight = EngineSettings(max_num_batched_tokens=512)
    one = run(m, Workload(8192, 1), engine="vllm@0.25", settings=tight).estimate
    two = run(m, Workload(8192, 1), engine="vllm@0.26", settings=tight).estimate
    assert one.kv.bytes == 23 * 8192 * (8192 + 4608)
    assert two.kv.bytes == 23 * 8192 * (8192 + 5120)
    h100 = CAT.gpus.get("h100-sxm")
    old = run(m, Workload(8192, 1), engine="vllm@0.20", gpu=h100, settings=tight).view
    new = run(m, Workload(8192, 1), engine="vllm@0.21", gpu=h100, settings=tight).view
    assert old is not None and new is not None
    assert old.value("kv_capacity_tokens") == int(old.value("num_gpu_blocks")) // 2 * 16
    # blocks per request at 0.21 (one batch in flight): 8,192 / 16 + (ceil(4,607 / 16) + 1) = 801
    conc = int(new.value("num_gpu_blocks")) / (512 + 289)
    assert new.value("kv_capacity_tokens") == int(conc * 8192)


def test_which_engines_prefill_apart_from_the_decodes() -> None:
    """Prompts in steps of their own (core/serving.py _apart): SGLang always (enable_mixed_chunk
    off by default), vLLM V0 without chunked prefill (at most 32K context), never vLLM V1 or
    llama.cpp (chunks ride in the decode steps)."""
    m = CAT.models.get("llama-3.1-8b")
    gpu = CAT.gpus.get("h100-sxm")

    def apart(engine: str, ctx: int) -> bool:
        return run(m, Workload(ctx, 4), engine=engine, gpu=gpu).estimate.plan.prefill_apart

    assert apart("sglang", 8192) and apart("vllm@0.6", 8192) and apart("vllm@0.8", 32768)
    assert not apart("vllm@0.8", 65536) and not apart("vllm@0.9.0", 8192) and not apart("vllm", 8192)
    assert not apart("llama.cpp", 8192)
