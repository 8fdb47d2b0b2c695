"""Print vramcalc's GGUF tensor bytes against every published file size in
tests/calibration/gguf_sizes.yaml.

Usage (from the repository root): .venv/bin/python scripts/gguf_size_table.py

Columns: record id, catalog model, quant, the published size as printed, ours (sum of tensor_bytes),
published - ours in MB (the file's metadata, expected 0..64 B x vocab + 1 MB per file), the relative
error (ours - published) / published, and the verdict (pass / FAIL; xfail / XPASS for records marked
as known mismatches). Then the median and worst absolute relative error, with and without the xfails,
and the median and range of published - ours (the metadata, for records that match).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.test_gguf_types import SizeCheck, check, load_records  # noqa: E402


def verdict(c: SizeCheck) -> str:
    if c.xfail:
        return "XPASS" if c.within else "xfail"
    return "pass" if c.within else "FAIL"


def summary(label: str, rows: list[SizeCheck]) -> str:
    errors = [abs(c.rel_error) for c in rows]
    worst = max(rows, key=lambda c: abs(c.rel_error))
    diffs = [c.diff / 1e6 for c in rows]
    return (
        f"{label:<15} n={len(rows):<3} median |rel err| {statistics.median(errors):.3%}   "
        f"worst {abs(worst.rel_error):.3%} ({worst.id});   published - ours: median "
        f"{statistics.median(diffs):.2f} MB, range {min(diffs):.2f}..{max(diffs):.2f} MB"
    )


def main() -> int:
    rows = [check(r) for r in load_records()]
    header = (
        f"{'id':<38} {'model':<15} {'quant':<9} {'published':>16} {'ours B':>14} "
        f"{'pub-ours MB':>11} {'rel err':>8}  result"
    )
    print(header)
    print("-" * len(header))
    for c in rows:
        print(
            f"{c.id:<38} {c.model:<15} {c.quant:<9} {c.printed:>16} {c.ours:>14,} "
            f"{c.diff / 1e6:>11.2f} {c.rel_error:>8.3%}  {verdict(c)}"
        )
    print()
    print(summary("all records", rows))
    print(summary("without xfails", [c for c in rows if not c.xfail]))
    print(summary("xfails only", [c for c in rows if c.xfail]))
    bad = [c for c in rows if verdict(c) in ("FAIL", "XPASS")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
