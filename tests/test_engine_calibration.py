"""Layer 2: engine figures against published measurements (tests/calibration/measurements.yaml).

Targets (issue 3): vLLM KV capacity and concurrency within 3% median and 8% worst; transformers
peak memory within 3% median and 8% worst; every started / failed-to-start outcome predicted.
Each point below must be within 8% on its own; the medians are asserted separately. A point our
formula cannot match for a known reason is a strict xfail naming the missing assumption.
"""

from __future__ import annotations

import pytest

from tests.engine_records import Point, summary, transformers_points, vllm_points

VLLM = vllm_points()
HF = transformers_points()
WORST = 0.08
MEDIAN = 0.03


def _params(points: list[Point]) -> list[object]:
    return [
        pytest.param(
            p,
            id=f"{p.record}:{p.figure}",
            marks=[pytest.mark.xfail(strict=True, reason=p.xfail)] if p.xfail else [],
        )
        for p in points
    ]


@pytest.mark.parametrize("point", _params(VLLM))
def test_vllm_point(point: Point) -> None:
    """KV pool = ceil(util x total) - weights - activation peak - non-torch; blocks, capacity and
    concurrency follow vllm/v1/core/kv_cache_utils.py; starts = one max_model_len request fits."""
    if point.kind == "starts":
        assert point.ours == point.measured
    else:
        assert abs(point.rel_error) <= WORST, f"ours {point.ours:.4g} vs measured {point.measured:.4g}"


@pytest.mark.parametrize("point", _params(HF))
def test_transformers_peak(point: Point) -> None:
    """peak = weights + KV(prompt + output) + prefill temporaries; the benchmark's GB is bytes / 1024^3."""
    assert abs(point.rel_error) <= WORST, f"ours {point.ours:.4g} GiB vs measured {point.measured:.4g} GiB"


def test_vllm_median_and_worst() -> None:
    median, worst = summary(VLLM)
    assert median <= MEDIAN and worst <= WORST, (median, worst)


def test_transformers_median_and_worst() -> None:
    median, worst = summary(HF)
    assert median <= MEDIAN and worst <= WORST, (median, worst)


def test_every_start_outcome_is_predicted() -> None:
    starts = [p for p in VLLM if p.kind == "starts"]
    assert len(starts) == 11
    assert sum(1 for p in starts if not p.measured) == 3
    assert all(p.ours == p.measured for p in starts)


def test_transformers_tables_nobody_fitted() -> None:
    """Hold-out: the Qwen2 benchmark on transformers 4.38.2 (every prompt position's logits, bf16 +
    fp32: 0.86 GiB per 1,000 prompt tokens for a 152K vocabulary) and the Qwen3 benchmark on
    4.51.3 (its column is what stays allocated after generate(): weights + cache), at the version
    each names (tests/calibration/transformers_tables.yaml). Measured 2026-12-07: Qwen2 8 rows
    median 1.9%, worst 19.3% (0.5B at a 1-token prompt: 0.94 vs 1.17 GiB, a constant of that
    release we do not model); Qwen3 24 rows median 0.3%, worst 2.8%. Without the 4.36 profile
    the Qwen2 rows at 30,720 tokens are 50% low."""
    from tests.engine_records import transformers_table_points

    points = transformers_table_points()
    qwen2 = [p for p in points if p.record.startswith("hf-qwen2-")]
    qwen3 = [p for p in points if p.record.startswith("hf-qwen3-")]
    assert len(qwen2) == 8 and len(qwen3) == 24
    m2, w2 = summary(qwen2)
    m3, w3 = summary(qwen3)
    assert m2 <= 0.02 and w2 <= 0.20, (m2, w2)
    assert m3 <= 0.005 and w3 <= 0.03, (m3, w3)
    long = next(p for p in qwen2 if p.record == "hf-qwen2-7b-bf16-a100@30720")
    assert long.ours == pytest.approx(42.04, abs=0.01) and long.measured == 42.62
