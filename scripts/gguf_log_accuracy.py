"""Measure the llama.cpp and Ollama engine models on published startup logs nobody here fitted to.

Runs `vramcalc calibrate LOG [args] --json` on every llama.cpp and Ollama log listed in
tests/fixtures/logs/published/sources*.yaml and prints, per log, theirs / ours / error % for each
figure the log prints, then the median and worst absolute error per figure. Logs whose entry has
`notes.exclude` (a run the tool cannot model, e.g. expert tensors moved to the CPU with -ot) are
printed but left out of the summary, with their reason.

Usage: .venv/bin/python scripts/gguf_log_accuracy.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "tests" / "fixtures" / "logs" / "published"
ENGINES = ("llama.cpp", "ollama")
# The runner's buffers (llama.cpp lines, also forwarded by Ollama; over several GPUs their sums) and
# Ollama's own estimate.
FIGURES = (
    "model_buffer_bytes",
    "host_model_buffer_bytes",
    "kv_buffer_bytes",
    "compute_buffer_bytes",
    "total_bytes",
    "gpus_model_bytes",
    "gpus_kv_bytes",
    "gpus_compute_bytes",
    "gpu_layers",
    "required_full_bytes",
    "required_kv_bytes",
    "weights_total_bytes",
    "graph_full_bytes",
    "graph_partial_bytes",
    "layers_offload",
)


def entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(PUBLISHED.glob("sources*.yaml")):
        out += [
            e for e in (yaml.safe_load(path.read_text()) or {}).get("logs", []) if e.get("engine") in ENGINES
        ]
    return out


def calibrate(entry: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str]:
    """(exit code, the JSON document or None, stderr's last line)."""
    args = [str(a) for a in (entry.get("notes") or {}).get("args", [])]
    cmd = [sys.executable, "-m", "vramcalc", "calibrate", str(PUBLISHED / entry["file"]), *args, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    doc = json.loads(r.stdout) if r.returncode in (0, 1) and r.stdout.strip() else None
    return r.returncode, doc, (r.stderr.strip().splitlines() or [""])[-1]


def errors_of(doc: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """figure key -> (theirs, ours, relative error) for every numeric figure both sides give."""
    out: dict[str, tuple[float, float, float]] = {}
    for fig in doc.get("figures", []):
        theirs, ours = fig.get("theirs"), fig.get("ours")
        if isinstance(theirs, bool) or not isinstance(theirs, (int, float)) or not theirs:
            continue
        if isinstance(ours, (int, float)) and not isinstance(ours, bool):
            out[fig["key"]] = (float(theirs), float(ours), (ours - theirs) / abs(theirs))
    return out


def _fmt(key: str, value: float) -> str:
    return f"{value:,.0f}" if "layers" in key else f"{value / 2**20:,.1f}M"


def main() -> int:
    summary: dict[str, list[tuple[float, str]]] = {}
    starts = [0, 0]
    for e in entries():
        rc, doc, err = calibrate(e)
        exclude = (e.get("notes") or {}).get("exclude")
        print(f"\n{e['file']}  ({e['engine']}, rc {rc}{', EXCLUDED: ' + exclude if exclude else ''})")
        if doc is None:
            print(f"  cannot calibrate: {err}")
            continue
        print(f"  {doc.get('engine_profile')}: {doc.get('era')}")
        for key, (theirs, ours, rel) in errors_of(doc).items():
            print(f"  {key:<26} {_fmt(key, theirs):>12} {_fmt(key, ours):>12} {rel:+8.1%}")
            if not exclude and key in FIGURES:
                summary.setdefault(key, []).append((abs(rel), e["file"]))
        start = next((f for f in doc.get("figures", []) if f["key"] == "starts"), None)
        if start is not None and not exclude:
            starts[0] += start.get("theirs") == start.get("ours")
            starts[1] += 1
    print("\nSummary (logs not excluded)")
    print(f"  {'figure':<26} {'n':>3} {'median |err|':>13} {'worst |err|':>12}  worst log")
    for key in FIGURES:
        rows = summary.get(key)
        if rows:
            worst = max(rows)
            median = statistics.median(r for r, _ in rows)
            print(f"  {key:<26} {len(rows):>3} {median:>12.2%} {worst[0]:>12.2%}  {worst[1]}")
    print(f"  starts predicted right: {starts[0]}/{starts[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
