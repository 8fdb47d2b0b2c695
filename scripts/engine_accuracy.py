"""Print every engine calibration point (measured vs ours) and the median / worst error per engine.

Usage: .venv/bin/python scripts/engine_accuracy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine_records import (
    Point,
    llamacpp_points,
    ollama_points,
    summary,
    transformers_points,
    vllm_points,
)
from tests.speed_records import SpeedPoint
from tests.speed_records import points as speed_points
from tests.speed_records import summary as speed_summary


def show(title: str, points: list[Point]) -> None:
    print(f"\n{title}")
    print(f"{'record':<48} {'figure':<20} {'measured':>12} {'ours':>12} {'error':>8}  note")
    for p in points:
        note = "xfail: " + p.xfail[:60] + "..." if p.xfail else ""
        if p.kind == "starts":
            err = "ok" if p.rel_error == 0 else "WRONG"
            print(f"{p.record:<48} {p.figure:<20} {p.measured!s:>12} {p.ours!s:>12} {err:>8}  {note}")
            continue
        print(
            f"{p.record:<48} {p.figure:<20} {p.measured:>12.4g} {p.ours:>12.4g} {p.rel_error:>+8.2%}  {note}"
        )
    median, worst = summary(points)
    print(f"median |error| {median:.2%}, worst {worst:.2%} (xfail points excluded)")


def show_speed(title: str, pts: list[SpeedPoint]) -> None:
    print(f"\n{title}")
    print(f"{'record':<52} {'engine':<12} {'figure':<22} {'measured':>9} {'ours':>9} {'error':>8}")
    for p in pts:
        note = "  xfail" if p.xfail else ("  (lower bound)" if p.lower_bound else "")
        print(
            f"{p.record:<52} {p.engine:<12} {p.label:<22} {p.measured:>9.1f} {p.ours:>9.1f} {p.rel_error:>+8.1%}{note}"
        )
    median, worst = speed_summary(pts)
    print(f"median |error| {median:.1%}, worst {worst:.1%} (xfail and lower-bound points excluded)")


if __name__ == "__main__":
    show("vLLM (KV pool, blocks, capacity, concurrency, starts)", vllm_points())
    show("transformers generate() peak (Qwen2.5 benchmark)", transformers_points())
    show("llama.cpp whole-process memory, --swa-full vs iSWA (Command R7B, 31K context)", llamacpp_points())
    show("Ollama's printed offload estimate (gemma3:27b, 20K context, q8_0 KV)", ollama_points())
    pts = speed_points()
    show_speed(
        "Speed: serving engines (tests/calibration/throughput.yaml)",
        [p for p in pts if p.engine != "transformers"],
    )
    show_speed(
        "Speed: transformers generate() (Qwen2.5 benchmark)", [p for p in pts if p.engine == "transformers"]
    )
