"""Which GPU tier serves N users: every catalog GPU x count x layout, judged by the one estimator."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from vramcalc.core.engines import resolve_engine
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.estimate import Workload, usable_gpu_bytes
from vramcalc.core.formats import WeightFormat
from vramcalc.core.scenario import Scenario, run
from vramcalc.core.speed import Speed, speed
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec

LayoutKind = Literal["single", "tensor-parallel", "pipeline-parallel", "replicas"]
GPU_COUNTS = (1, 2, 4, 8)
# The default --headroom: memory kept free for fragmentation, other processes and spikes.
DEFAULT_HEADROOM = 0.10
# Source: people read ~4-5 words (~6-8 tokens) per second; below ~10 tokens/s per user a chat
# stream visibly lags the reader. A planning floor, not a measurement (--min-speed changes it).
DEFAULT_MIN_TOKENS_PER_S = 10.0
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
class Request:
    """What to size: the model and how it is served, and the users to serve."""

    model: ModelSpec
    users: int
    ctx_tokens: int = 4096
    engine: str = "vllm"
    bits: int | None = 4
    quant: str | None = None
    kv_dtype: str = "auto"
    fill: float = 1.0
    shared_prefix_tokens: int = 0
    headroom: float = DEFAULT_HEADROOM
    max_gpus: int = 8
    prompt_tokens: int | None = None
    min_tokens_per_s: float = DEFAULT_MIN_TOKENS_PER_S
    max_ttft_s: float | None = None  # slowest acceptable first token for a full-context prompt
    workers: int = 1  # processes that each load the model (per GPU)
    settings: EngineSettings = field(default_factory=EngineSettings)  # tp, prompt_tokens: from above
    stored: WeightFormat | None = None  # a concrete file's format and measured bytes (scenario.run)


@dataclass(frozen=True, slots=True)
class Option:
    """One deployment: a GPU, how many, how they share the work, and what it achieves."""

    gpu: GpuSpec
    count: int
    layout: LayoutKind
    max_users: int  # users it serves at the context with headroom
    serves: bool  # max_users >= the users asked for
    scenario: Scenario  # per GPU (per replica for replicas), at min(users, max_users) users
    speed: Speed | None
    per_gpu_total_bytes: int
    usable_bytes: int
    price_usd: float | None

    @property
    def tier(self) -> str:
        return MULTI_TIER if self.count > 1 else tier_of(self.gpu)


@dataclass(frozen=True, slots=True)
class Remedy:
    """A change that would make a tier serve the users, with what it achieves."""

    change: str
    max_users: int
    serves: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    request: Request
    options: tuple[Option, ...]
    tiers: tuple[tuple[str, Option | None], ...]  # best option per tier (None: no GPU in it)
    choice: Option | None
    closest: Option
    remedies: tuple[tuple[str, tuple[Remedy, ...]], ...]  # (tier below the choice, remedies)
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


def run_layout(req: Request, gpu: GpuSpec, users: int, tp: int) -> Scenario:
    work = Workload(
        req.ctx_tokens, max(1, users), req.fill, req.workers, min(req.shared_prefix_tokens, req.ctx_tokens)
    )
    return run(
        req.model,
        work,
        engine=req.engine,
        gpu=gpu,
        bits=None if req.quant else req.bits,
        quant=req.quant,
        kv_dtype=req.kv_dtype,
        settings=replace(req.settings, tp=tp, prompt_tokens=req.prompt_tokens or req.settings.prompt_tokens),
        stored=req.stored,
    )


def per_gpu_total(sc: Scenario, pp: int) -> int:
    """Bytes on the busiest GPU: pipeline parallel splits weights and KV by layers over `pp` GPUs;
    each stage keeps its own activation peak and reserve."""
    e = sc.estimate
    if pp == 1:
        return e.total_bytes
    return (e.weights_bytes + e.kv.bytes) // pp + e.activations.bytes + e.reserve_bytes


def fits_budget(sc: Scenario, usable: int, headroom: float, pp: int) -> bool:
    per_gpu = per_gpu_total(sc, pp)
    pool_ok = sc.view is None or sc.view.serves(sc.estimate.kv.bytes // pp)
    return per_gpu <= (1 - headroom) * usable and pool_ok


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


def _linear_guess(one: Scenario, two: Scenario, budget: float, pp: int) -> int:
    """Users at which the per-GPU total (and the engine's KV pool) runs out, from two points."""
    slope = (two.estimate.total_bytes - one.estimate.total_bytes) / pp
    fixed = per_gpu_total(one, pp) - slope
    guesses: list[float] = [(budget - fixed) / slope] if slope > 0 else [float(MAX_USERS_SEARCHED)]
    pool = next((f.value for f in (one.view.figures if one.view else ()) if f.key == "kv_pool_bytes"), None)
    kv_slope = (two.estimate.kv.bytes - one.estimate.kv.bytes) / pp
    if pool is not None and kv_slope > 0:
        guesses.append((float(pool) - (one.estimate.kv.bytes / pp - kv_slope)) / kv_slope)
    return max(1, int(min(guesses)))


def evaluate(req: Request, gpu: GpuSpec, count: int, layout: LayoutKind) -> Option:
    """How many users this deployment serves with headroom, and how it runs at the asked load."""
    usable, _ = usable_gpu_bytes(gpu)
    tp = count if layout == "tensor-parallel" else 1
    pp = count if layout == "pipeline-parallel" else 1
    replicas = count if layout == "replicas" else 1
    cache: dict[int, Scenario] = {}

    def scenario(users: int) -> Scenario:
        if users not in cache:
            cache[users] = run_layout(req, gpu, users, tp)
        return cache[users]

    def fits(users: int) -> bool:
        return fits_budget(scenario(users), usable, req.headroom, pp)

    guess = _linear_guess(scenario(1), scenario(2), (1 - req.headroom) * usable, pp)
    per_replica = max_users(fits, guess)
    total_users = per_replica * replicas
    at = max(1, min(math.ceil(req.users / replicas), per_replica or 1))
    sc = scenario(at)
    spd = speed(sc.estimate, gpu, at, gpus_per_replica=tp) if per_replica else None
    price = gpu.price_usd * count if gpu.price_usd else None
    fast_enough = spd is not None and spd.per_user_tokens_per_s >= req.min_tokens_per_s
    if req.max_ttft_s is not None:
        fast_enough = (
            fast_enough and spd is not None and spd.ttft_s is not None and spd.ttft_s <= req.max_ttft_s
        )
    serves = total_users >= req.users and fast_enough
    return Option(gpu, count, layout, total_users, serves, sc, spd, per_gpu_total(sc, pp), usable, price)


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


def quantized_kv(req: Request) -> str | None:
    """The 8-bit KV cache the engine offers (fp8; q8_0 for llama.cpp/Ollama), unless already quantized."""
    profile, _ = resolve_engine(req.engine)
    alt = "q8_0" if profile.gguf else "fp8"
    return alt if req.kv_dtype not in (alt, "q4_0") and alt in profile.kv_dtypes else None


def remedies(req: Request, option: Option) -> tuple[Remedy, ...]:
    """What would make `option` serve the users: fp8/q8_0 KV, a context cap, more replicas, a
    smaller weight format - each evaluated with the same estimator."""
    engine = req.engine.split("@")[0]
    gguf = engine in ("llama.cpp", "ollama")
    out: list[Remedy] = []
    kv_alt = quantized_kv(req)
    if kv_alt is not None:
        alt = evaluate(replace(req, kv_dtype=kv_alt), option.gpu, option.count, option.layout)
        out.append(Remedy(f"{kv_alt} KV cache", alt.max_users, alt.serves, f"serves {alt.max_users} users"))
    cap = context_cap(req, option)
    if cap:
        out.append(
            Remedy(
                f"cap the context at {cap:,} tokens", req.users, True, f"{req.users} users at {cap:,} tokens"
            )
        )
    if option.max_users:
        replicas = math.ceil(req.users / option.max_users)
        out.append(
            Remedy(
                f"{option.max_users} users per replica",
                option.max_users * replicas,
                True,
                f"{replicas} replicas of {option.count} x {option.gpu.id} for {req.users} users",
            )
        )
    if option.count == 1:
        for count, layout in layouts(req.model, req.engine, req.max_gpus)[1:]:
            more = evaluate(req, option.gpu, count, layout)
            if more.serves:
                out.append(
                    Remedy(
                        f"{count} x {option.gpu.id} ({layout})",
                        more.max_users,
                        True,
                        f"serves {more.max_users} users",
                    )
                )
                break
    smaller = smaller_format(req, option, gguf)
    if smaller is not None:
        name, alt = smaller
        out.append(Remedy(f"{name} weights", alt.max_users, alt.serves, f"serves {alt.max_users} users"))
    return tuple(out)


def context_cap(req: Request, option: Option) -> int | None:
    """Largest context (multiple of 256) at which the option serves the users, if any >= 512."""
    low, high = 0, req.ctx_tokens // 256
    while low < high:
        mid = (low + high + 1) // 2
        if (
            mid
            and evaluate(replace(req, ctx_tokens=mid * 256), option.gpu, option.count, option.layout).serves
        ):
            low = mid
        else:
            high = mid - 1
    return low * 256 if low * 256 >= 512 and low * 256 < req.ctx_tokens else None


def smaller_format(req: Request, option: Option, gguf: bool) -> tuple[str, Option] | None:
    current = option.scenario.estimate.weight_format.name
    ladder = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M"] if gguf else ["bf16", "fp8", "awq-int4"]
    if current not in ladder or current == ladder[-1]:
        return None
    nxt = ladder[ladder.index(current) + 1]
    alt = evaluate(replace(req, quant=nxt, bits=None), option.gpu, option.count, option.layout)
    return nxt, alt


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
    fixes: list[tuple[str, tuple[Remedy, ...]]] = []
    if choice is not None:
        below = [o for name, o in per_tier if o is not None and name != MULTI_TIER]
        idx = (
            [o.tier for o in below].index(choice.tier)
            if choice.tier in [o.tier for o in below]
            else len(below)
        )
        if idx > 0:
            lower = below[idx - 1]
            fixes.append((lower.tier, remedies(req, lower)))
    else:
        fixes.append((closest.tier, remedies(req, closest)))
    notes = (
        f"{req.headroom:.0%} headroom: a deployment serves N users when its per-GPU total stays under "
        f"{1 - req.headroom:.0%} of usable memory, the engine's KV pool holds the users' cache, and each "
        f"user gets at least {req.min_tokens_per_s:g} tokens/s",
        "speed: decode step = max(weights + KV bytes / (bandwidth x efficiency), FLOPs / (peak x efficiency)); "
        "TTFT for one prompt of the full context",
    )
    return Recommendation(req, tuple(options), per_tier, choice, closest, tuple(fixes), notes)
