"""`vramcalc observe`: observed vs planned, per snapshot and side by side, then the findings."""

from __future__ import annotations

from typing import Any

from vramcalc.core.observe import Observation


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def observe_dict(o: Observation) -> dict[str, Any]:
    return {
        "snapshots": [
            {
                "source": r.snapshot.source,
                "engine": r.snapshot.engine,
                "users": r.users,
                "running": r.snapshot.running,
                "waiting": r.snapshot.waiting,
                "kv_usage": r.snapshot.kv_usage,
                "kv_capacity_tokens": r.snapshot.kv_capacity_tokens,
                "ttft_p50_s": r.snapshot.ttft_p50_s,
                "ttft_p95_s": r.snapshot.ttft_p95_s,
                "tpot_p50_s": r.snapshot.tpot_p50_s,
                "tpot_p95_s": r.snapshot.tpot_p95_s,
                "planned": {
                    "verdict": r.assessment.verdict,
                    "users_at_once": r.assessment.users_at_once,
                    "per_gpu_bytes": r.assessment.per_gpu_bytes,
                    "ttft_s": r.assessment.ttft_s,
                    "tpot_s": r.assessment.serving.tpot_s if r.assessment.serving else None,
                },
            }
            for r in o.rows
        ],
        "comparisons": [
            {"quantity": c.quantity, "observed": c.observed, "planned": c.planned, "unit": c.unit}
            for c in o.comparisons
        ],
        "findings": [
            {"code": f.code, "problem": f.problem, "message": f.message, "figures": dict(f.figures)}
            for f in o.findings
        ],
        "problems": o.problems,
    }


def observe_text(o: Observation) -> str:
    lines = ["snapshot | users | running (plan) | waiting | KV used | TTFT p50 s (plan) | TPOT p50 s (plan)"]
    for r in o.rows:
        s, a = r.snapshot, r.assessment
        tpot = a.serving.tpot_s if a.serving else None
        lines.append(
            f"{s.source} | {r.users} | {_num(s.running)} ({a.users_at_once}) | {_num(s.waiting)} | "
            f"{'-' if s.kv_usage is None else f'{s.kv_usage:.0%}'} | {_num(s.ttft_p50_s)} ({_num(a.ttft_s)}) | "
            f"{_num(s.tpot_p50_s)} ({_num(tpot)})"
        )
    if len(o.rows) > 1:
        lines.append("Users vs KV cache in use (# used, . free) and time per output token:")
        for r in o.rows:
            usage = r.snapshot.kv_usage
            cells = 0 if usage is None else round(min(1.0, usage) * 30)
            bar = "#" * cells + "." * (30 - cells) if usage is not None else "-" * 30
            lines.append(f"  {r.users:>6} users |{bar}| {_num(r.snapshot.tpot_p50_s)} s/token")
    lines.append("Observed vs planned (the last snapshot):")
    for c in o.comparisons:
        diff = f" ({(c.observed - c.planned) / c.planned:+.0%})" if c.planned else ""
        lines.append(f"  {c.quantity}: observed {c.observed:,.6g}, planned {c.planned:,.6g} {c.unit}{diff}")
    if not o.findings:
        lines.append("  agrees with the plan within its tolerances")
    for f in o.findings:
        lines.append(f"  {'PROBLEM' if f.problem else 'note'} [{f.code}] {f.message}")
    return "\n".join(lines) + "\n"
