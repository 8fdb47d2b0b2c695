"""`vramcalc diagnose`: the findings in words a planner acts on, and the same as JSON."""

from __future__ import annotations

from typing import Any

from vramcalc.core.diagnose import Diagnosis


def diagnose_dict(d: Diagnosis) -> dict[str, Any]:
    return {
        "gpu": d.gpu.id if d.gpu else None,
        "gpu_names": list(d.names),
        "readings": list(d.readings),
        "comparisons": [
            {"quantity": c.quantity, "observed": c.observed, "planned": c.planned, "unit": c.unit}
            for c in d.comparisons
        ],
        "findings": [
            {"code": f.code, "problem": f.problem, "message": f.message, "figures": dict(f.figures)}
            for f in d.findings
        ],
        "problems": d.problems,
    }


def diagnose_text(d: Diagnosis) -> str:
    where = (
        d.gpu.id
        if d.gpu
        else f"{', '.join(d.names)} (not a catalog GPU; pass --gpu to compare with one)"
        if d.names
        else "a card the reading does not name (pass --gpu)"
    )
    lines = [f"Diagnosis on {where}:"]
    lines += [f"  read: {r}" for r in d.readings]
    for c in d.comparisons:
        diff = (c.observed - c.planned) / c.planned if c.planned else 0.0
        lines.append(f"  {c.quantity}: observed {c.observed:g}, planned {c.planned:g} {c.unit} ({diff:+.0%})")
    if not d.findings:
        lines.append("  nothing out of the ordinary: the reading is within the card and steady")
    for f in d.findings:
        mark = "PROBLEM" if f.problem else "note"
        lines.append(f"  {mark} [{f.code}] {f.message}")
    return "\n".join(lines) + "\n"
