"""Explain a GPU memory reading (nvidia-smi, or a bare figure from a monitor) with figures: what it
can and cannot be, against the assessment of the deployment when one is given.

Each finding has a stable code (JSON `findings[].code`), the figures it came from and the fix.
`problem` findings make `vramcalc diagnose` exit 1; the others explain a reading that is normal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vramcalc.core.estimate import usable_gpu_bytes
from vramcalc.units import GIB, MIB

if TYPE_CHECKING:
    from vramcalc.core.assess import Assessment
    from vramcalc.readings.smi import GpuProcess, GpuSample, SmiReading
    from vramcalc.specs import GpuSpec

# Processes on one card whose memory is within this share of each other hold the same thing
# (one model copy each); a copy below MIN_COPY_MIB is a CUDA context or a tool, not a model.
SAME_COPY_SHARE = 0.15
MIN_COPY_MIB = 2048
# Source: nvidia-smi reports a process's memory with its CUDA context (300-600 MiB, pytorch#107667):
# a process holds "about the weights" when it holds between this share and twice them.
WEIGHTS_SHARE = 0.8
# A card is full when this share of its memory is in use (vLLM's default pre-allocation is 0.9 of
# the total plus the CUDA context and graphs, so a healthy vLLM card reads 92-97%).
FULL_SHARE = 0.9
# Memory that climbs by more than this share of the card over a series is growing, not noise.
GROWTH_SHARE = 0.05
# A card holding less than this share of itself is still loading the model (the start of a series).
LOADED_SHARE = 0.1
# Samples a series needs before growth is called a trend.
MIN_SERIES = 3
# Decode far below the assessment (this share of it) on a full card is the offload cliff.
CLIFF_SHARE = 0.5
PREALLOCATING = frozenset({"vllm", "sglang", "tgi"})


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # above_physical_limit | duplicate_model_copies | growing_memory | near_full | offload_cliff
    message: str
    figures: dict[str, float | int | str] = field(default_factory=dict)
    problem: bool = True


@dataclass(frozen=True, slots=True)
class Comparison:
    quantity: str
    observed: float
    planned: float
    unit: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    gpu: GpuSpec | None
    names: tuple[str, ...]  # the GPU names the readings print
    readings: tuple[str, ...]  # what was read, in words
    comparisons: tuple[Comparison, ...]
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> bool:
        return any(f.problem for f in self.findings)


def _gib(mib: float) -> float:
    return mib * MIB / GIB


def _card_of(sample: GpuSample, gpu: GpuSpec | None) -> float | None:
    if gpu is not None:
        return usable_gpu_bytes(gpu)[0] / MIB
    return sample.total_mib


def card_of(samples: list[GpuSample], gpus: list[GpuSpec]) -> GpuSpec | None:
    """The catalog card the readings print: by name; a name nvidia-smi cut ("NVIDIA RTX PRO 6000
    Blac...") by the catalog names it starts whose nvidia-smi total is the one printed."""
    from vramcalc.core.calibrate import gpu_named

    for s in samples:
        if not s.name:
            continue
        named = gpu_named(s.name, gpus)
        if named is not None:
            return named
        if s.name.endswith("..."):
            stem = s.name.removesuffix("...").strip().lower()
            hits = [g for g in gpus if g.name.lower().startswith(stem)]
            if s.total_mib is not None:  # the cut name alone may be a sibling (a laptop part, a 16 GB Ti)
                hits = [
                    g
                    for g in hits
                    if g.usable_mib is not None and abs(g.usable_mib - s.total_mib) <= 0.005 * s.total_mib
                ]
            if len(hits) == 1:
                return hits[0]
    return None


def card_mib(gpu: GpuSpec | None, samples: list[GpuSample]) -> float | None:
    """The card's memory in MiB: the catalog's nvidia-smi total, else the total the reading prints."""
    if gpu is not None:
        usable, _ = usable_gpu_bytes(gpu)
        return usable / MIB
    totals = [s.total_mib for s in samples if s.total_mib]
    return max(totals) if totals else None


def diagnose(
    readings: list[SmiReading],
    *,
    used_mib: float | None = None,
    gpu: GpuSpec | None = None,
    assessment: Assessment | None = None,
    tokens_per_s: float | None = None,
) -> Diagnosis:
    """Findings for the readings (nvidia-smi outputs) and a bare figure (`--used`), on `gpu`."""
    samples = [s for r in readings for s in r.samples]
    processes = [p for r in readings for p in r.processes]
    card = card_mib(gpu, samples)
    findings: list[Finding] = []
    said = [
        f"{r.source}: nvidia-smi {r.kind}, {len(r.samples)} GPU samples, {len(r.processes)} processes"
        for r in readings
    ]
    if used_mib is not None:
        said.append(f"a reading of {_gib(used_mib):.2f} GiB in use")
    findings += _above_limit(samples, used_mib, card, gpu, assessment)
    findings += _duplicates(processes, assessment)
    findings += _growth(samples, card)
    findings += _hidden(readings)
    peak = max([s.used_mib or 0.0 for s in samples] + [used_mib or 0.0]) or None
    # the fullest card against its own size (a reading may hold different cards)
    fullest = max(
        ((s.used_mib, _card_of(s, gpu)) for s in samples if s.used_mib is not None and _card_of(s, gpu)),
        key=lambda uc: uc[0] / uc[1] if uc[1] else 0.0,
        default=(used_mib, card) if used_mib is not None else (None, card),
    )
    findings += _near_full(fullest[0], fullest[1], assessment)
    findings += _cliff(peak, card, assessment, tokens_per_s)
    comparisons: list[Comparison] = []
    if assessment is not None and peak is not None:
        comparisons.append(
            Comparison(
                "GPU memory in use (GiB, the busiest card)",
                round(_gib(peak), 3),
                round(assessment.per_gpu_bytes / GIB, 3),
                "GiB",
            )
        )
    if assessment is not None and tokens_per_s is not None and assessment.decode_tokens_per_s_per_user:
        comparisons.append(
            Comparison(
                "decode tokens/s per user",
                tokens_per_s,
                round(assessment.decode_tokens_per_s_per_user, 2),
                "tokens/s",
            )
        )
    names = tuple(dict.fromkeys(s.name for s in samples if s.name))
    return Diagnosis(gpu, names, tuple(said), tuple(comparisons), tuple(findings))


def _above_limit(
    samples: list[GpuSample],
    used_mib: float | None,
    card: float | None,
    gpu: GpuSpec | None,
    assessment: Assessment | None,
) -> list[Finding]:
    if card is None:
        return []
    out: list[Finding] = []
    plan = " Give the deployment (--model ...) to see what spills."
    if assessment is not None and assessment.reasons:
        plan = f" The assessment of the deployment: {assessment.verdict.replace('_', ' ')}; {assessment.reasons[0]}."
        both = (assessment.per_gpu_bytes + assessment.offloaded_bytes) / MIB
        if used_mib is not None and assessment.offloaded_bytes and abs(both - used_mib) <= 0.15 * used_mib:
            plan += (
                f" Its {assessment.per_gpu_bytes / GIB:.2f} GiB on the card + {assessment.offloaded_bytes / GIB:.2f} "
                f"GiB in host memory = {_gib(both):.2f} GiB, the reading's size: the monitor adds the two"
            )
    over = [s for s in samples if s.used_mib is not None and s.used_mib > (_card_of(s, gpu) or card) * 1.001]
    if used_mib is not None and used_mib > card * 1.001:
        out.append(
            Finding(
                "above_physical_limit",
                f"{_gib(used_mib):.2f} GiB is more than the card's {_gib(card):.2f} GiB: it cannot be one card's "
                "VRAM. A monitor that shows it (Windows Task Manager's 'GPU memory', a dashboard) adds shared "
                "system memory the driver lends when VRAM is full, or sums several cards or processes. Past the "
                "card's VRAM, layers or KV cache live in host memory and every token crosses PCIe: that is the "
                "slowdown. Read nvidia-smi for the card's own figure (Dedicated GPU memory in Task Manager)."
                + plan,
                {
                    "reading_gib": round(_gib(used_mib), 3),
                    "card_gib": round(_gib(card), 3),
                    "beyond_vram_gib": round(_gib(used_mib - card), 3),
                },
            )
        )
    if over:
        worst = max(over, key=lambda s: s.used_mib or 0.0)
        assert worst.used_mib is not None
        out.append(
            Finding(
                "above_physical_limit",
                f"GPU {worst.index} reports {_gib(worst.used_mib):.2f} GiB in use, more than its "
                f"{_gib(card):.2f} GiB: nvidia-smi never shows more than a card holds, so this row is another "
                "card (check --gpu) or the figures were added up",
                {"reading_gib": round(_gib(worst.used_mib), 3), "card_gib": round(_gib(card), 3)},
            )
        )
    return out


def _duplicates(processes: list[GpuProcess], assessment: Assessment | None) -> list[Finding]:
    """Several processes on one card each holding about the same large amount: one copy each."""
    out: list[Finding] = []
    weights_mib = assessment.scenario.estimate.weights_bytes / MIB if assessment is not None else None
    by_gpu: dict[str | None, list[GpuProcess]] = {}
    for p in processes:
        if p.used_mib is not None and p.used_mib >= MIN_COPY_MIB:
            by_gpu.setdefault(p.card, []).append(p)
    for gpu_index, procs in sorted(by_gpu.items(), key=lambda kv: kv[0] or ""):
        if weights_mib:
            copies = [
                p for p in procs if weights_mib * WEIGHTS_SHARE <= (p.used_mib or 0) <= 2 * weights_mib + 4096
            ]
        else:
            biggest = max(p.used_mib or 0 for p in procs)
            copies = [p for p in procs if (p.used_mib or 0) >= biggest * (1 - SAME_COPY_SHARE)]
        if len(copies) < 2:
            continue
        each = sum(p.used_mib or 0 for p in copies) / len(copies)
        where = "one card" if gpu_index is None else f"GPU {gpu_index}"
        model = (
            f"; the model's weights are {_gib(weights_mib):.2f} GiB, so each holds a copy"
            if weights_mib
            else " (give the deployment, --model ..., to compare each with the model's weights); processes "
            "the same size are copies of one model, or a second server left running"
        )
        out.append(
            Finding(
                "duplicate_model_copies",
                f"{len(copies)} processes on {where} hold {_gib(each):.2f} GiB each "
                f"({', '.join(f'{p.name} {p.pid}' for p in copies[:6])}){model}: one model copy per worker, "
                f"{_gib(each * (len(copies) - 1)):.2f} GiB paid again. Fix: one serving process (vLLM, "
                "llama-server, Ollama) that the web workers call over HTTP; gunicorn --preload does not help "
                "(CUDA state does not survive fork: each worker sets up its own context and copy)",
                {
                    "copies": len(copies),
                    "each_gib": round(_gib(each), 3),
                    "extra_gib": round(_gib(each * (len(copies) - 1)), 3),
                },
            )
        )
    return out


def _hidden(readings: list[SmiReading]) -> list[Finding]:
    """A table whose cards hold memory but whose Processes section lists none (or none there)."""
    out: list[Finding] = []
    for r in readings:
        if r.kind != "table":
            continue
        shown = {p.gpu for p in r.processes}
        quiet = [s for s in r.samples if (s.used_mib or 0) >= MIN_COPY_MIB and s.index not in shown]
        if quiet:
            used = sum(s.used_mib or 0 for s in quiet)
            out.append(
                Finding(
                    "processes_not_visible",
                    f"{len(quiet)} card(s) hold {_gib(used):.2f} GiB that no listed process owns: the process runs "
                    "in another PID namespace (a container, another user's job), where nvidia-smi cannot name it. "
                    "Run nvidia-smi inside the container, or `--query-compute-apps` on the host, to see it",
                    {"cards": len(quiet), "unowned_gib": round(_gib(used), 3)},
                    problem=False,
                )
            )
    return out


def _growth(samples: list[GpuSample], card: float | None) -> list[Finding]:
    """A time series per GPU whose memory climbs sample after sample."""
    out: list[Finding] = []
    series: dict[str, list[GpuSample]] = {}
    for s in samples:
        if s.timestamp is not None and s.used_mib is not None:
            series.setdefault(s.gpu, []).append(s)
    for index, run in sorted(series.items()):
        # Loading the model is not growth: the series starts once the card holds a tenth of itself.
        size = card or max(s.total_mib or 0 for s in run) or 0.0
        run = [
            s
            for i, s in enumerate(run)
            if any((x.used_mib or 0) >= LOADED_SHARE * size for x in run[: i + 1])
        ]
        if len(run) < MIN_SERIES:
            continue
        used = [s.used_mib or 0.0 for s in run]
        rises = sum(1 for a, b in itertools.pairwise(used) if b > a)
        falls = sum(1 for a, b in itertools.pairwise(used) if b < a)
        climb = used[-1] - used[0]
        limit = (card or max(s.total_mib or 0 for s in run) or used[-1]) * GROWTH_SHARE
        if climb <= limit or falls > rises // 4:
            continue
        per_step = climb / (len(used) - 1)
        steps_left = math.inf if not card or per_step <= 0 else (card - used[-1]) / per_step
        out.append(
            Finding(
                "growing_memory",
                f"GPU {index}: memory climbs from {_gib(used[0]):.2f} to {_gib(used[-1]):.2f} GiB over "
                f"{len(used)} samples ({per_step:,.0f} MiB per sample, {rises} rises, {falls} falls)"
                + (
                    f"; at this rate the card is full in {steps_left:,.0f} more samples"
                    if math.isfinite(steps_left)
                    else ""
                )
                + ". With steady users this is not a KV pool (engines allocate theirs once): a model or pipeline "
                "built per request, tensors kept between requests, or the whole history re-sent without KV reuse. "
                "Build the model once at start-up and keep the server's own cache",
                {
                    "first_gib": round(_gib(used[0]), 3),
                    "last_gib": round(_gib(used[-1]), 3),
                    "samples": len(used),
                    "mib_per_sample": round(per_step, 1),
                },
            )
        )
    return out


def _near_full(peak: float | None, card: float | None, assessment: Assessment | None) -> list[Finding]:
    if peak is None or card is None or peak < card * FULL_SHARE or peak > card * 1.001:
        return []  # below the mark, or above the card (above_physical_limit says what that is)
    figures: dict[str, float | int | str] = {"used_gib": round(_gib(peak), 3), "card_gib": round(_gib(card), 3),
                                             "share": round(peak / card, 4)}  # fmt: skip
    if assessment is not None:
        engine = assessment.scenario.estimate.plan.engine
        figures["planned_gib"] = round(assessment.per_gpu_bytes / GIB, 3)
        if engine in PREALLOCATING:
            return [
                Finding(
                    "near_full",
                    f"{_gib(peak):.2f} of {_gib(card):.2f} GiB in use: {engine} pre-allocates its KV pool at start "
                    f"(the assessment holds {assessment.per_gpu_bytes / GIB:.2f} GiB per GPU): full by design, not "
                    "a leak; it queues requests past the pool instead of spilling",
                    figures,
                    problem=False,
                )
            ]
        return [
            Finding(
                "near_full",
                f"{_gib(peak):.2f} of {_gib(card):.2f} GiB in use with {engine}, which does not pre-allocate: "
                f"the assessment expects {assessment.per_gpu_bytes / GIB:.2f} GiB. At the limit it spills layers "
                "or KV cache to host memory (llama.cpp --fit, Ollama) or fails with out of memory "
                "(transformers): fewer users, a shorter context or a quantized KV cache",
                figures,
            )
        ]
    return [
        Finding(
            "near_full",
            f"{_gib(peak):.2f} of {_gib(card):.2f} GiB in use ({peak / card:.0%}). vLLM, SGLang and TGI reach this "
            "by design (they pre-allocate their KV pool); other engines are at the limit and spill or fail next. "
            "Give the deployment (--model ...) to tell which",
            figures,
            problem=False,
        )
    ]


def _cliff(
    peak: float | None, card: float | None, assessment: Assessment | None, tokens_per_s: float | None
) -> list[Finding]:
    """The deployment runs part of itself from host memory: the assessment says so (layers or KV
    offloaded), or the observed speed is far under the assessment's on a full card."""
    if assessment is None:
        return []
    planned = assessment.decode_tokens_per_s_per_user
    spilled = assessment.offloaded_bytes / GIB
    full = peak is not None and card is not None and peak >= card * FULL_SHARE
    slow = tokens_per_s is not None and planned is not None and tokens_per_s < planned * CLIFF_SHARE
    if not (spilled or (slow and full)):
        return []
    seen = f"; you see {tokens_per_s:g}" if tokens_per_s is not None else ""
    figures: dict[str, float | int | str] = {"offloaded_gib": round(spilled, 3)}
    if planned is not None:
        figures["planned_tokens_per_s"] = round(planned, 2)
    if tokens_per_s is not None:
        figures["observed_tokens_per_s"] = tokens_per_s
    return [
        Finding(
            "offload_cliff",
            (
                f"the deployment keeps {spilled:.2f} GiB of weights or KV cache in host memory, read over PCIe or "
                f"by the CPU every token: the assessment expects {planned or 0:.1f} tokens/s per user{seen}"
                if spilled
                else f"{tokens_per_s:g} tokens/s per user where the assessment expects {planned or 0:.1f} on a full "
                "card: layers or KV cache are in host memory"
            )
            + ". Fix: a quantized KV cache, a shorter context, fewer users per replica, or a larger card "
            "(`vramcalc recommend` names the smallest that holds it)",
            figures,
        )
    ]
