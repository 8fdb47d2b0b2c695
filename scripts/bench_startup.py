"""Print the median wall time of `vramcalc estimate ... --json` next to importing its dependencies.

Usage: .venv/bin/python scripts/bench_startup.py [RUNS]   (a benchmark that prints figures, not a test)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
BIN = Path(sys.executable).parent
ESTIMATE = "estimate gemma-2-27b --bits 4 --ctx 4096 --users 10"
DEPS = "import typer, pydantic, rich, yaml"
COMMANDS = {
    f"python -c '{DEPS}'": [sys.executable, "-c", DEPS],
    "python -c 'pass' (interpreter start)": [sys.executable, "-c", "pass"],
    f"vramcalc {ESTIMATE} --json": [str(BIN / "vramcalc"), *ESTIMATE.split(), "--json"],
    f"vramcalc {ESTIMATE} (table)": [str(BIN / "vramcalc"), *ESTIMATE.split()],
}


def median_ms(cmd: list[str]) -> tuple[float, float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=os.environ.get("TMPDIR", "/tmp"))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


if __name__ == "__main__":
    print(f"{'command':<72} {'median ms':>10} {'min ms':>8}   ({RUNS} runs each)")
    for label, cmd in COMMANDS.items():
        med, low = median_ms(cmd)
        print(f"{label:<72} {med:>10.1f} {low:>8.1f}")
