"""Hold a measured benchmark run against the assessment of the deployment it ran: ours vs theirs per figure."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vramcalc.core.assess import Assessment, Deployment, assess
from vramcalc.core.serving import REQUEST_OVERHEAD_S
from vramcalc.core.types import Measured

if TYPE_CHECKING:
    from vramcalc.readings import BenchmarkRun

# A benchmark that does not print its lengths (llama-bench's tg has no prompt; Ollama prints
# both): the run's own figure decides which lengths matter, these fill the rest.
DEFAULT_PROMPT_TOKENS = 1
DEFAULT_OUTPUT_TOKENS = 1
# Shortest context a deployment is assessed at (a tg/pp run of a few tokens).
MIN_CTX_TOKENS = 64


@dataclass(frozen=True, slots=True)
class FigureCheck:
    """One printed figure of one run, theirs and ours, in the benchmark's unit."""

    run: str
    figure: str  # the BenchmarkRun field
    unit: str
    measured: float
    ours: float

    @property
    def rel_error(self) -> float:
        return (self.ours - self.measured) / self.measured if self.measured else math.inf


@dataclass(frozen=True, slots=True)
class RunCheck:
    run: str
    deployment: Deployment | None
    figures: tuple[FigureCheck, ...]
    note: str  # why a run or figure was not compared ("" when all were)


# figure -> unit, and how our assessment gives it
_UNITS = {
    "decode_tokens_per_s": "tokens/s",
    "prompt_tokens_per_s": "tokens/s",
    "median_tpot_s": "s",
    "median_itl_s": "s",
    "median_ttft_s": "s",
    "output_tokens_per_s": "tokens/s",
    "request_per_s": "requests/s",
}


def run_deployment(run: BenchmarkRun, base: Deployment) -> Deployment:
    """The deployment `run` measured: `base` (model, GPU, engine, format) at the run's load.

    Users = the run's concurrency (closed loop: each client sends its next request when the last
    ends), or, with no concurrency limit, the requests it sent: at its request rate (Poisson
    arrivals), or with none every request at once (a burst of `completed`). Context = depth + prompt + output; each sequence is on average half way through
    its output (fill). A one-user run (llama-bench, Ollama) is one user.
    """
    prompt = run.prompt_tokens or DEFAULT_PROMPT_TOKENS
    output = run.output_tokens or DEFAULT_OUTPUT_TOKENS
    depth = run.depth_tokens or 0
    ctx = max(MIN_CTX_TOKENS, depth + prompt + output + 1)
    users = run.concurrency or run.completed or 1
    burst = run.concurrency is None or (run.completed is not None and run.completed <= run.concurrency)
    poisson = run.concurrency is None and run.request_rate_per_s is not None
    settings = replace(base.settings, prompt_tokens=prompt)
    if run.flash_attn is not None and base.engine.partition("@")[0] in ("llama.cpp", "ollama"):
        settings = replace(settings, flash_attn=run.flash_attn)
    return replace(
        base,
        users=users if not burst else (run.completed or users),
        ctx_tokens=ctx,
        fill=min(1.0, (depth + prompt + output / 2) / ctx),
        output_tokens=output,
        settings=settings,
        allow_long_ctx=True,
        arrival="poisson" if poisson else "burst" if burst and users > 1 else "closed",
        arrival_rate_per_s=run.request_rate_per_s if poisson else None,
    )


def _ours(figure: str, run: BenchmarkRun, a: Assessment) -> float | None:
    """Our value of `figure`. One-user figures of llama-bench and Ollama have no server around
    them: decode is the step alone, prompt processing the prefill alone."""
    spd, srv = a.speed, a.serving
    if spd is None or srv is None:
        return None
    if figure == "decode_tokens_per_s":
        return spd.per_user_tokens_per_s
    if figure == "prompt_tokens_per_s":
        return (run.prompt_tokens or 1) / spd.ttft_s if spd.ttft_s else None
    if figure in ("median_tpot_s", "median_itl_s"):
        return srv.tpot_s
    if figure == "median_ttft_s":
        return srv.ttft_s
    if figure == "output_tokens_per_s":
        return srv.output_tokens_per_s
    if figure == "request_per_s":
        return srv.request_per_s
    return None


def check_run(run: BenchmarkRun, base: Deployment) -> RunCheck:
    """Every figure `run` prints that the assessment also gives, ours vs theirs."""
    if run.request_rate_per_s is not None and run.concurrency is None and run.completed is None:
        return RunCheck(run.label, None, (), "a request-rate run that does not say how many requests it sent")
    d = run_deployment(run, base)
    a = assess(d)
    out: list[FigureCheck] = []
    for figure, unit in _UNITS.items():
        measured = getattr(run, figure)
        if measured is None or measured <= 0:
            continue
        ours = _ours(figure, run, a)
        if ours is not None and math.isfinite(ours):
            out.append(FigureCheck(run.label, figure, unit, float(measured), ours))
    note = "" if out else f"nothing to compare: the deployment {a.verdict.replace('_', ' ')}"
    return RunCheck(run.label, d, tuple(out), note)


def check_runs(runs: tuple[BenchmarkRun, ...], base: Deployment) -> tuple[RunCheck, ...]:
    return tuple(check_run(r, base) for r in runs)


# Which printed figures measure the decode step and which the prompt (rates as measured / ours;
# times as ours / measured, so a factor above 1 is always "faster than we said").
DECODE_FIGURES = {"decode_tokens_per_s": False, "median_tpot_s": True, "median_itl_s": True}


def _factor(checks: tuple[RunCheck, ...], figures: dict[str, bool]) -> float | None:
    """Geometric mean over every run of measured / ours for `figures` (None when none printed one).
    A run that prints both TPOT and ITL counts each."""
    ratios = [
        (f.ours / f.measured) if figures[f.figure] else (f.measured / f.ours)
        for c in checks
        for f in c.figures
        if f.figure in figures and f.measured > 0 and f.ours > 0
    ]
    if not ratios:
        return None
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def speed_profile(checks: tuple[RunCheck, ...], base: Deployment, source: str) -> Measured:
    """The benchmark's speed over ours as a calibration profile (`bench FILE --save`) for this GPU,
    engine and weight format: a decode factor (tokens/s, TPOT, ITL), a prompt factor (prompt
    tokens/s: llama-bench pp, Ollama's prompt eval rate) and, from a serving benchmark's TTFT, the
    server's time per request beyond the prefill."""
    from vramcalc.errors import SpecError

    decode = _factor(checks, DECODE_FIGURES)
    prefill = _factor(checks, {"prompt_tokens_per_s": False})
    d = next((c.deployment for c in checks if c.deployment is not None), base)
    e = assess(d).scenario.estimate
    # TTFT beyond our prefill is the server's own time per request (HTTP, tokenizer, scheduler):
    # the median gap over the runs, added to the overhead our figure already holds.
    gaps = [f.measured - f.ours for c in checks for f in c.figures if f.figure == "median_ttft_s"]
    overhead = None
    if gaps:
        overhead = max(0.0, statistics.median(gaps) + REQUEST_OVERHEAD_S.get(e.plan.engine, 0.0))
    if decode is None and prefill is None and overhead is None:
        raise SpecError(
            f"--save: {source} prints no decode or prompt figure we model (tokens/s, TPOT, ITL, TTFT); "
            "nothing to calibrate"
        )
    return Measured(
        source=source,
        engine=e.plan.engine,
        version=e.plan.version,
        model=e.model.id,
        gpu=d.gpu.id,
        weights_format=e.weight_format.name,
        tp=d.tp,
        decode_speed_factor=round(decode, 4) if decode is not None else None,
        prefill_speed_factor=round(prefill, 4) if prefill is not None else None,
        request_overhead_s=round(overhead, 5) if overhead is not None else None,
    )
