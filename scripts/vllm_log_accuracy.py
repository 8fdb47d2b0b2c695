"""Measure the engine model on published vLLM startup logs nobody here fitted to.

Runs `vramcalc calibrate LOG [args] --json` on every vLLM log listed in the
tests/fixtures/logs/published/sources*.yaml files and prints, per log, theirs / ours / error % for
each figure, then the median and worst absolute error per figure over two halves split by source
(sorted source addresses, alternately: logs from one page never sit on both sides) and over all of
them, plus how many start/fail outcomes we predicted right. SGLang entries (`estimate_args`,
`kv_tokens`) are compared through `vramcalc estimate`: our KV token figure against theirs.

Usage: .venv/bin/python scripts/vllm_log_accuracy.py [--sources FILE ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = ROOT / "tests" / "fixtures" / "logs" / "published" / "sources.yaml"
FIGURES = (
    "kv_pool_bytes",
    "kv_capacity_tokens",
    "max_concurrency",
    "weights_bytes_per_gpu",
    "activation_peak_bytes",
    "num_gpu_blocks",
)
SHORT = {
    "kv_pool_bytes": "kv_pool",
    "kv_capacity_tokens": "kv_tokens",
    "max_concurrency": "max_conc",
    "weights_bytes_per_gpu": "weights",
    "activation_peak_bytes": "act_peak",
    "num_gpu_blocks": "blocks",
}
GIB = 2**30


@dataclass
class Row:
    file: str
    source: str
    number: int
    version: str | None
    gpu: str
    tp: int
    rc: int
    error: str | None = None
    figures: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (theirs, ours)
    starts: tuple[bool, bool] | None = None  # (theirs, ours)


def vramcalc(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vramcalc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)


def log_number(name: str) -> int:
    m = re.match(r"[a-z]+-(\d+)-", name)
    return int(m.group(1)) if m else 0


def note_args(entry: dict[str, Any]) -> list[str]:
    notes = entry.get("notes") or {}
    if isinstance(notes, dict):
        return [str(a) for a in notes.get("args", [])]
    return []


def calibrate(entry: dict[str, Any], base: Path) -> Row:
    path = base / entry["file"]
    proc = vramcalc("calibrate", str(path), *note_args(entry), "--json")
    row = Row(
        file=entry["file"],
        source=str(entry.get("source")),
        number=log_number(entry["file"]),
        version=entry.get("vllm_version"),
        gpu=str(entry.get("gpu")),
        tp=int(entry.get("tp") or 1),
        rc=proc.returncode,
    )
    if proc.returncode not in (0, 1):
        row.error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return row
    data = json.loads(proc.stdout)
    for fig in data.get("figures", []):
        key = fig.get("key")
        if key == "starts":
            if fig.get("theirs") is not None and fig.get("ours") is not None:
                row.starts = (bool(fig["theirs"]), bool(fig["ours"]))
        elif key in FIGURES and fig.get("theirs") is not None and fig.get("ours") is not None:
            row.figures[key] = (float(fig["theirs"]), float(fig["ours"]))
    return row


def err_pct(theirs: float, ours: float) -> float | None:
    if theirs == 0:
        return None
    return (ours - theirs) / abs(theirs) * 100.0


def fmt_value(key: str, value: float) -> str:
    if key.endswith("_bytes") or key == "weights_bytes_per_gpu":
        return f"{value / GIB:.2f}G"
    if key == "max_concurrency":
        return f"{value:.2f}x"
    return f"{value:,.0f}"


def print_table(rows: list[Row]) -> None:
    head = f"{'file':<40} {'version':<20} {'gpu':<15} {'tp':>2}"
    for key in FIGURES:
        head += f" | {SHORT[key] + ' theirs/ours/err%':^30}"
    head += " | starts t/o"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r.file:<40} {r.version!s:<20} {r.gpu:<15} {r.tp:>2}"
        if r.error:
            print(f"{line} | cannot calibrate (exit {r.rc}): {r.error}")
            continue
        for key in FIGURES:
            if key in r.figures:
                theirs, ours = r.figures[key]
                e = err_pct(theirs, ours)
                cell = f"{fmt_value(key, theirs)}/{fmt_value(key, ours)}/" + (
                    f"{e:+.1f}" if e is not None else "n/a"
                )
            else:
                cell = "-"
            line += f" | {cell:^30}"
        if r.starts is not None:
            line += f" | {'start' if r.starts[0] else 'fail'}/{'start' if r.starts[1] else 'fail'}"
        else:
            line += " | -"
        print(line)


def summarise(label: str, rows: list[Row]) -> None:
    print(f"\n{label} ({len(rows)} logs)")
    print(f"  {'figure':<24} {'n':>3} {'median |err| %':>15} {'worst |err| %':>14}  worst log")
    for key in FIGURES:
        errs = []
        for r in rows:
            if key in r.figures:
                e = err_pct(*r.figures[key])
                if e is not None:
                    errs.append((abs(e), r.file))
        if not errs:
            print(f"  {key:<24} {0:>3} {'-':>15} {'-':>14}")
            continue
        worst = max(errs)
        median = statistics.median(e for e, _ in errs)
        print(f"  {key:<24} {len(errs):>3} {median:>15.2f} {worst[0]:>14.2f}  {worst[1]}")
    outcomes = [r.starts for r in rows if r.starts is not None]
    right = sum(1 for theirs, ours in outcomes if theirs == ours)
    starts = sum(1 for theirs, _ in outcomes if theirs)
    print(
        f"  start/fail outcomes predicted right: {right}/{len(outcomes)} "
        f"(logs: {starts} started, {len(outcomes) - starts} refused)"
    )


def halves(sources: list[str]) -> set[str]:
    """The sources of the first half: sorted, every other one."""
    keys = sorted(set(sources))
    return set(keys[0::2])


def sglang_rows(entries: list[dict[str, Any]]) -> None:
    if not entries:
        print("\nSGLang logs: none listed")
        return
    print("\nSGLang logs (calibrate does not read them; KV tokens via vramcalc estimate)")
    print(f"  {'file':<44} {'gpu':<12} {'tp':>2} {'theirs':>10} {'ours':>10} {'err %':>7}  half")
    first = halves([str(e.get("source")) for e in entries])
    errors: dict[str, list[float]] = {"first": [], "second": []}
    for entry in entries:
        theirs = entry.get("kv_tokens")
        args = [str(a) for a in entry.get("estimate_args", [])]
        if "--engine" not in args:
            args += ["--engine", "sglang"]
        ours: float | None = None
        if args and theirs:
            proc = vramcalc("estimate", *args, "--json")
            if proc.returncode in (0, 1):
                ours = json.loads(proc.stdout).get("engine", {}).get("kv_capacity_tokens")
        e = err_pct(float(theirs), float(ours)) if theirs and ours else None
        half = "first" if str(entry.get("source")) in first else "second"
        if e is not None:
            errors[half].append(abs(e))
        print(
            f"  {entry['file']:<44} {entry.get('gpu')!s:<12} {int(entry.get('tp') or 1):>2} "
            f"{theirs!s:>10} {ours!s:>10} {(f'{e:+.1f}' if e is not None else '-'):>7}  {half}"
        )
    for half, errs in errors.items():
        if errs:
            print(
                f"  SGLang KV tokens, {half} half: n={len(errs)} median |err| {statistics.median(errs):.2f}% "
                f"worst {max(errs):.2f}%"
            )
    every = errors["first"] + errors["second"]
    if every:
        print(
            f"  SGLang KV tokens, all: n={len(every)} median |err| {statistics.median(every):.2f}% worst {max(every):.2f}%"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, action="append")
    opts = parser.parse_args()
    files = opts.sources or sorted(DEFAULT_SOURCES.parent.glob("sources*.yaml"))
    vllm: list[tuple[dict[str, Any], Path]] = []
    sglang: list[dict[str, Any]] = []
    for path in files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for e in doc.get("logs", []):
            if (e.get("notes") or {}).get("exclude"):
                print(f"excluded {e['file']}: {e['notes']['exclude']}")
            elif e.get("engine", "vllm") == "vllm":
                vllm.append((e, path.parent))
            elif e.get("engine") == "sglang":
                sglang.append(e)
    rows = [calibrate(e, base) for e, base in vllm]
    print_table(rows)
    ok = [r for r in rows if not r.error]
    first = halves([r.source for r in rows])
    summarise("(a) first half by source", [r for r in ok if r.source in first])
    summarise("(b) second half by source", [r for r in ok if r.source not in first])
    summarise("(c) all logs", ok)
    failed = [r for r in rows if r.error]
    if failed:
        print(f"\n{len(failed)} log(s) could not be calibrated: " + ", ".join(r.file for r in failed))
    sglang_rows(sglang)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
