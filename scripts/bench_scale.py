"""Print how check and recommend scale against one estimate (medians, ratios taken in one run).

Usage: .venv/bin/python scripts/bench_scale.py [RUNS]   (a benchmark that prints figures, not a test)

Builds its plan files in a temporary directory: one file with 1,000 deployments, and 1,000 files
with one deployment each (the same mix of models, GPUs, contexts and users as a team's plans).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
BIN = Path(sys.executable).parent / "vramcalc"
MODELS = ("gemma-2-27b", "llama-3.1-8b", "qwen2.5-7b")
GPUS = ("rtx-4090", "l40s", "h100-sxm", "rtx-3090")


def deployment(i: int) -> str:
    return (
        f"  - name: d{i}\n    model: {MODELS[i % 3]}\n    bits: 4\n    gpu: {GPUS[i % 4]}\n"
        f"    ctx: {1024 + (i % 29) * 256}\n    users: {1 + i % 13}\n"
    )


def median_s(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "one.yaml").write_text("deployments:\n" + "".join(deployment(i) for i in range(1000)))
        many = root / "many"
        many.mkdir()
        for i in range(1000):
            (many / f"p{i:04d}.yaml").write_text("deployments:\n" + deployment(i))
        estimate = median_s([str(BIN), "estimate", "gemma-2-27b", "--bits", "4", "--users", "10", "--json"])
        rows = {
            "estimate gemma-2-27b --bits 4 --users 10 --json": estimate,
            "recommend --users 20 --json": median_s([str(BIN), "recommend", "--users", "20", "--json"]),
            "check of one file with 1,000 deployments": median_s([str(BIN), "check", str(root / "one.yaml")]),
            "check of 1,000 one-deployment files": median_s([str(BIN), "check", str(many)]),
        }
    print(f"{'command':<52} {'median s':>9} {'x estimate':>11}   ({RUNS} runs each)")
    for label, seconds in rows.items():
        print(f"{label:<52} {seconds:>9.2f} {seconds / estimate:>11.1f}")


if __name__ == "__main__":
    main()
