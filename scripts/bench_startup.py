"""Print the median wall time of `vramcalc estimate ... --json` next to importing its dependencies.

Usage: .venv/bin/python scripts/bench_startup.py [RUNS]   (a benchmark that prints figures, not a test)

Every command runs RUNS times, round-robin (so a slow moment of the machine hits them all alike),
with bytecode written and used as an installed package has it (PYTHONDONTWRITEBYTECODE unset, the
package compiled first). Rows:
- the interpreter alone, and the import line the issue measures against;
- "typer floor": the real CLI parsing the same estimate options into a command that does nothing
  (typer >= 0.26 validates every option through a pydantic TypeAdapter, importing pydantic's
  validation machinery on the way): no vramcalc CLI built on this typer can start faster;
- the estimate itself, as JSON and as the table.
"""

from __future__ import annotations

import compileall
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
FLOOR = """
import functools, sys
import vramcalc.cli as c
for info in c.app.registered_commands:
    if info.callback.__name__ == "estimate":
        real = info.callback
        @functools.wraps(real)
        def nothing(*args, **kwargs):
            return None
        info.callback = nothing
c.main(sys.argv[1:])
"""
COMMANDS = {
    "python -c 'pass' (interpreter start)": [sys.executable, "-c", "pass"],
    f"python -c '{DEPS}'": [sys.executable, "-c", DEPS],
    "typer floor: the same options parsed, nothing run": [sys.executable, "-c", FLOOR, *ESTIMATE.split()],
    f"vramcalc {ESTIMATE} --json": [str(BIN / "vramcalc"), *ESTIMATE.split(), "--json"],
    f"vramcalc {ESTIMATE} (table)": [str(BIN / "vramcalc"), *ESTIMATE.split()],
}


def main() -> None:
    import vramcalc

    compileall.compile_dir(str(Path(vramcalc.__file__).parent), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cwd = os.environ.get("TMPDIR", "/tmp")
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(RUNS):
        for label, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=cwd, env=env)
            times[label].append((time.perf_counter() - start) * 1000)
    deps = statistics.median(times[f"python -c '{DEPS}'"])
    print(f"{'command':<72} {'median ms':>10} {'min ms':>8} {'x import':>9}   ({RUNS} runs each)")
    for label, ms in times.items():
        med = statistics.median(ms)
        print(f"{label:<72} {med:>10.1f} {min(ms):>8.1f} {med / deps:>9.2f}")


if __name__ == "__main__":
    main()
