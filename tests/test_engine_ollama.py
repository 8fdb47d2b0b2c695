"""Ollama profile: its Era A estimate term by term, Era C's llama-server buffers and batch choice
(engines.md section 3.5), and Ollama's own log of a Gemma-3 load (calibration record)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_gguf, view_int
from vramcalc.catalog import Catalog
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.engines.ollama import preflight_bytes
from vramcalc.core.estimate import Workload
from vramcalc.core.formats import resolve_format
from vramcalc.core.scenario import Scenario, run
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GIB, MIB


def _run(m: ModelSpec, gpu: GpuSpec | None, ctx: int, users: int = 1, **kw: object) -> Scenario:
    return run_gguf(m, gpu, ctx, users, **{"engine": "ollama", **kw})  # type: ignore[arg-type]


def _value(s: Scenario, key: str) -> int:
    return view_int(s, key)


# --- Era A: llm/memory.go estimate (engines.md 3.2, 3.5) -----------------------------------------


def test_era_a_llama_8192(llama31_8b: ModelSpec, l40s: GpuSpec) -> None:
    """Ollama 0.12, f16 KV, 1 slot, FA off, batch 512, everything fits:
    MinimumMemory 457 + blk.0 buffer (132.5 weights + 32 KV) + blocks 3,992.5 + KV 1,024
    (32 x 8,192 x 256 x 2 B) + output 411.0 (Q6_K 128,256 x 4,096 + norm) + graph_full
    max(4 x 512 x (1 + 4 x 4,096 + 8,192 x 33), 4 x 512 x (4,096 + 128,256)) = 587,204,608 B = 560 MiB
    = 6,609.0 MiB (engines.md 6,609 MiB = 6.45 GiB). graph_partial 677.5 MiB (engines.md 678)."""
    s = _run(llama31_8b, l40s, 8192, engine="ollama@0.12")
    assert _value(s, "required_kv_bytes") == 1024 * MIB
    assert _value(s, "graph_full_bytes") == 587_204_608
    assert _value(s, "graph_partial_bytes") / MIB == pytest.approx(678, abs=1)
    assert _value(s, "weights_nonrepeating_bytes") / MIB == pytest.approx(411.0, abs=0.05)
    assert _value(s, "required_full_bytes") / MIB == pytest.approx(6609, abs=1)
    assert _value(s, "required_full_bytes") == _value(s, "required_partial_bytes")
    assert _value(s, "layers_offload") == 33


@pytest.mark.parametrize(
    ("ctx", "kv_mib", "graph_mib", "total_mib"), [(4096, 1472, 509, 18686), (8192, 2944, 562, 20243)]
)
def test_era_a_gemma2(
    gemma2_27b: ModelSpec, l40s: GpuSpec, ctx: int, kv_mib: int, graph_mib: int, total_mib: int
) -> None:
    """Gemma-2 gets no sliding-window credit in Ollama's estimate: 46 x ctx x 8 KiB.
    @4096: 457 + (347.9 + 32) + 14,945.6 + 1,472 + 922.9 (tied token_embd Q6_K + norm) + graph_full
    max(4 x 512 x (4,608 + 256,000) = 509 MiB, 4 x 512 x (2 + 4,096 x 33 + 9,216 + 8,192) = 298 MiB)
    = 18,686 MiB (engines.md 18.2 GiB); @8192: kv[0] 64, KV 2,944, graph 562 MiB = 20,243 MiB
    (engines.md 19.8 GiB). graph_partial 1,432 MiB (the vocab x embedding term)."""
    s = _run(gemma2_27b, l40s, ctx, engine="ollama@0.12")
    assert _value(s, "required_kv_bytes") == kv_mib * MIB
    assert _value(s, "graph_full_bytes") / MIB == pytest.approx(graph_mib, abs=0.5)
    assert _value(s, "graph_partial_bytes") / MIB == pytest.approx(1432, abs=0.5)
    assert _value(s, "required_full_bytes") / MIB == pytest.approx(total_mib, abs=1)
    assert _value(s, "layers_offload") == 47


def test_era_a_runner_buffers_follow_the_real_allocation(gemma2_27b: ModelSpec, l40s: GpuSpec) -> None:
    """Beside Ollama's estimate the view shows what the llama.cpp runner allocates: Gemma-2 runs on
    the llama.cpp runner, whose llama_context_default_params keep swa_full, so KV = 2,944 MiB too;
    no flash attention for gemma2 (SupportsFlashAttention), so cells pad to 32."""
    s = _run(gemma2_27b, l40s, 8192, engine="ollama@0.12")
    assert _value(s, "kv_buffer_bytes") == 2944 * MIB
    assert s.estimate.plan.settings["flash_attention"] is False
    assert s.estimate.plan.settings["runner"] == "llama.cpp runner"


def test_era_a_partial_offload(catalog: Catalog, rtx4090: GpuSpec) -> None:
    """Llama-3.1-70B Q4_K_M on 24 GB: Ollama places the last layers that fit, leaves the output in RAM,
    adds graph_partial, and memory.required.full adds what stays in RAM."""
    s = _run(catalog.models.get("llama-3.1-70b"), rtx4090, 4096, engine="ollama@0.12")
    offload = _value(s, "layers_offload")
    assert 0 < offload < 80
    assert _value(s, "gpu_layers") == offload
    assert _value(s, "required_partial_bytes") <= 24564 * MIB
    assert _value(s, "required_full_bytes") > _value(s, "required_partial_bytes")
    assert s.view is not None and s.view.starts is True


def test_estimate_undercounts_quantized_kv(llama31_8b: ModelSpec, l40s: GpuSpec) -> None:
    """fs/ggml/ggml.go kvCacheBytesPerElement: q8_0 = 1 B; llama.cpp stores 34/32 B.
    Estimate 32 x 8,192 x 2,048 x 1 B = 512 MiB; allocated 544 MiB."""
    s = _run(llama31_8b, l40s, 8192, engine="ollama@0.12", kv_dtype="q8_0")
    assert _value(s, "required_kv_bytes") == 512 * MIB
    assert s.estimate.kv.bytes == 544 * MIB
    assert s.estimate.plan.settings["flash_attention"] is True


def _desktop_4090(catalog: Catalog, free_gib: float) -> GpuSpec:
    base = catalog.gpus.get("rtx-4090").model_dump()
    return GpuSpec.model_validate({**base, "id": "rtx-4090-desktop", "usable_mib": round(free_gib * 1024)})


def test_record_ollama_gemma3_27b_q8kv_20k(catalog: Catalog) -> None:
    """Record ollama-gemma3-27b-q4km-4090-ctx20k-fa-q8kv (shared/calibration/measurements.yaml; Ollama
    issue #9678, 2025-03-12, Ollama 0.6.0; copied to tests/calibration/engine_measurements.yaml): Ollama's own log
    for gemma3:27b Q4_K_M, num_ctx 20,000, flash attention, OLLAMA_KV_CACHE_TYPE=q8_0, printed to
    0.1 GiB (tolerance 0.05 GiB):

    memory.required.kv 4.7 = 62 layers x 20,000 x (2 x 16 x 128) x 1 B = 4.730 GiB (0.6: no
    sliding-window credit yet); weights.total 19.1 = blocks 14.327 + their KV 4.730 = 19.057;
    nonrepeating 1.1 = tied token_embd Q6_K 262,208 x 5,376 x 210/256 + norm = 1.077; repeating
    18.0 = 17.981; graph.partial (gemma formula) = 4 x 5,376 x 512 + 5,376 x 262,208 x 105/128 +
    4 x 262,208 x 512 = 1.587 GiB; required.partial 21.4 = 0.446 + (0.247 + 0.076) + 19.057 + 1.587
    = 21.414; required.full 22.5 = + output 1.077 = 22.491. layers.offload 62 of 63: the output
    fits only with more than 22.48 GiB free; the printed "available 22.5 GiB" (22.45-22.55) with
    62 layers pins free memory to 22.45-22.48 GiB, so the GPU is given 22.46 GiB."""
    gpu = _desktop_4090(catalog, 22.46)
    s = run(
        catalog.models.get("gemma-3-27b"),
        Workload(20000, 1),
        engine="ollama@0.6",
        gpu=gpu,
        bits=4,
        kv_dtype="q8_0",
        settings=EngineSettings(flash_attn=True),
    )
    printed = {
        "required_kv_bytes": 4.7,
        "weights_total_bytes": 19.1,
        "weights_repeating_bytes": 18.0,
        "weights_nonrepeating_bytes": 1.1,
        "required_partial_bytes": 21.4,
        "required_full_bytes": 22.5,
    }
    for key, gib in printed.items():
        assert _value(s, key) / GIB == pytest.approx(gib, abs=0.05), key
    assert _value(s, "required_kv_bytes") == 62 * 20000 * 4096
    assert _value(s, "layers_offload") == 62


# --- Era C: llama-server (engines.md 3.4, 3.5) ---------------------------------------------------


def test_era_c_gemma2_8192_on_24gb(gemma2_27b: ModelSpec, rtx4090: GpuSpec) -> None:
    """Automatic num_batch: 8,192 context tokens ask for 1,024, but the preflight (GGUF 16,639,322,112 B
    + 2 x 46 x 16 x (4,608/32 = 144) x 8,192 x 2 B = 3,472,883,712 B = 18.73 GiB) exceeds 75 % of
    the available 24,564 - 457 - 1,024 MiB (22.54 GiB -> 16.91 GiB), so 512 stays. Buffers:
    15,868.49 + 2,300 + 509 MiB = 18,677.49 MiB = 18.24 GiB (engines.md ~18.25 GiB)."""
    s = _run(gemma2_27b, rtx4090, 8192)
    assert s.estimate.plan.settings["num_batch"] == 512
    assert s.estimate.plan.settings["num_batch_auto"] is True
    assert preflight_bytes(gemma2_27b, resolve_format("Q4_K_M"), 8192) == 16_639_322_112 + 3_472_883_712
    assert _value(s, "kv_buffer_bytes") == 2300 * MIB
    assert _value(s, "total_bytes") / GIB == pytest.approx(18.25, abs=0.02)


def test_era_c_gemma2_4096(gemma2_27b: ModelSpec, rtx4090: GpuSpec) -> None:
    """ctx <= 4096 -> num_batch 512: 15,868.49 + 1,472 + 509 = 17,849.49 MiB = 17.43 GiB (engines.md ~17.44)."""
    s = _run(gemma2_27b, rtx4090, 4096)
    assert s.estimate.plan.settings["num_batch"] == 512
    assert _value(s, "total_bytes") / GIB == pytest.approx(17.44, abs=0.02)


def test_era_c_llama_8192_gets_ubatch_1024(llama31_8b: ModelSpec, rtx4090: GpuSpec) -> None:
    """Preflight 4.575 + 1 GiB = 5.58 GiB <= 75 % of 22.54 GiB and + 768 MiB fits under 80 %: num_batch
    1,024. Compute 1,024 x 128,256 x 4 B (501 MiB) + 1,024 x 4,096 x 4 B (16 MiB) = 517 MiB; total
    4,403.49 + 1,024 + 517 = 5,944.49 MiB = 5.80 GiB (engines.md ~5.8 GiB)."""
    s = _run(llama31_8b, rtx4090, 8192)
    assert s.estimate.plan.settings["num_batch"] == 1024
    assert _value(s, "compute_buffer_bytes") == 517 * MIB
    assert _value(s, "total_bytes") / GIB == pytest.approx(5.8, abs=0.01)


def test_era_c_num_batch_without_flash_attention(
    llama31_8b: ModelSpec, rtx4090: GpuSpec, catalog: Catalog
) -> None:
    """FA off on CUDA: 512, or 256 on cards <= 8 GiB above 4,096 context tokens."""
    assert _run(llama31_8b, rtx4090, 8192, flash_attn=False).estimate.plan.settings["num_batch"] == 512
    small = GpuSpec.model_validate(
        {**catalog.gpus.get("rtx-4090").model_dump(), "id": "eight-gib", "usable_mib": 8192}
    )
    assert _run(llama31_8b, small, 8192, flash_attn=False).estimate.plan.settings["num_batch"] == 256


def test_era_c_large_context_batch(llama31_8b: ModelSpec, catalog: Catalog) -> None:
    """65,536 tokens ask for 2,048; on an 80 GB H100 the preflight (4.575 + 8 GiB) is far below 60 %."""
    s = _run(llama31_8b, catalog.gpus.get("h100-sxm"), 65536)
    assert s.estimate.plan.settings["num_batch"] == 2048


def test_each_slot_gets_num_ctx(gemma2_27b: ModelSpec, catalog: Catalog) -> None:
    """-c num_ctx x 4 -np 4: every slot holds 8,192 tokens, unlike llama.cpp's shared -c:
    4 x 2,300 MiB = 9,200 MiB (--ubatch 512 pinned; automatic would pick 2,048 for 32,768 tokens)."""
    s = _run(gemma2_27b, catalog.gpus.get("l40s"), 8192, users=4, ubatch=512)
    assert s.estimate.kv.bytes == 9200 * MIB
    assert s.estimate.plan.settings["n_ctx"] == 32768
    assert _value(s, "num_parallel") == 4


def test_default_num_ctx(llama31_8b: ModelSpec, catalog: Catalog) -> None:
    """0.6: 2,048; 0.12: 4,096; 0.30: by VRAM: 24 GB card -> 32,768; 80 GB -> 262,144 clamped to 131,072."""
    assert (
        _value(_run(llama31_8b, catalog.gpus.get("l40s"), 4096, engine="ollama@0.6"), "default_num_ctx")
        == 2048
    )
    assert (
        _value(_run(llama31_8b, catalog.gpus.get("l40s"), 4096, engine="ollama@0.12"), "default_num_ctx")
        == 4096
    )
    assert _value(_run(llama31_8b, catalog.gpus.get("rtx-4090"), 4096), "default_num_ctx") == 32768
    assert _value(_run(llama31_8b, catalog.gpus.get("h100-sxm"), 4096), "default_num_ctx") == 131072


# --- settings ------------------------------------------------------------------------------------


def test_gemma2_quantized_kv_in_era_a_is_refused(gemma2_27b: ModelSpec) -> None:
    """Ollama <= 0.29 runs gemma2 without flash attention and so ignores OLLAMA_KV_CACHE_TYPE."""
    with pytest.raises(SpecError, match="ignores"):
        _run(gemma2_27b, None, 4096, engine="ollama@0.12", kv_dtype="q8_0")
    assert _run(gemma2_27b, None, 4096, kv_dtype="q8_0").estimate.kv.bytes == 782 * MIB


def test_kv_dtypes_and_settings(llama31_8b: ModelSpec) -> None:
    with pytest.raises(SpecError, match="no bf16 KV cache"):
        _run(llama31_8b, None, 4096, kv_dtype="bf16")
    with pytest.raises(SpecError, match="ollama has no --tp"):
        run(llama31_8b, Workload(4096, 1), engine="ollama", bits=4, settings=EngineSettings(tp=2))
    s = _run(llama31_8b, None, 4096, ubatch=256)
    assert s.estimate.plan.settings["num_batch"] == 256
    assert s.estimate.plan.settings["num_batch_auto"] is False


def test_reserve_is_minimum_memory(llama31_8b: ModelSpec) -> None:
    """MinimumMemory 457 MiB + OLLAMA_GPU_OVERHEAD 0 + 512 x 4,096 x 4 B (8 MiB) = 465 MiB."""
    assert _run(llama31_8b, None, 4096).estimate.reserve_bytes == 465 * MIB


def test_versions(llama31_8b: ModelSpec) -> None:
    """The last label is the default; 0.20 (Era B) takes the 0.12 profile."""
    assert _run(llama31_8b, None, 4096).estimate.plan.version == "0.30"
    era_b = _run(llama31_8b, None, 4096, engine="ollama@0.20")
    assert era_b.estimate.plan.settings["runner"] == "llama.cpp runner"


# --- properties ----------------------------------------------------------------------------------

_CATALOG = Catalog()


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["gemma-2-9b", "gemma-3-12b", "gpt-oss-20b", "llama-3.1-8b", "qwen2.5-14b", "qwen3-8b"]),
    st.integers(min_value=256, max_value=32768),
    st.integers(min_value=1, max_value=4),
    st.sampled_from(["ollama@0.6", "ollama@0.12", "ollama@0.30"]),
    st.sampled_from(["rtx-4060-ti-16gb", "rtx-4090", "h100-sxm"]),
)
def test_properties(model_id: str, ctx: int, users: int, engine: str, gpu_id: str) -> None:
    """More slots never need less; memory.required.full >= partial; Ollama never offloads more layers
    than the model has. (Ollama's own required.full need not grow with slots: a partial offload
    switches graph_full for graph_partial.)"""
    m = _CATALOG.models.get(model_id)
    ctx = min(ctx, m.max_position_embeddings)
    gpu = _CATALOG.gpus.get(gpu_id)
    fewer = run(m, Workload(ctx, users), engine=engine, gpu=gpu, bits=4, settings=EngineSettings(ubatch=512))
    more = run(
        m, Workload(ctx, users + 1), engine=engine, gpu=gpu, bits=4, settings=EngineSettings(ubatch=512)
    )
    assert more.estimate.total_bytes >= fewer.estimate.total_bytes
    assert 0 <= _value(fewer, "gpu_layers") <= m.num_hidden_layers + 1
    if engine != "ollama@0.30":
        assert _value(fewer, "required_full_bytes") >= _value(fewer, "required_partial_bytes")


def test_a_longer_context_never_needs_less_when_the_batch_steps_down(rtx4090: GpuSpec) -> None:
    """Qwen2.5-7B Q8_0, q4_0 KV, 271 slots on a 4090: 271 x 408 = 110,568 tokens keep num_batch
    2,048 (preflight just under 60 % of the available 22.54 GiB), 271 x 415 drop to 1,024. The need
    is sized at the fallback batch 512 either way, so it never falls as the context grows; what Ollama holds
    on the card follows the batch it picks (the 2,048 compute buffer is larger)."""
    m = _CATALOG.models.get("qwen2.5-7b")
    kw: dict[str, object] = {"engine": "ollama", "gpu": rtx4090, "bits": 8, "kv_dtype": "q4_0"}
    short = run(m, Workload(408, 271, fill=0.379, workers=3), **kw)  # type: ignore[arg-type]
    long = run(m, Workload(415, 271, fill=0.379, workers=3), **kw)  # type: ignore[arg-type]
    assert (short.estimate.plan.settings["num_batch"], long.estimate.plan.settings["num_batch"]) == (
        2048,
        1024,
    )
    assert short.estimate.activations.prefill_tokens == long.estimate.activations.prefill_tokens == 512
    assert long.estimate.total_bytes >= short.estimate.total_bytes  # both pad to 512 cells per slot
    assert _value(short, "compute_buffer_bytes") > _value(long, "compute_buffer_bytes")


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["gemma-3-12b", "gpt-oss-20b", "llama-3.1-8b", "qwen2.5-7b", "qwen3-8b"]),
    st.integers(min_value=1, max_value=40_000),
    st.integers(min_value=1, max_value=4_000),
    st.integers(min_value=1, max_value=300),
    st.sampled_from(["rtx-4060-ti-16gb", "rtx-4090", "l40s", "h100-sxm"]),
    st.sampled_from(["fp16", "q8_0", "q4_0"]),
)
def test_automatic_batch_never_makes_more_context_need_less(
    model_id: str, ctx: int, more: int, users: int, gpu_id: str, kv: str
) -> None:
    """Ollama 0.30 chooses num_batch itself (no --ubatch): the need never falls as ctx or users grow."""
    m = _CATALOG.models.get(model_id)
    ctx = min(ctx, m.max_position_embeddings - more)
    gpu = _CATALOG.gpus.get(gpu_id)

    def need(c: int, u: int) -> int:
        return run(m, Workload(c, u), engine="ollama", gpu=gpu, bits=4, kv_dtype=kv).estimate.total_bytes

    assert need(ctx + more, users) >= need(ctx, users)
    assert need(ctx, users + 1) >= need(ctx, users)


def test_engine_records_file_holds_the_figures_used_here() -> None:
    """The figures the two record tests use are the ones in tests/calibration/engine_measurements.yaml."""
    import yaml

    from tests.conftest import ROOT

    recs = {
        r["id"]: r
        for r in yaml.safe_load((ROOT / "tests/calibration/engine_measurements.yaml").read_text())["records"]
    }
    ollama = recs["ollama-gemma3-27b-q4km-4090-ctx20k-fa-q8kv"]["measured"]
    assert (ollama["required_kv_gib"], ollama["weights_total_gib"], ollama["layers_offload"]) == (
        4.7,
        19.1,
        62,
    )
    r7b = recs["llamacpp-command-r7b-q6kl-swa-vs-swafull-31k"]["measured"]
    assert (r7b["gpu_mem_used_mib_swa_full"], r7b["gpu_mem_used_mib_swa_default"]) == (11459, 9115)
