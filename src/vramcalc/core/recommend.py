"""Which GPU tier serves N users: every catalog GPU x count x layout, judged by the one estimator."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from vramcalc.core.assess import (
    DEFAULT_HEADROOM,
    DEFAULT_MIN_TOKENS_PER_S,
    Assessment,
    LayoutKind,
    Request,
    assess,
)
from vramcalc.core.engines import resolve_engine
from vramcalc.core.fixes import Fix, search
from vramcalc.core.scenario import Scenario
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_MIN_TOKENS_PER_S",
    "LayoutKind",
    "Option",
    "Recommendation",
    "Request",
    "evaluate",
    "max_users",
    "recommend",
    "tier_of",
]

GPU_COUNTS = (1, 2, 4, 8)
MAX_USERS_SEARCHED = 100_000

# Capacity tiers by one card's marketed memory (GB); several cards form the multi-card tier.
TIERS: tuple[tuple[str, float, float], ...] = (
    ("16 GB", 0, 20),
    ("24 GB", 20, 28),
    ("32 GB", 28, 40),
    ("48 GB", 40, 64),
    ("80 GB", 64, 96),
    ("96-192 GB", 96, 10_000),
)
MULTI_TIER = "multi-card"

# Engines that run on each vendor's GPUs (vLLM/SGLang/TGI/transformers: CUDA and ROCm builds;
# llama.cpp/Ollama also Metal and Vulkan/SYCL).
_ENGINE_VENDORS = {
    "vllm": {"NVIDIA", "AMD"},
    "sglang": {"NVIDIA", "AMD"},
    "tgi": {"NVIDIA", "AMD"},
    "transformers": {"NVIDIA", "AMD"},
    "llama.cpp": {"NVIDIA", "AMD", "Apple", "Intel"},
    "ollama": {"NVIDIA", "AMD", "Apple"},
}


@dataclass(frozen=True, slots=True)
class Option:
    """One deployment: a GPU, how many, how they share the work, and its assessment at the asked load."""

    gpu: GpuSpec
    count: int
    layout: LayoutKind
    max_users: int  # most users it passes for (headroom and goals included)
    assessment: Assessment  # at the users asked for
    price_usd: float | None

    @property
    def serves(self) -> bool:
        return self.assessment.passes

    @property
    def tier(self) -> str:
        return MULTI_TIER if self.count > 1 else tier_of(self.gpu)

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
    options: tuple[Option, ...]
    tiers: tuple[tuple[str, Option | None], ...]  # best option per tier (None: no GPU in it)
    choice: Option | None
    closest: Option
    remedies: tuple[tuple[str, tuple[Fix, ...]], ...]  # (tier below the choice, fixes from the one search)
    assumptions: tuple[str, ...]


def tier_of(gpu: GpuSpec) -> str:
    for name, low, high in TIERS:
        if low <= gpu.memory_gb_marketed < high:
            return name
    return TIERS[-1][0]


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


def _guess(one: Assessment, two: Assessment) -> int:
    """Users per replica at which memory (or the engine's KV pool) runs out, from two points."""
    slope = two.demand_bytes - one.demand_bytes
    guesses = [float(MAX_USERS_SEARCHED)]
    if slope > 0:
        guesses.append((one.budget_bytes - one.demand_bytes) / slope + 1)
    kv_slope = two.kv_bytes - one.kv_bytes
    if one.kv_pool_bytes is not None and kv_slope > 0:
        guesses.append((one.kv_pool_bytes - one.kv_bytes) / kv_slope + 1)
    return max(1, int(min(guesses)))


def evaluate(req: Request, gpu: GpuSpec, count: int, layout: LayoutKind) -> Option:
    """The assessment at the asked load, and the most users this deployment passes for."""
    d = req.on(gpu, count, layout)
    cache: dict[int, Assessment] = {}

    def at(users_per_replica: int) -> Assessment:
        if users_per_replica not in cache:
            cache[users_per_replica] = assess(replace(d, users=users_per_replica * d.replicas))
        return cache[users_per_replica]

    per_replica = max_users(lambda u: at(u).passes, _guess(at(1), at(2)))
    price = gpu.price_usd * count if gpu.price_usd else None
    return Option(gpu, count, layout, per_replica * d.replicas, assess(d), price)


def candidates(gpus: Iterable[GpuSpec], engine: str) -> list[GpuSpec]:
    vendors = _ENGINE_VENDORS[engine.split("@")[0]]
    return [g for g in gpus if g.vendor in vendors]


def _rank(o: Option) -> tuple[float, float, float]:
    """Cheapest first where prices are known, then least memory, then most users."""
    price = o.price_usd if o.price_usd is not None else math.inf
    return (price, o.usable_bytes * o.count, -o.max_users)


def best(options: Sequence[Option]) -> Option | None:
    if not options:
        return None
    serving = [o for o in options if o.serves]
    if serving:
        return min(serving, key=_rank)
    return max(options, key=lambda o: (o.max_users, -_rank(o)[0]))


def _fixes(req: Request, option: Option) -> tuple[Fix, ...]:
    """What would make `option` serve the users: the one fix search, on that deployment."""
    return search(option.assessment.deployment, option.assessment)


def recommend(req: Request, gpus: Iterable[GpuSpec]) -> Recommendation:
    """Evaluate every candidate; pick the smallest tier that serves the users, then the cheapest."""
    if req.users < 1:
        raise SpecError(f"--users must be a positive integer, got {req.users}")
    if req.min_tokens_per_s < 0:
        raise SpecError(f"--min-speed must be >= 0 tokens/s, got {req.min_tokens_per_s}")
    if not 0 <= req.headroom < 1:
        raise SpecError(f"--headroom must be in [0, 1), got {req.headroom}")
    if req.max_gpus < 1:
        raise SpecError(f"--max-gpus must be a positive integer, got {req.max_gpus}")
    resolve_engine(req.engine)
    pool = candidates(gpus, req.engine)
    options: list[Option] = []
    for gpu in pool:
        single = evaluate(req, gpu, 1, "single")
        options.append(single)
        if single.serves:
            continue  # more cards of a kind that already serves the users only cost more
        for count, layout in layouts(req.model, req.engine, req.max_gpus)[1:]:
            try:
                options.append(evaluate(req, gpu, count, layout))
            except SpecError:
                continue  # e.g. a layout this engine cannot take
    tier_names = [t[0] for t in TIERS] + [MULTI_TIER]
    per_tier = tuple((name, best([o for o in options if o.tier == name])) for name in tier_names)
    choice = next((o for _, o in per_tier if o is not None and o.serves), None)
    closest = best(options)
    if closest is None:
        raise SpecError(f"no catalog GPU runs {req.engine}")
    fixes: list[tuple[str, tuple[Fix, ...]]] = []
    if choice is not None:
        below = [o for name, o in per_tier if o is not None and name != MULTI_TIER]
        idx = (
            [o.tier for o in below].index(choice.tier)
            if choice.tier in [o.tier for o in below]
            else len(below)
        )
        if idx > 0:
            lower = below[idx - 1]
            fixes.append((lower.tier, _fixes(req, lower)))
    else:
        fixes.append((closest.tier, _fixes(req, closest)))
    notes = (
        f"{req.headroom:.0%} headroom: a deployment serves N users when every user runs at once (no queue, "
        f"no offload), the workload stays under {1 - req.headroom:.0%} of usable memory, and each user gets at "
        f"least {req.min_tokens_per_s:g} tokens/s",
        "speed: decode step = max(weights + KV bytes / (bandwidth x efficiency), FLOPs / (peak x efficiency)); "
        "TTFT for one prompt of the context less the output tokens",
    )
    return Recommendation(req, tuple(options), per_tier, choice, closest, tuple(fixes), notes)
