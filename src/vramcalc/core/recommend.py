"""Which GPUs serve N users: every candidate card x count x layout (and, for a named card, the fix
search's levers), each one an assessment, ranked by the planner's objective."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from vramcalc.core.assess import (
    DEFAULT_HEADROOM,
    DEFAULT_MIN_TOKENS_PER_S,
    Assessment,
    Deployment,
    LayoutKind,
    Request,
    assess,
)
from vramcalc.core.engines import kv_dtype_unsupported, resolve_engine
from vramcalc.core.estimate import usable_gpu_bytes
from vramcalc.core.fixes import Fix, PlanValue, plan_fields, search
from vramcalc.core.scenario import Scenario
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GIB

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_MIN_TOKENS_PER_S",
    "OBJECTIVES",
    "Filters",
    "LayoutKind",
    "Objective",
    "Option",
    "Recommendation",
    "Request",
    "evaluate",
    "filters_from",
    "max_users",
    "parse_users",
    "recommend",
    "recommend_counts",
    "tier_of",
]

GPU_COUNTS = (1, 2, 4, 8)
MAX_USERS_SEARCHED = 100_000
# Most user counts one `--users A-B` range is answered at (evenly spaced, ends included).
RANGE_POINTS = 5

Objective = Literal["cost", "speed", "gpus"]
# Wraps the cards recommend walks, for a caller that shows progress (the CLI's bar at a terminal):
# (items, what is being done) -> the same items, in order.
Tracker = Callable[[Sequence[GpuSpec], str], Iterable[GpuSpec]]
OBJECTIVES: tuple[Objective, ...] = ("cost", "speed", "gpus")
_OBJECTIVE_WORDS = {
    "cost": "the lowest price (of what is not owned yet), then fewer GPUs, then speed",
    "speed": "the fastest decode per user, then the lowest price",
    "gpus": "the fewest GPUs, then the lowest price",
}

# Capacity tiers by one card's usable memory (GiB, as nvidia-smi reports it); every catalog card
# falls in exactly one (tests/test_recommend.py walks the catalog). Several cards: the multi-card tier.
TIERS: tuple[tuple[str, float, float], ...] = (
    ("under 20 GiB", 0, 20),
    ("20-28 GiB", 20, 28),
    ("28-40 GiB", 28, 40),
    ("40-64 GiB", 40, 64),
    ("64-100 GiB", 64, 100),
    ("100-200 GiB", 100, 200),
    ("200 GiB and up", 200, math.inf),
)
MULTI_TIER = "multi-card"

VENDORS = {"nvidia": "NVIDIA", "amd": "AMD", "apple": "Apple", "intel": "Intel"}
FORM_FACTORS = ("consumer", "workstation", "datacenter", "unified")

# Engines that run on each vendor's GPUs (vLLM/SGLang/TGI/transformers: CUDA and ROCm builds;
# llama.cpp: also Metal, Vulkan and SYCL; Ollama: CUDA, ROCm and Metal).
ENGINE_VENDORS = {
    "vllm": {"NVIDIA", "AMD"},
    "sglang": {"NVIDIA", "AMD"},
    "tgi": {"NVIDIA", "AMD"},
    "transformers": {"NVIDIA", "AMD"},
    "llama.cpp": {"NVIDIA", "AMD", "Apple", "Intel"},
    "ollama": {"NVIDIA", "AMD", "Apple"},
}


@dataclass(frozen=True, slots=True)
class Filters:
    """Which cards may be chosen, and what is owned already (`have`: id -> count)."""

    gpus: tuple[str, ...] = ()  # catalog ids (resolved); empty: every card
    vendor: str | None = None  # nvidia | amd | apple | intel
    form_factor: str | None = None
    max_price_usd: float | None = None
    have: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Option:
    """One deployment: a GPU, how many, how they share the work, any lever applied, and its
    assessment at the asked load."""

    gpu: GpuSpec
    count: int
    layout: LayoutKind
    max_users: int  # most users it passes for (headroom and goals included)
    assessment: Assessment  # at the users asked for
    price_usd: float | None  # list price of all its cards
    cost_usd: float | None  # what it adds to what is owned (`--have`)
    changes: dict[str, PlanValue] = field(default_factory=dict)  # plan fields of a lever (--gpu mode)

    @property
    def serves(self) -> bool:
        return self.assessment.passes

    @property
    def tier(self) -> str:
        return MULTI_TIER if self.count > 1 else tier_of(self.gpu)

    @property
    def usd_per_user(self) -> float | None:
        """Price of the cards over the users they serve at most (capacity cost per user)."""
        if self.price_usd is None or self.max_users <= 0:
            return None
        return self.price_usd / self.max_users

    @property
    def scenario(self) -> Scenario:
        return self.assessment.scenario

    @property
    def usable_bytes(self) -> int:
        return self.assessment.usable_bytes

    @property
    def per_gpu_total_bytes(self) -> int:
        return self.assessment.per_gpu_bytes


@dataclass(frozen=True, slots=True)
class Recommendation:
    request: Request
    objective: Objective
    options: tuple[Option, ...]  # every option assessed, best first by the objective
    tiers: tuple[tuple[str, tuple[Option, ...]], ...]  # per tier, its options best first
    choice: Option | None
    closest: Option
    remedies: tuple[tuple[str, tuple[Fix, ...]], ...]  # (where, fixes from the one search)
    assumptions: tuple[str, ...]


def tier_of(gpu: GpuSpec) -> str:
    usable = usable_gpu_bytes(gpu)[0] / GIB
    for name, low, high in TIERS:
        if low <= usable < high:
            return name
    raise AssertionError(f"{gpu.id}: {usable} GiB is in no tier")  # TIERS cover [0, inf)


def parse_users(text: str) -> tuple[int, ...]:
    """'10' -> (10,); '5,10,20' -> (5, 10, 20); '10-20' -> up to RANGE_POINTS counts evenly
    spaced from 10 to 20, ends included."""
    raw = text.strip()
    try:
        if "-" in raw.strip("-"):
            low_text, high_text = raw.split("-", 1)
            low, high = int(low_text), int(high_text)
            if low < 1 or high < low:
                raise ValueError
            steps = min(RANGE_POINTS - 1, high - low)
            counts = {low + round(i * (high - low) / steps) for i in range(steps + 1)} if steps else {low}
            return tuple(sorted(counts))
        counts_list = [int(part) for part in raw.split(",")]
    except ValueError:
        raise SpecError(
            f"--users {text!r}: give a count (10), a list (5,10,20) or a range (10-20) of positive integers"
        ) from None
    if any(c < 1 for c in counts_list) or not counts_list:
        raise SpecError(f"--users must be positive integers, got {text!r}")
    if any(c > MAX_USERS_SEARCHED for c in counts_list):
        raise SpecError(f"--users at most {MAX_USERS_SEARCHED:,}, got {text!r}")
    return tuple(sorted(set(counts_list)))


def layouts(model: ModelSpec, engine: str, max_gpus: int) -> list[tuple[int, LayoutKind]]:
    """Counts x layouts to try: one card; tensor parallel where tp divides the attention heads
    (vLLM/SGLang/TGI), else pipeline parallel (layers split; llama.cpp's only multi-GPU mode);
    replicas (each card its own copy serving its share of users)."""
    out: list[tuple[int, LayoutKind]] = [(1, "single")]
    for n in GPU_COUNTS[1:]:
        if n > max_gpus:
            break
        tp_ok = engine.split("@")[0] in ("vllm", "sglang", "tgi") and model.num_attention_heads % n == 0
        out.append((n, "tensor-parallel" if tp_ok else "pipeline-parallel"))
        out.append((n, "replicas"))
    return out


def max_users(fits: Callable[[int], bool], guess: int) -> int:
    """Largest u with fits(u), 0 if none (fits is monotone: more users never need less memory).

    Starts from `guess` (a linear prediction), walks to the boundary, and falls back to doubling
    and bisection when the guess is far off.
    """
    if not fits(1):
        return 0
    u = max(1, min(guess, MAX_USERS_SEARCHED))
    if fits(u):
        for _ in range(3):
            if not fits(u + 1):
                return u
            u += 1
        low, high = u, u * 2
        while fits(high) and high < MAX_USERS_SEARCHED:
            low, high = high, high * 2
    else:
        for _ in range(3):
            u -= 1
            if u <= 1 or fits(u):
                return max(1, u)
        low, high = 1, u
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def _guess(one: Assessment, two: Assessment, min_tokens_per_s: float = 0.0) -> int:
    """Users per replica at which memory (or the engine's KV pool) runs out, or the speed per user
    falls under `min_tokens_per_s`, from two points. A step costs a + b x users (weights once,
    each sequence's KV), so 1 / speed is linear in users too."""
    slope = two.demand_bytes - one.demand_bytes
    guesses = [float(MAX_USERS_SEARCHED)]
    if slope > 0:
        guesses.append((one.budget_bytes - one.demand_bytes) / slope + 1)
    kv_slope = two.kv_bytes - one.kv_bytes
    if one.kv_pool_bytes is not None and kv_slope > 0:
        guesses.append((one.kv_pool_bytes - one.kv_bytes) / kv_slope + 1)
    s1, s2 = one.decode_tokens_per_s_per_user, two.decode_tokens_per_s_per_user
    if min_tokens_per_s > 0 and s1 and s2 and s2 < s1:
        step_slope = 1 / s2 - 1 / s1
        guesses.append((1 / min_tokens_per_s - 1 / s1) / step_slope + 1)
    return max(1, int(min(guesses)))


def capacity(d: Deployment) -> int:
    """The most users this deployment passes for (headroom and goals included); 0 if none.

    It does not depend on the users asked for, so it is computed once per deployment and reused
    across the counts of `--users 10-20` (and across options that share it)."""
    return _capacity(replace(d, users=d.replicas))


@functools.lru_cache(maxsize=4096)
def _capacity(d: Deployment) -> int:
    cache: dict[int, Assessment] = {}

    def at(users_per_replica: int) -> Assessment:
        if users_per_replica not in cache:
            cache[users_per_replica] = assess(replace(d, users=users_per_replica * d.replicas))
        return cache[users_per_replica]

    guess = _guess(at(1), at(2), d.min_tokens_per_s)
    over = at(guess)
    floor = d.min_tokens_per_s
    if guess > 2 and not over.passes and floor > 0 and any(m.kind == "speed" for m in over.misses):
        # 1 / speed grows faster than linearly (prompt chunks share the steps): interpolate again
        # between 2 users and the guess, which brackets the floor (secant step, one assessment).
        t2, tg = (
            1 / (at(2).decode_tokens_per_s_per_user or math.inf),
            1 / (over.decode_tokens_per_s_per_user or math.inf),
        )
        if tg > t2:
            guess = 2 + int((1 / floor - t2) * (guess - 2) / (tg - t2))
    return max_users(lambda u: at(u).passes, guess) * d.replicas


def filters_from(
    gpus: tuple[str, ...],
    vendor: str | None,
    form_factor: str | None,
    max_price_usd: float | None,
    have: tuple[tuple[str, int], ...],
) -> Filters:
    """Validated filters: unknown values name the known ones."""
    if vendor is not None and vendor.lower() not in VENDORS:
        raise SpecError(f"unknown --vendor {vendor!r}; choose {', '.join(VENDORS)}")
    if form_factor is not None and form_factor.lower() not in FORM_FACTORS:
        raise SpecError(f"unknown --form-factor {form_factor!r}; choose {', '.join(FORM_FACTORS)}")
    if max_price_usd is not None and not (math.isfinite(max_price_usd) and max_price_usd > 0):
        raise SpecError(f"--max-price must be a positive number of USD, got {max_price_usd}")
    if any(n < 1 for _, n in have):
        raise SpecError("--have ID[xN]: N must be a positive integer")
    return Filters(
        gpus,
        vendor.lower() if vendor else None,
        form_factor.lower() if form_factor else None,
        max_price_usd,
        have,
    )


def _owned(filters: Filters, gpu: GpuSpec) -> int:
    return sum(n for gid, n in filters.have if gid == gpu.id)


def _option(d: Deployment, filters: Filters, changes: dict[str, PlanValue] | None = None) -> Option:
    price = d.gpu.price_usd * d.count if d.gpu.price_usd else None
    added = max(0, d.count - _owned(filters, d.gpu))
    cost = d.gpu.price_usd * added if d.gpu.price_usd else (0.0 if added == 0 else None)
    return Option(d.gpu, d.count, d.layout, capacity(d), assess(d), price, cost, changes or {})


def evaluate(
    req: Request, gpu: GpuSpec, count: int, layout: LayoutKind, filters: Filters | None = None
) -> Option:
    """The assessment at the asked load, and the most users this deployment passes for."""
    return _option(req.on(gpu, count, layout), filters or Filters())


def candidates(gpus: Iterable[GpuSpec], engine: str, filters: Filters | None = None) -> list[GpuSpec]:
    """Cards the engine runs on that pass the filters (an explicit --gpu list is kept in full)."""
    f = filters or Filters()
    vendors = ENGINE_VENDORS[engine.split("@")[0]]
    out = []
    for g in gpus:
        if f.gpus and g.id not in f.gpus:
            continue
        if g.vendor not in vendors:
            continue
        if f.vendor and g.vendor != VENDORS[f.vendor]:
            continue
        if f.form_factor and g.form_factor != f.form_factor:
            continue
        if f.max_price_usd is not None and (g.price_usd is None or g.price_usd > f.max_price_usd):
            continue
        out.append(g)
    return out


def _rank(objective: Objective) -> Callable[[Option], tuple[float, ...]]:
    """Sort key, best first: serving options before the others, then the objective."""

    def key(o: Option) -> tuple[float, ...]:
        cost = o.cost_usd if o.cost_usd is not None else math.inf
        speed = -(o.assessment.decode_tokens_per_s_per_user or 0.0)
        lever = float(len(o.changes))
        if not o.serves:
            return (1, -o.assessment.users_at_once, -o.max_users, cost)
        if objective == "speed":
            return (0, speed, cost, o.count, lever)
        if objective == "gpus":
            return (0, o.count, cost, lever, speed)
        return (0, cost, o.count, lever, speed)

    return key


def _lever_options(req: Request, gpu: GpuSpec, filters: Filters) -> list[Option]:
    """For one named card: the fix search's levers that keep the ask (users, context) on one card
    of it, each as an option (KV dtype, max_num_seqs, gpu_util, another engine, a smaller format)."""
    d = req.on(gpu)
    a = assess(d)
    if a.passes:
        return []
    out = []
    for fix in search(d, a, limit=64, max_gpus=1):
        keys = {k for k, _ in fix.fields}
        if keys & {"users", "ctx", "gpu_count", "layout"}:
            continue
        fixed = fix.assessment.deployment
        out.append(_option(fixed, filters, plan_fields(d, fixed)))
    return out


def _honest(gpu: GpuSpec, req: Request) -> str | None:
    """Why the asked engine setting does not run on this card, if it does not (None: it runs)."""
    profile, _ = resolve_engine(req.engine)
    return kv_dtype_unsupported(profile, req.kv_dtype, gpu)


def recommend(
    req: Request,
    gpus: Iterable[GpuSpec],
    *,
    objective: Objective = "cost",
    filters: Filters | None = None,
    track: Tracker | None = None,
) -> Recommendation:
    """Assess every candidate card x count x layout (for a single named card also the fix search's
    levers); the choice is the best serving option by the objective."""
    f = filters or Filters()
    if req.users < 1:
        raise SpecError(f"--users must be a positive integer, got {req.users}")
    if not math.isfinite(req.min_tokens_per_s) or req.min_tokens_per_s < 0:
        raise SpecError(f"--min-speed must be >= 0 tokens/s, got {req.min_tokens_per_s}")
    if not 0 <= req.headroom < 1:
        raise SpecError(f"--headroom must be in [0, 1), got {req.headroom}")
    if req.max_gpus < 1:
        raise SpecError(f"--max-gpus must be a positive integer, got {req.max_gpus}")
    if objective not in OBJECTIVES:
        raise SpecError(f"unknown --optimize {objective!r}; choose {', '.join(OBJECTIVES)}")
    resolve_engine(req.engine)
    pool = candidates(gpus, req.engine, f)
    if not pool:
        raise SpecError(f"no catalog GPU passes the filters and runs {req.engine}; loosen --vendor, "
                        "--form-factor, --max-price or --gpu")  # fmt: skip
    notes: list[str] = []
    options: list[Option] = []
    what = f"assessing {len(pool)} cards for {req.users} users"
    for gpu in track(pool, what) if track else pool:
        why = _honest(gpu, req)
        if why:
            notes.append(why)
            continue
        single = evaluate(req, gpu, 1, "single", f)
        options.append(single)
        if single.serves and objective != "speed":
            continue  # more cards of a kind that already serves the users only cost more
        for count, layout in layouts(req.model, req.engine, req.max_gpus)[1:]:
            try:
                options.append(evaluate(req, gpu, count, layout, f))
            except SpecError:
                continue  # e.g. a layout this engine cannot take
        if len(pool) == 1:
            options += _lever_options(req, gpu, f)
    if not options:
        raise SpecError("; ".join(notes) or f"no catalog GPU runs {req.engine}")
    key = _rank(objective)
    options.sort(key=key)
    tier_names = [t[0] for t in TIERS] + [MULTI_TIER]
    per_tier = tuple((name, tuple(o for o in options if o.tier == name)) for name in tier_names)
    choice = options[0] if options[0].serves else None
    closest = options[0]
    remedies: list[tuple[str, tuple[Fix, ...]]] = []
    if len(pool) == 1:
        one = next(o for o in options if o.count == 1 and not o.changes)
        if not one.serves:
            remedies.append((f"1 x {one.gpu.id}", search(one.assessment.deployment, one.assessment,
                                                         max_gpus=req.max_gpus)))  # fmt: skip
    else:
        served = [name for name, opts in per_tier if name != MULTI_TIER and any(o.serves for o in opts)]
        below = [name for name, opts in per_tier if name != MULTI_TIER and opts and name not in served]
        target = (
            [n for n in below if tier_names.index(n) < tier_names.index(served[0])][-1:]
            if served and below
            else below[-1:]
        )
        for name in target:
            best = dict(per_tier)[name][0]
            remedies.append(
                (name, search(best.assessment.deployment, best.assessment, max_gpus=req.max_gpus))
            )
    notes[:0] = [
        f"objective --optimize {objective}: {_OBJECTIVE_WORDS[objective]}",
        f"{req.headroom:.0%} headroom: a deployment serves N users when every user runs at once (no queue, "
        f"no offload), the workload stays under {1 - req.headroom:.0%} of usable memory, and each user gets "
        f"at least {req.min_tokens_per_s:g} tokens/s",
        "usd_per_user: the cards' list price over the most users they serve",
        "speed: the users as a closed loop (each sends the next request when the last ends); a step = "
        "max(weights + KV bytes / (bandwidth x efficiency), FLOPs of the batch and its prompt chunks / "
        "(peak x efficiency)); tokens/s per user = 1 / step; TTFT = the prompt's chunked prefill plus "
        "any wait for a place (core/serving.py)",
    ]
    if f.have:
        notes.append(
            "owned: " + ", ".join(f"{n} x {gid}" for gid, n in f.have) + " (cost counts what is added)"
        )
    return Recommendation(
        req, objective, tuple(options), per_tier, choice, closest, tuple(remedies), tuple(notes)
    )


def recommend_counts(
    req: Request,
    gpus: Sequence[GpuSpec],
    counts: Sequence[int],
    *,
    objective: str = "cost",
    filters: Filters | None = None,
    track: Tracker | None = None,
) -> tuple[Recommendation, ...]:
    """One recommendation per user count (`--users 10-20`)."""
    goal = next((o for o in OBJECTIVES if o == objective), None)
    if goal is None:
        raise SpecError(f"unknown --optimize {objective!r}; choose {', '.join(OBJECTIVES)}")
    return tuple(
        recommend(replace(req, users=n), gpus, objective=goal, filters=filters, track=track) for n in counts
    )
