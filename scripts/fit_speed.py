"""Fit the speed constants on half of the published benchmarks (split by source) and test them on
the other half; print both tables, xfails included.

Usage: .venv/bin/python scripts/fit_speed.py          # tables with the constants in the code
       .venv/bin/python scripts/fit_speed.py --fit    # search the constants on the fit half first
       .venv/bin/python scripts/fit_speed.py --ranges # also print SPEED_SPREAD from the fit half
       .venv/bin/python scripts/fit_speed.py --fit --only 'DECODE_OVERHEAD_PER_LAYER_S[paged],...'
                                                       # search only the named constants (the rest stay)

The search is coordinate descent over multiplicative steps, minimising the mean |log(ours /
measured)| on the fit half only; it prints the values to copy into core/speed.py and
core/serving.py (with this script named as their source). It never looks at the test half.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import speed_benchmarks as sb

from vramcalc.core import serving, speed

GGUF = ("llama.cpp", "ollama")
PAGED = ("vllm", "sglang", "tgi")


def _set_group(table: dict[str, float], keys: tuple[str, ...]) -> Callable[[float], None]:
    def setter(value: float) -> None:
        for k in keys:
            table[k] = value

    return setter


def _set_module(module: object, name: str) -> Callable[[float], None]:
    def setter(value: float) -> None:
        setattr(module, name, value)

    return setter


# name, getter, setter, (low, high)
PARAMS: list[tuple[str, Callable[[], float], Callable[[float], None], tuple[float, float]]] = [
    ("DECODE_BANDWIDTH_EFFICIENCY[gguf]", lambda: speed.DECODE_BANDWIDTH_EFFICIENCY["llama.cpp"],
     _set_group(speed.DECODE_BANDWIDTH_EFFICIENCY, GGUF), (0.4, 0.98)),
    ("DECODE_BANDWIDTH_EFFICIENCY[paged]", lambda: speed.DECODE_BANDWIDTH_EFFICIENCY["vllm"],
     _set_group(speed.DECODE_BANDWIDTH_EFFICIENCY, PAGED), (0.4, 0.98)),
    ("DECODE_OVERHEAD_PER_LAYER_S[gguf]", lambda: speed.DECODE_OVERHEAD_PER_LAYER_S["llama.cpp"],
     _set_group(speed.DECODE_OVERHEAD_PER_LAYER_S, GGUF), (1e-6, 5e-4)),
    ("DECODE_OVERHEAD_PER_LAYER_S[paged]", lambda: speed.DECODE_OVERHEAD_PER_LAYER_S["vllm"],
     _set_group(speed.DECODE_OVERHEAD_PER_LAYER_S, PAGED), (1e-6, 5e-4)),
    ("PREFILL_COMPUTE_EFFICIENCY[paged]", lambda: speed.PREFILL_COMPUTE_EFFICIENCY["vllm"],
     _set_group(speed.PREFILL_COMPUTE_EFFICIENCY, PAGED), (0.15, 0.9)),
    ("DECODE_BANDWIDTH_EFFICIENCY[transformers]", lambda: speed.DECODE_BANDWIDTH_EFFICIENCY["transformers"],
     _set_group(speed.DECODE_BANDWIDTH_EFFICIENCY, ("transformers",)), (0.3, 0.98)),
    ("DECODE_OVERHEAD_PER_LAYER_S[transformers]", lambda: speed.DECODE_OVERHEAD_PER_LAYER_S["transformers"],
     _set_group(speed.DECODE_OVERHEAD_PER_LAYER_S, ("transformers",)), (1e-5, 3e-3)),
    ("PREFILL_COMPUTE_EFFICIENCY[transformers]", lambda: speed.PREFILL_COMPUTE_EFFICIENCY["transformers"],
     _set_group(speed.PREFILL_COMPUTE_EFFICIENCY, ("transformers",)), (0.05, 0.9)),
    ("DECODE_COMPUTE_EFFICIENCY", lambda: speed.DECODE_COMPUTE_EFFICIENCY,
     _set_module(speed, "DECODE_COMPUTE_EFFICIENCY"), (0.1, 0.9)),
    ("GGUF_DECODE_MAX_BANDWIDTH_GBS", lambda: speed.GGUF_DECODE_MAX_BANDWIDTH_GBS,
     _set_module(speed, "GGUF_DECODE_MAX_BANDWIDTH_GBS"), (300.0, 1e9)),
    ("MOE_PREFILL_EFFICIENCY[gguf]", lambda: speed.MOE_PREFILL_EFFICIENCY["llama.cpp"],
     _set_group(speed.MOE_PREFILL_EFFICIENCY, GGUF), (0.05, 1.0)),
    ("MOE_DECODE_OVERHEAD_PER_LAYER_S[gguf]", lambda: speed.MOE_DECODE_OVERHEAD_PER_LAYER_S["llama.cpp"],
     _set_group(speed.MOE_DECODE_OVERHEAD_PER_LAYER_S, GGUF), (0.0, 3e-4)),
    ("REQUEST_OVERHEAD_S[paged]", lambda: serving.REQUEST_OVERHEAD_S["vllm"],
     _set_group(serving.REQUEST_OVERHEAD_S, PAGED), (0.0005, 0.2)),
]  # fmt: skip
STEPS = (0.5, 0.7, 0.85, 0.93, 1.07, 1.15, 1.4, 2.0)


all_observations = sb.all_observations
split = sb.halves_of


def loss(obs: list[sb.Observation]) -> float:
    """Mean |log(ours / measured)| per (engine, kind) group, then the mean of the groups: a source
    with 48 rows weighs no more than a group of 3."""
    groups: dict[tuple[str, str], list[float]] = {}
    for o in obs:
        if not o.xfail and o.ours > 0:
            groups.setdefault((o.engine, o.kind), []).append(abs(math.log(o.ours / o.measured)))
    means = [sum(v) / len(v) for v in groups.values()]
    return sum(means) / len(means) if means else 0.0


def fit(only: set[str] | None = None) -> None:
    params = [p for p in PARAMS if only is None or p[0] in only]
    if only is not None and len(params) != len(only):
        raise SystemExit(f"--only: unknown names {sorted(only - {p[0] for p in PARAMS})}")
    best = loss(split(all_observations())[0])
    print(f"start: fit-half mean |log error| {best:.4f}")
    for round_ in range(3):
        for name, get, put, (low, high) in params:
            start = get()
            choice = start
            for step in STEPS:
                value = min(high, max(low, start * step))
                put(value)
                trial = loss(split(all_observations())[0])
                if trial < best - 1e-6:
                    best, choice = trial, value
            put(choice)
            print(f"round {round_ + 1}: {name} = {choice:.6g} (loss {best:.4f})")
    print("\nFitted constants (fit half only):")
    for name, get, _, _ in PARAMS:
        print(f"  {name} = {get():.6g}")


def table(title: str, obs: list[sb.Observation]) -> None:
    print(f"\n{title}")
    print(f"{'record':<56} {'engine':<10} {'figure':<28} {'c':>4} {'measured':>10} {'ours':>10} {'error':>8}")
    for o in sorted(obs, key=lambda o: (o.kind, o.engine, o.record)):
        note = "  xfail: " + o.xfail[:50] if o.xfail else ""
        print(
            f"{o.record[:56]:<56} {o.engine:<10} {o.figure:<28} {o.concurrency:>4} {o.measured:>10.4g} "
            f"{o.ours:>10.4g} {o.rel_error:>+8.1%}{note}"
        )
    for kind in ("decode", "prefill", "load", "ttft"):
        part = [o for o in obs if o.kind == kind]
        median, worst, n = sb.summary(part)
        if n:
            print(f"  {kind:<8} n={n:<4} median |error| {median:6.1%}  worst {worst:6.1%}")


TIMES = frozenset({"median_tpot_s", "median_ttft_s"})


def rate_ratio(o: sb.Observation) -> float:
    """measured / ours as a rate: for a time figure, ours / measured (a slower run has the lower ratio)."""
    return o.ours / o.measured if o.figure in TIMES else o.measured / o.ours


def spreads(obs: list[sb.Observation]) -> dict[tuple[str, str], tuple[float, float]]:
    """(kind, family) -> (lowest, highest) rate ratio over `obs` (xfails left out); family "all"
    pools the engines. A family with fewer than MIN_SPREAD_ROWS rows takes the pooled spread."""
    groups: dict[tuple[str, str], list[float]] = {}
    for o in obs:
        if o.xfail or o.ours <= 0 or o.kind not in speed.SPREAD_KINDS:
            continue
        ratio = rate_ratio(o)
        groups.setdefault((o.kind, speed.speed_family(o.engine)), []).append(ratio)
        groups.setdefault((o.kind, "all"), []).append(ratio)
    return {
        key: (math.floor(min(v) * 1000) / 1000, math.ceil(max(v) * 1000) / 1000)
        for key, v in sorted(groups.items())
        if key[1] == "all" or len(v) >= speed.MIN_SPREAD_ROWS
    }


def coverage(title: str, obs: list[sb.Observation]) -> None:
    """How many measured figures fall inside the range the code prints around ours."""
    print(f"\n{title}: measured inside the printed range (SPEED_SPREAD)")
    for kind in speed.SPREAD_KINDS:
        part = [o for o in obs if o.kind == kind and not o.xfail and o.ours > 0]
        inside = 0
        for o in part:
            low, high = speed.spread_of(o.engine, kind)
            inside += low - 1e-9 <= rate_ratio(o) <= high + 1e-9
        if part:
            print(f"  {kind:<8} {inside:>3} of {len(part):<3} ({inside / len(part):.0%})")


def main() -> None:
    if "--fit" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
        fit(None if only is None else {n.strip() for n in only.split(",") if n.strip()})
    obs = all_observations()
    fit_half, test_half = split(obs)
    if "--ranges" in sys.argv:
        print("SPEED_SPREAD on the fit half (copy into core/speed.py):")
        for key, value in spreads(fit_half).items():
            print(f"    {key!r}: {value!r},")
    print(f"sources: {len({o.source for o in fit_half})} fit, {len({o.source for o in test_half})} test")
    table("FIT half (constants chosen on these)", fit_half)
    table("TEST half (never seen by the fit)", test_half)
    coverage("FIT half", fit_half)
    coverage("TEST half", test_half)


if __name__ == "__main__":
    main()
