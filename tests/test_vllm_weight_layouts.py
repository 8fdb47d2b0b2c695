"""vLLM's memory beyond the checkpoint's bytes.

- MXFP4 MoE (gpt-oss): the kernel each GPU takes, the bytes its layout adds, the range where the
  kernel depends on the install, and the published "Model loading took" figures.
- MLA (DeepSeek) in 0.7.x: the absorbed copies.
- The fused MoE kernel's buffers, and the budget line vLLM 0.10.2+ prints.

Source: vllm/model_executor/layers/quantization/mxfp4.py (get_mxfp4_backend, create_weights,
process_weights_after_loading); records in tests/calibration/vllm_mxfp4_weights.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml

from tests.conftest import ROOT, CliResult
from vramcalc.catalog import Catalog
from vramcalc.core.engines import vllm

CAT = Catalog()
GPT_OSS_120B = CAT.models.get("gpt-oss-120b")
Run = Callable[..., CliResult]
RECORDS = yaml.safe_load((ROOT / "tests/calibration/vllm_mxfp4_weights.yaml").read_text())["records"]


def test_marlin_padding_at_tp4_by_hand() -> None:
    """gpt-oss-120b (hidden 2880, expert width 2880, 128 experts, 36 layers, expert biases), TP 4:
    I = 720 -> 768 (multiple of 128), H = 2880 -> 3072 (multiple of 256).
    Matrices: 3 x (768 x 3072 - 720 x 2880) x 17/32 = 3 x 285,696 x 0.53125 = 455,328 B;
    bf16 biases: (2 x 768 + 3072) x 2 - (2 x 720 + 2880) x 2 = 9,216 - 8,640 = 576 B;
    455,904 B x 128 x 36 = 2,100,805,632 B per rank."""
    assert vllm.mxfp4_padding_bytes(GPT_OSS_120B, 4, "marlin") == 2_100_805_632


def test_triton_keeps_scales_twice_by_hand() -> None:
    """TP 1, Triton: 2880 is already a multiple of 64, so no padding; the checkpoint's scales stay
    beside the swizzled copy: 3 x 2880 x 2880 / 32 = 777,600 B; biases in float32: (5760 + 2880) x
    (4 - 2) = 17,280 B; 794,880 B x 4,608 expert-layers = 3,662,807,040 B."""
    assert vllm.mxfp4_padding_bytes(GPT_OSS_120B, 1, "triton") == 3_662_807_040


def test_marlin_at_tp1_by_hand() -> None:
    """TP 1, Marlin: 2880 -> 2944 and 3072: 3 x (2944 x 3072 - 2880^2) x 17/32 = 3 x 749,568 x
    0.53125 = 1,194,624 B; biases (5888 + 3072) x 2 - 8640 x 2 = 640 B; x 4,608 = 5,507,776,512 B."""
    assert vllm.mxfp4_padding_bytes(GPT_OSS_120B, 1, "marlin") == 5_507_776_512


@pytest.mark.parametrize(
    ("gpu", "backends"),
    [
        ("a100-80gb-sxm", ("marlin",)),  # sm_80: Marlin only
        ("rtx-4090", ("marlin",)),  # sm_89
        ("rtx-5090", ("marlin",)),  # sm_120: outside triton_kernels' 9.0-11.0
        ("h100-sxm", ("triton", "marlin")),  # triton_kernels installed or not
        ("b200", ("flashinfer", "triton")),  # FlashInfer installed or not
        ("mi300x", ()),  # no CUDA compute capability: checkpoint layout
    ],
)
def test_backends_by_compute_capability(gpu: str, backends: tuple[str, ...]) -> None:
    assert vllm.mxfp4_backends(CAT.gpus.get(gpu)) == backends


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_published_model_loading(record: dict[str, object], run_cli: Run) -> None:
    """Ours with the log's kernel pinned against the logged figure: within 0.5% (the logs print 2-4
    decimals of GiB; ours also counts the 33 MiB rotary cache vLLM builds at load). Measured
    2026-12-08: A100 TP4 Marlin 17.2389 vs 17.2217 GiB (+0.10%), H100 Marlin 65.913 vs 65.965
    (-0.08%), H100 Triton 64.195 vs 64.38 (-0.29%)."""
    r = run_cli(
        "estimate", str(record["model"]), "--gpu", str(record["gpu"]), "--tp", str(record["tp"]),
        "--mxfp4-backend", str(record["backend"]), "--json",
    )  # fmt: skip
    assert r.exit_code in (0, 1), r.stderr
    ours = json.loads(r.stdout)["engine"]["weights_bytes_per_gpu"] / 2**30
    measured = float(record["weights_gib"])  # type: ignore[arg-type]
    assert abs(ours - measured) / measured <= 0.005, (ours, measured)


def _engine(run_cli: Run, *args: str) -> dict[str, object]:
    r = run_cli("estimate", "gpt-oss-120b", "--ctx", "32768", "--users", "1", *args, "--json")
    assert r.exit_code in (0, 1), r.stderr
    out: dict[str, object] = json.loads(r.stdout)
    return out


def test_hopper_range_and_pessimistic_verdict(run_cli: Run) -> None:
    """On an H100 the kernel depends on the install: the weights figure is a range from Triton's
    layout to Marlin's, and the verdict counts the low end of the pool. With the sort-path sampler
    and Marlin, gpt-oss-120b leaves no KV pool at 0.9 utilisation, as vllm#23278 logged
    ("Available KV cache memory: -2.14 GiB", failed to start); pinned to Triton and FlashInfer's
    sampler it starts."""
    out = _engine(run_cli, "--gpu", "h100-sxm")
    ranges = out["engine"]["ranges"]  # type: ignore[index]
    low, high = ranges["weights_bytes_per_gpu"]
    assert (low, high) == (
        out["weights"]["bytes"],  # type: ignore[index]
        out["weights"]["bytes"]  # type: ignore[index]
        - vllm.mxfp4_padding_bytes(GPT_OSS_120B, 1, "triton")
        + vllm.mxfp4_padding_bytes(GPT_OSS_120B, 1, "marlin"),
    )
    assert ranges["kv_pool_bytes"][0] < 0 < ranges["kv_pool_bytes"][1]
    assert ranges["starts"] == [False, True]
    assert out["assessment"]["verdict"] == "does_not_start"  # type: ignore[index]
    pinned = _engine(run_cli, "--gpu", "h100-sxm", "--mxfp4-backend", "triton", "--sampler", "flashinfer")
    assert pinned["engine"]["ranges"] == {}  # type: ignore[index]
    assert pinned["assessment"]["verdict"] == "fits"  # type: ignore[index]


def test_no_range_where_the_gpu_decides(run_cli: Run) -> None:
    """An A100 can only take Marlin: no weights range, only the sampler's."""
    ranges = _engine(run_cli, "--gpu", "a100-80gb-sxm")["engine"]["ranges"]  # type: ignore[index]
    assert "weights_bytes_per_gpu" not in ranges


def test_decode_does_not_stream_the_layout_extras() -> None:
    """The padding and the second copy of the scales are memory, not bytes a decode step reads:
    the plan marks them unread, so speed sees the checkpoint's weights (+ rotary cache)."""
    from vramcalc.core.engines.base import EngineSettings
    from vramcalc.core.estimate import Workload
    from vramcalc.core.scenario import run

    sc = run(GPT_OSS_120B, Workload(4096, 1), gpu=CAT.gpus.get("a100-80gb-sxm"), settings=EngineSettings())
    assert sc.estimate.plan.unread_weight_bytes == vllm.mxfp4_padding_bytes(GPT_OSS_120B, 1, "marlin")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--gpu", "a100-80gb-sxm", "--mxfp4-backend", "flashinfer"], "vLLM does not take it on NVIDIA A100"),
        (["--gpu", "h100-sxm", "--mxfp4-backend", "marlni"], "did you mean marlin?"),
        (["--gpu", "mi300x", "--mxfp4-backend", "marlin"], "on AMD Instinct MI300X: drop it"),
        (
            ["--gpu", "h100-sxm", "--engine", "sglang", "--mxfp4-backend", "marlin"],
            "sglang has no --mxfp4-backend",
        ),
    ],
)
def test_bad_backend_is_one_line(args: list[str], words: str, run_cli: Run) -> None:
    r = run_cli("estimate", "gpt-oss-120b", *args)
    assert r.exit_code == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_kernel_and_sampler_names_ignore_case(run_cli: Run) -> None:
    r = run_cli(
        "estimate",
        "gpt-oss-20b",
        "--gpu",
        "h100-sxm",
        "--mxfp4-backend",
        "MARLIN",
        "--sampler",
        "PyTorch",
        "--json",
    )
    assert r.exit_code in (0, 1), r.stderr
    engine = json.loads(r.stdout)["engine"]
    assert engine["settings"]["mxfp4_backend"] == "marlin" and engine["ranges"] == {}


def test_backend_on_a_dense_model_is_refused(run_cli: Run) -> None:
    r = run_cli("estimate", "llama-3.1-8b", "--gpu", "h100-sxm", "--mxfp4-backend", "triton")
    assert r.exit_code == 2 and "here the weights are bf16: drop it" in r.stderr


def test_calibrate_reads_the_kernel_from_the_log(run_cli: Run) -> None:
    log = ROOT / "tests/fixtures/logs/published/vllm-c-07-a100-80gb-gpt-oss-120b-tp4-ray.log"
    r = run_cli(
        "calibrate", str(log), "--gpu", "a100-80gb-sxm", "--model", "gpt-oss-120b", "--tp", "4", "--json"
    )
    assert json.loads(r.stdout)["settings"]["mxfp4_backend"] == "marlin"


# --- MLA's absorbed copies (vLLM 0.7.x) -------------------------------------------------------------


def test_mla_absorbed_copies_by_hand() -> None:
    """DeepSeek-R1 FP8 at TP 8 (128 heads -> N = 16; q_lora_rank 1536, kv_lora_rank 512, rope 64,
    nope 128, v 128, hidden 7168, 61 layers), vLLM 0.7.3: W_QR 1536 x 16 x 64 x 2 = 3,145,728 B;
    kv_b_proj dequantized 512 x 16 x 256 x 2 = 4,194,304 B; W_Q_UK fp8 1536 x 16 x 512 =
    12,582,912 B; W_UV_O fp8 16 x 512 x 7168 = 58,720,256 B; 78,643,200 B x 61 = 4,797,235,200 B.
    Not in 0.6.5 (no MLA backend); from 0.8 only the dequantized kv_b_proj the V1 backend's
    W_UK_T / W_UV views keep: 4,194,304 B x 61 = 255,852,544 B; none for bf16 weights."""
    from vramcalc.core.formats import resolve_format

    r1, fp8 = CAT.models.get("deepseek-r1"), resolve_format("fp8")
    assert vllm.mla_absorption_bytes(r1, fp8, 8, "0.7.3") == 4_797_235_200
    assert vllm.mla_absorption_bytes(r1, fp8, 8, "0.6.5") == 0
    assert vllm.mla_absorption_bytes(r1, fp8, 8, "0.8.4") == 255_852_544
    assert vllm.mla_absorption_bytes(r1, resolve_format("bf16"), 8, "0.19") == 0
    assert vllm.mla_absorption_bytes(CAT.models.get("llama-3.1-8b"), fp8, 1, "0.7.3") == 0


# --- the fused MoE kernel's buffers and vLLM 0.10.2+'s budget line --------------------------------


def test_fused_moe_workspace_by_hand() -> None:
    """Qwen3-235B-A22B (hidden 4096, expert width 1536, top 8) at TP 4, 8,192 batched tokens:
    N = 2 x 1536 / 4 = 768; cache13 = 8192 x 8 x max(768, 4096) and cache2 = 8192 x 8 x 384
    elements, bf16: 8192 x 8 x 4480 x 2 = 587,202,560 B. Past 16,384 tokens the kernel chunks."""
    from vramcalc.core.activations import fused_moe_workspace_bytes

    q = CAT.models.get("qwen3-235b-a22b")
    assert fused_moe_workspace_bytes(q, 8192, 4, 2) == 587_202_560
    assert fused_moe_workspace_bytes(q, 40_000, 4, 2) == 2 * 587_202_560
    assert fused_moe_workspace_bytes(CAT.models.get("llama-3.1-8b"), 8192, 1, 2) == 0


@pytest.mark.parametrize(
    ("log", "args", "figures"),
    [
        (
            "vllm-c-08-rtx-pro-6000-qwen3-235b-a22b-fp8-tp4.log",
            # 0.27.1 (its source): the peak is the torch peak alone (0.28+ adds the graph estimate,
            # test_calibrate.test_vllm_028_peak_activation_holds_the_graph_estimate)
            [
                "--gpu",
                "rtx-pro-6000-blackwell",
                "--model",
                "qwen3-235b-a22b",
                "--tp",
                "4",
                "--version",
                "0.27.1",
            ],
            # 0.76 GiB for peak activation, 56.89 GiB consumed (weights + non-torch) - 55.19 weights,
            # 0.32 GiB for CUDAGraph memory, 27.85 GiB of KV in use
            {
                "activation_peak_bytes": 0.76,
                "non_torch_bytes": 1.70,
                "cuda_graph_bytes": 0.32,
                "kv_pool_bytes": 27.85,
            },
        ),
        (
            "vllm-c-10-l40s-qwen3-235b-a22b-fp8-tp8-ep.log",
            ["--gpu", "l40s", "--model", "qwen3-235b-a22b", "--quantization", "fp8"],
            # 1.4 GiB for peak activation, 0.18 GiB for non-torch memory (the pool keeps the log's
            # own "Available KV cache memory" line)
            {"activation_peak_bytes": 1.40, "non_torch_bytes": 0.18, "kv_pool_bytes": 10.65},
        ),
    ],
)
def test_the_actual_usage_line_is_read(
    log: str, args: list[str], figures: dict[str, float], run_cli: Run
) -> None:
    r = run_cli("calibrate", str(ROOT / "tests/fixtures/logs/published" / log), *args, "--json")
    assert r.exit_code in (0, 1), r.stderr
    theirs = {f["key"]: f["theirs"] for f in json.loads(r.stdout)["figures"]}
    for key, gib in figures.items():
        assert theirs[key] / 2**30 == pytest.approx(gib, abs=0.006), key
