"""Print vramcalc's weight bytes against every record of tests/calibration/measurements.yaml.

Usage (from the repository root): .venv/bin/python scripts/calibration_table.py

Columns: record id, catalog model, weight format, the measured figure as printed and in bytes,
ours in bytes, relative error (ours - measured) / measured, and the verdict under the record's
rule (pass / FAIL; xfail / XPASS for records marked as known mismatches). Then the median and
worst absolute relative error, over all records and per kind, with and without the xfail records.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.calibration_weights import KINDS, Comparison, compare, load_records  # noqa: E402


def verdict(c: Comparison) -> str:
    if c.xfail:
        return "XPASS" if c.within else "xfail"
    return "pass" if c.within else "FAIL"


def rule(c: Comparison) -> str:
    return f"0..-{c.tolerance:.2%}" if c.one_sided else f"+-{c.tolerance:.2%}"


def table(rows: list[Comparison]) -> list[str]:
    header = (
        f"{'id':<46} {'model':<16} {'format':<10} {'measured (printed)':<28} {'measured B':>16} "
        f"{'ours B':>16} {'rel err':>8} {'rule':>10}  result"
    )
    lines = [header, "-" * len(header)]
    for c in rows:
        lines.append(
            f"{c.id:<46} {c.model:<16} {c.format:<10} {c.measured_as_printed:<28.28} "
            f"{c.measured_bytes:>16,} {c.ours_bytes:>16,} {c.rel_error:>+8.2%} {rule(c):>10}  {verdict(c)}"
        )
    return lines


def summary(rows: list[Comparison]) -> list[str]:
    def stats(label: str, subset: list[Comparison]) -> str:
        if not subset:
            return f"  {label:<28} {'-':>3}"
        errors = [abs(c.rel_error) for c in subset]
        worst = max(subset, key=lambda c: abs(c.rel_error))
        return (
            f"  {label:<28} {len(subset):>3}  median {statistics.median(errors):>7.2%}  "
            f"worst {abs(worst.rel_error):>7.2%} ({worst.id})"
        )

    lines = ["", "Absolute relative error |ours - measured| / measured:"]
    for title, keep in (("all records", lambda c: True), ("excluding xfail records", lambda c: not c.xfail)):
        subset = [c for c in rows if keep(c)]
        lines.append(f"{title}:")
        lines.append(stats("overall", subset))
        lines.extend(stats(kind, [c for c in subset if c.kind == kind]) for kind in KINDS)
    lines.append(
        "(transformers records compare weights with a measured peak that also holds KV cache and "
        "workspaces: their error is one-sided by design.)"
    )
    return lines


def main() -> int:
    rows = [compare(r) for r in load_records()]
    rows.sort(key=lambda c: (KINDS.index(c.kind), c.id))
    for line in table(rows) + summary(rows):
        print(line)
    xfails = [c for c in rows if c.xfail]
    if xfails:
        print("\nxfail records (known mismatch; reason names the missing assumption):")
        for c in xfails:
            print(f"  {c.id}: {c.xfail}")
    bad = [c.id for c in rows if verdict(c) in ("FAIL", "XPASS")]
    if bad:
        print(f"\nUnexpected results: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
