"""Print how check and recommend scale against one estimate (medians, ratios taken in one run).

Usage: .venv/bin/python scripts/bench_scale.py [RUNS]   (a benchmark that prints figures, not a test)

Builds its plan files in a temporary directory: one file with 1,000 deployments, one with 10,000,
and 1,000 files with one deployment each (the same mix of models, GPUs, contexts and users as a
team's plans; about one in seven fails, so the fix search runs). Each command runs RUNS times,
round-robin, with bytecode written and used as an installed package has it; peak memory is the
child's maximum resident set (getrusage via wait4).
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

BIN = Path(sys.executable).parent / "vramcalc"
MODELS = ("gemma-2-27b", "llama-3.1-8b", "qwen2.5-7b")
GPUS = ("rtx-4090", "l40s", "h100-sxm", "rtx-3090")
DEPS = "import typer, pydantic, rich, yaml"


def deployment(i: int) -> str:
    return (
        f"  - name: d{i}\n    model: {MODELS[i % 3]}\n    bits: 4\n    gpu: {GPUS[i % 4]}\n"
        f"    ctx: {1024 + (i % 29) * 256}\n    users: {1 + i % 13}\n"
    )


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one run of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped by wait4
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def write_plans(root: Path) -> tuple[Path, Path, Path]:
    """one.yaml (1,000 deployments), ten.yaml (10,000) and many/ (1,000 one-deployment files)."""
    (root / "one.yaml").write_text("deployments:\n" + "".join(deployment(i) for i in range(1000)))
    (root / "ten.yaml").write_text("deployments:\n" + "".join(deployment(i) for i in range(10000)))
    many = root / "many"
    many.mkdir()
    for i in range(1000):
        (many / f"p{i:04d}.yaml").write_text("deployments:\n" + deployment(i))
    return root / "one.yaml", root / "ten.yaml", many


def main() -> None:
    import vramcalc

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    compileall.compile_dir(str(Path(vramcalc.__file__).parent), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, _, many = write_plans(root)
        estimate = "estimate gemma-2-27b --bits 4 --users 10 --json"
        commands = {
            f"python -c '{DEPS}'": [sys.executable, "-c", DEPS],
            estimate: [str(BIN), *estimate.split()],
            "recommend --users 20 --json": [str(BIN), "recommend", "--users", "20", "--json"],
            "check of one file with 1,000 deployments": [str(BIN), "check", str(root / "one.yaml")],
            "check of 1,000 one-deployment files": [str(BIN), "check", str(many)],
            "check of one file with 10,000 deployments": [str(BIN), "check", str(root / "ten.yaml")],
            "... the same, --format json": [str(BIN), "check", str(root / "ten.yaml"), "--format", "json"],
        }
        seconds: dict[str, list[float]] = {label: [] for label in commands}
        peak: dict[str, float] = dict.fromkeys(commands, 0.0)
        for _ in range(runs):
            for label, cmd in commands.items():
                wall, rss = run(cmd, env)
                seconds[label].append(wall)
                peak[label] = max(peak[label], rss)
    base = statistics.median(seconds[estimate])
    print(f"{'command':<52} {'median s':>9} {'x estimate':>11} {'peak MiB':>9}   ({runs} runs each)")
    for label, walls in seconds.items():
        med = statistics.median(walls)
        print(f"{label:<52} {med:>9.2f} {med / base:>11.1f} {peak[label]:>9.0f}")


if __name__ == "__main__":
    main()
