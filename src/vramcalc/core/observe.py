"""Hold what a running server exposes (`/metrics` snapshots) against the assessment of the same
deployment: KV capacity, requests running and waiting, time to first token and per output token.

Findings reuse diagnose's Finding (a stable `code`, the figures, `problem`); a problem makes
`vramcalc observe` exit 1, so a cron job or a CI step can alert on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vramcalc.core.assess import Assessment, Deployment, assess
from vramcalc.core.diagnose import Comparison, Finding
from vramcalc.core.types import Measured

if TYPE_CHECKING:
    from vramcalc.readings.metrics import MetricsSnapshot
    from vramcalc.readings.smi import SmiReading

# How far an observed KV capacity may sit from the plan before it is a finding: vLLM's pool on
# published startup logs is within 2.3% median of ours (tests/test_published_logs.py), so 5% is
# outside what the model's own error explains.
KV_TOLERANCE = 0.05
# Latency is noisier (the load, prompt lengths, scheduling): a median 30% off the plan is a finding.
LATENCY_TOLERANCE = 0.30
# nvidia-smi adds what the plan does not hold (other processes, the driver): 5% over is a finding.
MEMORY_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class Row:
    """One snapshot and the assessment at its load (running + waiting users)."""

    snapshot: MetricsSnapshot
    users: int
    assessment: Assessment


@dataclass(frozen=True, slots=True)
class Observation:
    rows: tuple[Row, ...]
    comparisons: tuple[Comparison, ...]
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> bool:
        return any(f.problem for f in self.findings)


def _figure(a: Assessment, key: str) -> float | None:
    view = a.scenario.view
    if view is None:
        return None
    value = next((f.value for f in view.figures if f.key == key), None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _span(a: Assessment, key: str) -> tuple[float, float] | None:
    view = a.scenario.view
    if view is None:
        return None
    main = _figure(a, key)
    spans = [(lo, hi) for k, lo, hi in view.ranges if k == key]
    if spans:
        return float(spans[0][0]), float(spans[0][1])
    return (main, main) if main is not None else None


def observe(
    snapshots: list[MetricsSnapshot], d: Deployment, smi: list[SmiReading] | None = None
) -> Observation:
    """Each snapshot against the assessment of `d` at the users the server holds then (running +
    waiting; `d.users` when the page does not say); nvidia-smi readings against its per-GPU bytes."""
    from vramcalc.units import GIB, MIB

    rows: list[Row] = []
    memory: list[Comparison] = []
    memory_findings: list[Finding] = []
    used = [s.used_mib for r in smi or [] for s in r.samples if s.used_mib is not None]
    if used:
        a0 = assess(d)
        seen_gib = max(used) * MIB / GIB
        plan_gib = a0.per_gpu_bytes / GIB
        memory.append(
            Comparison(
                "GPU memory in use (GiB, the busiest card)", round(seen_gib, 3), round(plan_gib, 3), "GiB"
            )
        )
        if seen_gib > plan_gib * (1 + MEMORY_TOLERANCE):
            memory_findings.append(
                Finding(
                    "memory_above_plan",
                    f"the busiest card holds {seen_gib:.2f} GiB, the plan {plan_gib:.2f} GiB ({seen_gib / plan_gib - 1:+.0%}): "
                    "another process on the card, or the engine holds more than plan_gib (`vramcalc diagnose` on "
                    "the same nvidia-smi output names the processes)",
                    {"observed_gib": round(seen_gib, 3), "planned_gib": round(plan_gib, 3)},
                )
            )
    if not snapshots:
        return Observation((), tuple(memory), tuple(memory_findings))
    for snap in snapshots:
        if snap.engine != d.engine.partition("@")[0]:
            from vramcalc.errors import SpecError

            raise SpecError(f"{snap.source}: a {snap.engine} /metrics page; the deployment runs {d.engine}")
        load = (snap.running or 0) + (snap.waiting or 0)
        users = max(1, round(load)) if snap.running is not None else d.users
        rows.append(Row(snap, users, assess(replace(d, users=users))))
    findings: list[Finding] = list(memory_findings)
    comparisons: list[Comparison] = list(memory)
    last = rows[-1]
    a, snap = last.assessment, last.snapshot
    span = _span(a, "kv_capacity_tokens")
    if snap.kv_capacity_tokens is not None and span is not None:
        planned = _figure(a, "kv_capacity_tokens") or span[0]
        low, high = span
        label = (
            "KV capacity (tokens)"
            if low == high
            else f"KV capacity (tokens; the plan's range {low:,.0f}-{high:,.0f})"
        )
        comparisons.append(Comparison(label, snap.kv_capacity_tokens, planned, "tokens"))
        if snap.kv_capacity_tokens < low * (1 - KV_TOLERANCE):
            gap = 1 - snap.kv_capacity_tokens / low
            findings.append(
                Finding(
                    "kv_pool_below_plan",
                    f"the server's KV pool holds {snap.kv_capacity_tokens:,} tokens, {gap:.0%} below the plan's "
                    f"{low:,.0f}: something takes memory the plan does not count (another process on the card, "
                    "a larger activation peak: the sampler's warm-up path, or non-torch memory). Calibrate from "
                    "the server's startup log "
                    "(`vramcalc calibrate LOG --save FILE`) or from this page (`--write-profile FILE`)",
                    {
                        "observed_tokens": snap.kv_capacity_tokens,
                        "planned_tokens": round(low),
                        "below": round(gap, 4),
                    },
                )
            )
        elif snap.kv_capacity_tokens > high * (1 + KV_TOLERANCE):
            findings.append(
                Finding(
                    "kv_pool_above_plan",
                    f"the server's KV pool holds {snap.kv_capacity_tokens:,} tokens, more than the plan's "
                    f"{high:,.0f}: the plan is pessimistic here (a settings difference, or a sampler path that "
                    "needs less); `--write-profile FILE` carries the measured pool into later checks",
                    {"observed_tokens": snap.kv_capacity_tokens, "planned_tokens": round(high)},
                    problem=False,
                )
            )
    if snap.running is not None:
        comparisons.append(Comparison("requests running", snap.running, a.users_at_once, "requests"))
    if snap.waiting is not None:
        planned_wait = max(0, last.users - a.users_at_once)
        comparisons.append(Comparison("requests waiting", snap.waiting, planned_wait, "requests"))
        if snap.waiting > 0 and planned_wait == 0:
            findings.append(
                Finding(
                    "queueing",
                    f"the plan says {last.users} users run at once ({a.verdict.replace('_', ' ')}); the server runs "
                    f"{snap.running or 0:g} and {snap.waiting:g} wait: it is queueing, the plan is optimistic by "
                    f"{snap.waiting:g} of {last.users} users. Check max_num_seqs and the KV pool against the plan",
                    {
                        "running": snap.running or 0,
                        "waiting": snap.waiting,
                        "planned_at_once": a.users_at_once,
                    },
                )
            )
    if snap.preemptions:
        findings.append(
            Finding(
                "preempting",
                f"{snap.preemptions:g} preemptions: the KV pool ran out under load and the engine evicted "
                "running requests to recompute them later (latency spikes). Fewer users per replica, a shorter "
                "context, or an fp8 KV cache",
                {"preemptions": snap.preemptions},
            )
        )
    srv = a.serving
    for label, seen, plan_s, code in (
        ("median time to first token", snap.ttft_p50_s, srv.ttft_s if srv else None, "slow_first_token"),
        ("median time per output token", snap.tpot_p50_s, srv.tpot_s if srv else None, "slow_decode"),
    ):
        if seen is None or plan_s is None or plan_s <= 0 or not math.isfinite(seen):
            continue
        comparisons.append(Comparison(label, round(seen, 5), round(plan_s, 5), "s"))
        if seen > plan_s * (1 + LATENCY_TOLERANCE):
            findings.append(
                Finding(
                    code,
                    f"{label} {seen:.3g} s against the plan's {plan_s:.3g} s ({seen / plan_s - 1:+.0%}) "
                    f"at {last.users} users: the server is slower than planned. `vramcalc bench` on its own "
                    "benchmark output calibrates the speed model (bench FILE --save)",
                    {"observed_s": round(seen, 5), "planned_s": round(plan_s, 5)},
                )
            )
    return Observation(tuple(rows), tuple(comparisons), tuple(findings))


def kv_profile(obs: Observation, source: str) -> Measured:
    """The measured KV pool as a calibration profile (`observe --write-profile`, vLLM): the
    non-torch term that makes our pool equal the server's num_gpu_blocks x block_size at the same
    settings, as a startup log's profile would carry it."""
    from vramcalc.errors import SpecError

    if not obs.rows:
        raise SpecError("--write-profile: needs a vLLM /metrics page")
    row = obs.rows[-1]
    a, snap = row.assessment, row.snapshot
    pool, capacity, non_torch = (
        _figure(a, k) for k in ("kv_pool_bytes", "kv_capacity_tokens", "non_torch_bytes")
    )
    if (
        snap.engine != "vllm"
        or snap.kv_capacity_tokens is None
        or not (pool and capacity)
        or non_torch is None
    ):
        raise SpecError(
            "--write-profile: needs a vLLM /metrics page with vllm:cache_config_info (num_gpu_blocks, block_size)"
        )
    # With the profile the figures lose their sampler range (it holds the install's own path):
    # the main pool becomes the measured one.
    observed_pool = snap.kv_capacity_tokens * pool / capacity
    e = a.scenario.estimate
    return Measured(
        source=source,
        engine="vllm",
        version=e.plan.version,
        model=e.model.id,
        gpu=a.deployment.gpu.id,
        weights_format=e.weight_format.name,
        tp=a.deployment.tp,
        non_torch_bytes=max(0, int(non_torch + pool - observed_pool)),
    )
