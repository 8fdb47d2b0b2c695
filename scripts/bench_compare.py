"""Time the same commands on an earlier revision's source and on this checkout, in one run.

Usage: .venv/bin/python scripts/bench_compare.py REV [RUNS]   (a benchmark that prints figures)

REV is checked out into a temporary git worktree; both sources run through the same launcher
(`python -c "sys.path.insert(0, SRC); from vramcalc.cli import main; main()"`) with this venv's
dependencies and bytecode written, round-robin, RUNS times (the 10,000-deployment checks once).
Prints median seconds and peak resident MiB (getrusage via wait4) for each.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import run, write_plans  # noqa: E402 - the same plans and the same timer


def launcher(src: Path) -> list[str]:
    code = f"import sys; sys.path.insert(0, {str(src)!r}); sys.argv[0] = 'vramcalc'; from vramcalc.cli import main; main()"
    return [sys.executable, "-c", code]


def main() -> None:
    rev, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        before = root / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before), rev], check=True
        )
        try:
            srcs = {"before": before / "src", "now": ROOT / "src"}
            for src in srcs.values():
                compileall.compile_dir(str(src), quiet=1)
            one, ten_file, many = write_plans(root)
            ten = str(ten_file)
            cases = {
                "estimate gemma-2-27b --bits 4 --ctx 4096 --users 10 --json": [
                    "estimate",
                    "gemma-2-27b",
                    "--bits",
                    "4",
                    "--ctx",
                    "4096",
                    "--users",
                    "10",
                    "--json",
                ],
                "recommend --users 20 --json": ["recommend", "--users", "20", "--json"],
                "check of one file with 1,000 deployments": ["check", str(one)],
                "check of 1,000 one-deployment files": ["check", str(many)],
                "check of one file with 10,000 deployments": ["check", ten],
                "the same, --format json": ["check", ten, "--format", "json"],
            }
            seconds: dict[tuple[str, str], list[float]] = {}
            peak: dict[tuple[str, str], float] = {}
            for repeat in range(runs):
                for label, args in cases.items():
                    if ("10,000" in label or "--format json" in label) and repeat:
                        continue
                    for which, src in srcs.items():
                        wall, rss = run(launcher(src) + args, env)
                        seconds.setdefault((label, which), []).append(wall)
                        peak[(label, which)] = max(peak.get((label, which), 0.0), rss)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False
            )
    print(
        f"{'command':<60} {'before s':>9} {'now s':>7} {'before MiB':>10} {'now MiB':>8}   ({rev}, {runs} runs)"
    )
    for label in cases:
        b = statistics.median(seconds[(label, "before")])
        n = statistics.median(seconds[(label, "now")])
        print(
            f"{label:<60} {b:>9.2f} {n:>7.2f} {peak[(label, 'before')]:>10.0f} {peak[(label, 'now')]:>8.0f}"
        )


if __name__ == "__main__":
    main()
