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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("gemma-2-27b", "llama-3.1-8b", "qwen2.5-7b")
GPUS = ("rtx-4090", "l40s", "h100-sxm", "rtx-3090")


def deployment(i: int) -> str:
    return (
        f"  - name: d{i}\n    model: {MODELS[i % 3]}\n    bits: 4\n    gpu: {GPUS[i % 4]}\n"
        f"    ctx: {1024 + (i % 29) * 256}\n    users: {1 + i % 13}\n"
    )


def launcher(src: Path) -> list[str]:
    code = f"import sys; sys.path.insert(0, {str(src)!r}); sys.argv[0] = 'vramcalc'; from vramcalc.cli import main; main()"
    return [sys.executable, "-c", code]


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped by wait4
    return time.perf_counter() - start, usage.ru_maxrss / 1024


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
            (root / "one.yaml").write_text("deployments:\n" + "".join(deployment(i) for i in range(1000)))
            (root / "ten.yaml").write_text("deployments:\n" + "".join(deployment(i) for i in range(10000)))
            many = root / "many"
            many.mkdir()
            for i in range(1000):
                (many / f"p{i:04d}.yaml").write_text("deployments:\n" + deployment(i))
            ten = str(root / "ten.yaml")
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
                "check of one file with 1,000 deployments": ["check", str(root / "one.yaml")],
                "check of 1,000 one-deployment files": ["check", str(many)],
                "check of one file with 10,000 deployments": ["check", ten],
                "the same, --format json": ["check", ten, "--format", "json"],
            }
            seconds: dict[tuple[str, str], list[float]] = {}
            peak: dict[tuple[str, str], float] = {}
            for run in range(runs):
                for label, args in cases.items():
                    if ("10,000" in label or "--format json" in label) and run:
                        continue
                    for which, src in srcs.items():
                        wall, rss = measure(launcher(src) + args, env)
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
