"""The speed model: hand-computed formulas, published throughput figures, offload and layouts."""

from __future__ import annotations

import pytest

from tests.speed_records import TOLERANCE, SpeedPoint, points, summary
from vramcalc.catalog import Catalog
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.estimate import Workload
from vramcalc.core.scenario import run
from vramcalc.core.speed import (
    DECODE_BANDWIDTH_EFFICIENCY,
    DECODE_OVERHEAD_PER_LAYER_S,
    active_weight_bytes,
    scenario_speed,
    speed,
)

CAT = Catalog()
POINTS = points()
SERVING = [p for p in POINTS if p.engine != "transformers"]
HF = [p for p in POINTS if p.engine == "transformers"]


def test_decode_step_is_the_bandwidth_roofline_plus_overhead() -> None:
    """Llama-3.1-8B Q4_K_M, llama.cpp, RTX 4090 (1,008 GB/s), one user at 512 tokens: the step reads
    the GPU weights (5.03 GB incl. the Q6_K output) and 512 x 131,072 B of KV at 0.75 x 1,008 GB/s,
    plus 32 layers x 0.1 ms: step = bytes / 756e9 + 3.2 ms."""
    sc = run(CAT.models.get("llama-3.1-8b"), Workload(512, 1), engine="llama.cpp", bits=4)
    e = sc.estimate
    gpu = CAT.gpus.get("rtx-4090")
    s = speed(e, gpu, 1)
    bytes_read = e.weights_bytes + e.kv.bytes
    expected = (
        bytes_read / (1008e9 * DECODE_BANDWIDTH_EFFICIENCY["llama.cpp"])
        + 32 * DECODE_OVERHEAD_PER_LAYER_S["llama.cpp"]
    )
    assert s.step_s == pytest.approx(expected)
    assert s.bound == "memory"
    assert s.per_user_tokens_per_s == pytest.approx(1 / expected)


def test_moe_reads_only_the_experts_a_batch_touches() -> None:
    """Qwen3-30B-A3B (128 experts, 8 per token): one token reads 8/128 of the expert bytes; 64 tokens
    read 128 x (1 - (120/128)^64) = 126.7 of 128 experts' worth."""
    m = CAT.models.get("qwen3-30b-a3b")
    w = 60_000_000_000
    one, many = active_weight_bytes(m, w, 1), active_weight_bytes(m, w, 64)
    assert one < w * 0.2  # dense part (~3%) + 1/16 of the experts
    assert many == pytest.approx(w, rel=0.02)
    dense = CAT.models.get("llama-3.1-8b")
    assert active_weight_bytes(dense, w, 1) == w


def test_tensor_parallel_shortens_the_step() -> None:
    """tp=2 halves each GPU's weight and KV reads: the memory-bound part of the step halves."""
    m = CAT.models.get("llama-3.3-70b")
    h100 = CAT.gpus.get("h100-sxm")
    one = run(m, Workload(4096, 4), quant="fp8", gpu=h100).estimate
    two = run(m, Workload(4096, 4), quant="fp8", gpu=h100, settings=EngineSettings(tp=2)).estimate
    s1, s2 = speed(one, h100, 4), speed(two, h100, 4, gpus_per_replica=2)
    overhead = 80 * DECODE_OVERHEAD_PER_LAYER_S["vllm"]
    assert (s2.step_s - overhead) == pytest.approx((s1.step_s - overhead) / 2, rel=0.03)


def test_offload_cliff_llama_cpp() -> None:
    """Llama-3.1-70B Q4_K_M (~40 GiB) on one 24 GB card: llama.cpp keeps ~45 of 81 layers on the GPU
    and reads the rest from host memory each token - far slower than the GPU alone."""
    sc = run(
        CAT.models.get("llama-3.1-70b"),
        Workload(8192, 1),
        engine="llama.cpp",
        bits=4,
        gpu=CAT.gpus.get("rtx-4090"),
    )
    sp = scenario_speed(sc)
    assert sp is not None and sp.offload is not None and not sp.offload.over_pcie
    assert sp.offload.offloaded_bytes > 10 * 2**30
    assert sp.at_users.per_user_tokens_per_s < 5
    assert sp.at_users.offload_tokens_per_s_penalty > 5


def test_offload_cliff_vllm_suggests_cpu_offload() -> None:
    """Gemma-2-27B int4 for 4 users on a 4090 does not fit vLLM's pool: --cpu-offload-gb over PCIe."""
    sc = run(CAT.models.get("gemma-2-27b"), Workload(4096, 4), bits=4, gpu=CAT.gpus.get("rtx-4090"))
    sp = scenario_speed(sc)
    assert sp is not None and sp.offload is not None and sp.offload.over_pcie
    assert "--cpu-offload-gb" in sp.offload.action
    fits_row, cliff_row = sp.rows[0], sp.rows[-1]
    assert cliff_row.per_user_tokens_per_s < fits_row.per_user_tokens_per_s / 3


def _params(pts: list[SpeedPoint]) -> list[object]:
    return [
        pytest.param(
            p, id=p.record, marks=[pytest.mark.xfail(strict=True, reason=p.xfail)] if p.xfail else []
        )
        for p in pts
    ]


@pytest.mark.parametrize("point", _params(SERVING))
def test_published_throughput(point: SpeedPoint) -> None:
    """Serving engines (llama.cpp, Ollama, vLLM, SGLang, TGI): each published decode or prefill figure
    within 25%; a figure that is only a lower bound (an aggregate including prefill) must not be
    more than 25% above our prediction."""
    if point.lower_bound:
        assert point.ours >= point.measured * (1 - TOLERANCE)
    else:
        assert abs(point.rel_error) <= TOLERANCE, f"ours {point.ours:.1f} vs {point.measured:.1f}"


def test_serving_engines_summary() -> None:
    median, worst = summary(SERVING)
    assert len([p for p in SERVING if not p.xfail]) >= 20
    assert median <= 0.15 and worst <= TOLERANCE


def test_transformers_generate_speed() -> None:
    """HF generate() at batch 1 (Qwen2.5 benchmark, 48 points): median within 25%. Single points
    range further (worst ~115%): long prompts slow its decode more than the extra KV bytes explain
    and AutoGPTQ/AutoAWQ batch-1 kernels are slower than their byte counts - neither is modelled,
    so the per-point bound here is 120%."""
    median, worst = summary(HF)
    assert median <= TOLERANCE and worst <= 1.2
