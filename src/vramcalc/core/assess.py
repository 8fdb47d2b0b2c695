"""One assessment of a deployment: what the engine does on the GPUs, how fast, and why."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Literal

from vramcalc.core.engines.base import EngineSettings, EngineView
from vramcalc.core.engines.common import CUDA_CONTEXT_BYTES, cuda_total_bytes, default_p2p
from vramcalc.core.estimate import Estimate, Workload, usable_gpu_bytes, users_kv_bytes
from vramcalc.core.formats import WeightFormat
from vramcalc.core.scenario import Scenario, run
from vramcalc.core.serving import Arrival, Load, Serving, serve
from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS, Speed, rate_range, speed_of, stepper, time_range
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GIB, gib, plural

Verdict = Literal["fits", "queues", "offloads", "does_not_start", "does_not_fit"]
VERDICTS: tuple[Verdict, ...] = ("fits", "queues", "offloads", "does_not_start", "does_not_fit")
LayoutKind = Literal["single", "tensor-parallel", "pipeline-parallel", "replicas"]
MissKind = Literal["fit", "start", "queue", "offload", "memory", "speed", "ttft"]

# What each engine does when users x context exceed what it holds (see each engine's module):
# a pool of KV blocks whose scheduler makes the rest wait (vLLM, SGLang, TGI); slots allocated at
# start with layers moved to host memory when they do not fit (llama.cpp, Ollama); one generate()
# batch with device_map="auto" weight offload (transformers).
_POOL_ENGINES = frozenset({"vllm", "sglang", "tgi"})
_SLOT_ENGINES = frozenset({"llama.cpp", "ollama"})

# Source: a planning default, not a measurement: answers of a few hundred tokens (chat); the
# serving benchmarks use 128-1,024 (vllm bench serve --random-output-len, sglang bench_serving).
# It sizes how long a running request holds its KV blocks (wait_s); --output-tokens changes it.
DEFAULT_OUTPUT_TOKENS = 512
# The default --headroom of recommend and plans: memory kept free for fragmentation, other
# processes and spikes (a planning margin, not a measurement).
DEFAULT_HEADROOM = 0.10
# Source: people read ~4-5 words (~6-8 tokens) per second; below ~10 tokens/s per user a chat
# stream visibly lags the reader. A planning floor, not a measurement (--min-speed changes it).
DEFAULT_MIN_TOKENS_PER_S = 10.0


@dataclass(frozen=True, slots=True)
class Deployment:
    """A resolved deployment: the model as served by an engine on `count` GPUs, and its load.

    `headroom` is the share of each GPU's usable memory the workload must leave free; the goals
    (min_tokens_per_s, max_ttft_s; 0 / None = none) are judged at the planned load.
    """

    model: ModelSpec
    gpu: GpuSpec
    users: int
    ctx_tokens: int = 4096
    count: int = 1
    layout: LayoutKind = "single"
    engine: str = "vllm"
    bits: int | None = None
    quant: str | None = None
    kv_dtype: str = "auto"
    fill: float = 1.0
    shared_prefix_tokens: int = 0
    workers: int = 1
    output_tokens: int | None = None
    settings: EngineSettings = field(default_factory=EngineSettings)
    stored: WeightFormat | None = None
    allow_long_ctx: bool = False
    host_bandwidth_gbs: float = HOST_MEMORY_BANDWIDTH_GBS
    headroom: float = 0.0
    min_tokens_per_s: float = 0.0
    max_ttft_s: float | None = None
    arrival: Arrival = "closed"  # how users send requests (core.serving.Load); benchmarks may burst
    arrival_rate_per_s: float | None = None  # arrival "poisson": requests per second (users = requests sent)

    @property
    def replicas(self) -> int:
        return self.count if self.layout == "replicas" else 1

    @property
    def tp(self) -> int:
        return self.count if self.layout == "tensor-parallel" else 1

    @property
    def pp(self) -> int:
        return self.count if self.layout == "pipeline-parallel" else 1

    @property
    def users_per_replica(self) -> int:
        return math.ceil(self.users / self.replicas)

    @property
    def output(self) -> int:
        """Output tokens per request: as given, else the default (at most half the context)."""
        room = (
            self.ctx_tokens - self.settings.prompt_tokens
            if self.settings.prompt_tokens
            else self.ctx_tokens // 2
        )
        return self.output_tokens or max(1, min(DEFAULT_OUTPUT_TOKENS, room))

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens per request: as given (--prompt-tokens), else the context less the output."""
        return self.settings.prompt_tokens or max(1, self.ctx_tokens - self.output)


@dataclass(frozen=True, slots=True)
class Miss:
    """A limit the deployment breaks: `value` against `limit` in `unit` (bytes, users, tokens/s, s)."""

    kind: MissKind
    value: float
    limit: float
    unit: str
    text: str

    @property
    def by(self) -> float:
        """How far past the limit (always positive)."""
        return abs(self.value - self.limit)

    @property
    def share(self) -> float | None:
        """`by` as a share of the limit (None when the limit is not positive)."""
        return self.by / self.limit if self.limit > 0 else None


@dataclass(frozen=True, slots=True)
class Assessment:
    """The one answer for a deployment: the verdict, memory on the busiest GPU, speed, reasons."""

    deployment: Deployment
    scenario: Scenario  # one replica at its share of the users
    verdict: Verdict
    users_at_once: int  # over all replicas
    per_gpu_bytes: int  # the busiest GPU, every process on it, as the engine allocates
    demand_bytes: int  # what the workload needs there: weights, KV in use, buffers, reserve
    usable_bytes: int
    budget_bytes: int  # (1 - headroom) x usable
    kv_bytes: int  # KV of the replica's users on the busiest GPU
    kv_pool_bytes: int | None  # what the engine's KV pool holds there (vLLM, SGLang, TGI)
    offloaded_bytes: int  # weights and KV living in host memory, read every token
    speed: Speed | None  # the running batch of one replica, decoding alone
    serving: Serving | None  # one replica under the load: TPOT, TTFT, throughput (core.serving)
    decode_tokens_per_s_per_user: float | None
    aggregate_tokens_per_s: float | None
    ttft_s: float | None
    wait_s: float | None
    regime: str
    reasons: tuple[str, ...]
    misses: tuple[Miss, ...]
    # the same load in the other peer-to-peer regime, where tensor parallelism's is not known
    # (EnginePlan.gpu_p2p None): the speed ranges span both
    other_p2p: Serving | None = None

    @property
    def speed_ranges(self) -> dict[str, tuple[float, float]]:
        """figure -> (low, high): where published runs would put it (core.speed.SPEED_SPREAD);
        computed when asked (a check of 10,000 deployments keeps none of them)."""
        if self.serving is None:
            return {}
        factors = _speed_factors(self.deployment, self.scenario.estimate)
        return _speed_ranges(self.deployment, self.scenario.estimate, self.serving, factors, self.other_p2p)

    @property
    def users(self) -> int:
        return self.deployment.users

    @property
    def headroom_bytes(self) -> int:
        """Usable memory left on the busiest GPU (negative: short)."""
        return self.usable_bytes - self.per_gpu_bytes

    @property
    def passes(self) -> bool:
        """Fits, with its headroom, and meets its goals."""
        return not self.misses


def _figure(sc: Scenario, key: str) -> int | float | bool | None:
    return next((f.value for f in sc.view.figures if f.key == key), None) if sc.view else None


def _lowest(sc: Scenario, key: str) -> int | float | None:
    """A figure at the low end of its range where the regime is unknown (the vLLM sampler path):
    the pessimistic side a verdict counts on unless the plan pins the regime."""
    value = _figure(sc, key)
    low = next((lo for k, lo, _ in sc.view.ranges if k == key), None) if sc.view else None
    if low is None or isinstance(value, bool):
        return value
    return min(low, value) if value is not None else low


def _run(d: Deployment, users: int, *, on_gpu: bool = True) -> Scenario:
    work = Workload(
        d.ctx_tokens,
        max(1, users),
        d.fill,
        d.workers,
        d.shared_prefix_tokens,
        d.allow_long_ctx,
    )
    return run(
        d.model,
        work,
        engine=d.engine,
        gpu=d.gpu if on_gpu else None,
        bits=None if d.quant else d.bits,
        quant=d.quant,
        kv_dtype=d.kv_dtype,
        settings=replace(d.settings, tp=d.tp, pp=d.pp),
        stored=d.stored,
    )


def validate(d: Deployment) -> None:
    """Refuse what cannot be assessed, naming the field and the fix."""
    if d.users < 1:
        raise SpecError(f"--users must be a positive integer, got {d.users}")
    if d.bits is not None and d.quant is not None:
        raise SpecError("give --bits or --quant, not both")
    if d.count < 1:
        raise SpecError(f"--tp / gpu_count must be a positive integer, got {d.count}")
    if d.output_tokens is not None and not 1 <= d.output_tokens < d.ctx_tokens:
        raise SpecError(
            f"--output-tokens must be at least 1 and below --ctx {d.ctx_tokens:,} (the context holds "
            f"the prompt and the output), got {d.output_tokens:,}"
        )
    prompt = d.settings.prompt_tokens
    if prompt is not None and not 1 <= prompt < d.ctx_tokens:
        raise SpecError(
            f"--prompt-tokens must be at least 1 and below --ctx {d.ctx_tokens:,} (the context holds "
            f"the prompt and the output), got {prompt:,}"
        )
    if prompt is not None and d.output_tokens is not None and prompt + d.output_tokens > d.ctx_tokens:
        raise SpecError(
            f"--prompt-tokens {prompt:,} + --output-tokens {d.output_tokens:,} = {prompt + d.output_tokens:,} "
            f"is above --ctx {d.ctx_tokens:,}; raise --ctx or shorten one of them"
        )
    if not math.isfinite(d.host_bandwidth_gbs) or d.host_bandwidth_gbs <= 0:
        raise SpecError(f"--host-bandwidth must be a positive number of GB/s, got {d.host_bandwidth_gbs}")
    if not 0 <= d.headroom < 1:
        raise SpecError(f"--headroom must be in [0, 1), got {d.headroom}")
    if not math.isfinite(d.min_tokens_per_s) or d.min_tokens_per_s < 0:
        raise SpecError(f"--min-speed must be >= 0 tokens/s, got {d.min_tokens_per_s}")


def _held_users(sc: Scenario, pool: int, cap: int, users: int) -> int:
    """Most of `users` whose KV fits `pool` bytes, at most `cap`: the engine's running batch."""
    e = sc.estimate
    high = min(users, cap)
    if high < 1 or users_kv_bytes(e, 1) > pool:
        return 0
    if users_kv_bytes(e, high) <= pool:
        return high
    low = 1
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if users_kv_bytes(e, mid) <= pool else (low, mid)
    return low


@dataclass(frozen=True, slots=True)
class _Memory:
    """How one replica's engine lays the workload out on its busiest GPU."""

    verdict: Verdict
    running: int  # sequences running at once in this replica
    per_gpu_bytes: int
    demand_bytes: int
    kv_bytes: int
    pool_bytes: int | None
    host_weight_bytes: int  # weights read from host memory each token
    host_kv_bytes: int  # KV of layers computed in host memory
    over_pcie: bool  # host bytes cross PCIe each step (transformers offload) instead of a CPU compute
    reasons: tuple[str, ...]


def _pool_engine(d: Deployment, sc: Scenario, users: int, usable: int) -> _Memory:
    """vLLM, SGLang, TGI: the pool is pre-allocated; past it the scheduler queues (never offloads)."""
    e, view = sc.estimate, sc.view
    assert view is not None
    pp = d.pp
    name = f"{e.plan.engine} {e.plan.version}"
    raw_pool = int(_lowest(sc, "kv_pool_bytes") or 0)
    # Where a regime is unknown (the sampler path, vLLM's MXFP4 kernel) the verdict counts the larger
    # activation peak and weights layout and so the smaller pool; the pre-allocation is the same.
    gap = int(_figure(sc, "kv_pool_bytes") or 0) - raw_pool
    fixed = e.weights_bytes // pp + e.activations.bytes + gap + e.reserve_bytes
    # Pipeline stages hold 1/pp of the weights: the rest of the same budget goes to the pool.
    pool = raw_pool + (e.weights_bytes - e.weights_bytes // pp)
    kv_all = users_kv_bytes(e, users) // pp
    process = fixed + max(0, pool)
    per_gpu = d.workers * process
    cap = int(e.plan.settings.get("max_num_seqs", 0) or _figure(sc, "max_running_requests") or users)
    per_process_users = math.ceil(users / d.workers)
    held = _held_users(sc, pool * pp, cap, per_process_users) if pool > 0 else 0
    running = min(users, held * d.workers)
    demand = d.workers * fixed + users_kv_bytes(e, max(1, running)) // pp
    reasons: list[str] = []
    if e.weights_bytes // pp > usable:
        reasons.append(
            f"the weights alone need {gib(e.weights_bytes // pp):.2f} GiB per GPU, more than the "
            f"{gib(usable):.2f} GiB card"
        )
        return _Memory("does_not_fit", 0, per_gpu, fixed, kv_all, pool, 0, 0, False, tuple(reasons))
    if d.workers > 1 and per_gpu > usable:
        util = float(
            e.plan.settings.get("gpu_memory_utilization", e.plan.settings.get("mem_fraction_static", 0))
        )
        reasons.append(
            f"{d.workers} {e.plan.engine} processes each pre-allocate {gib(process):.2f} GiB: "
            f"{gib(per_gpu):.2f} GiB of {gib(usable):.2f} GiB; the second finds too little free memory"
            + (f" ({d.workers} x gpu_memory_utilization {util:g} > 1)" if util else "")
        )
        return _Memory("does_not_start", 0, per_gpu, demand, kv_all, pool, 0, 0, False, tuple(reasons))
    if not view.starts or held < 1:
        reasons.append(
            f"{name} does not start: "
            + (
                f"weights and buffers leave no KV pool ({gib(pool):.2f} GiB"
                + (
                    f", the low end of its range; {gib(pool + gap):.2f} GiB at the main value: "
                    f"{view.range_reason})"
                    if gap > 0
                    else ")"
                )
                if pool <= 0
                else f"its {gib(pool):.2f} GiB KV pool cannot hold one {d.ctx_tokens:,}-token request "
                f"({gib(users_kv_bytes(e, 1) // pp):.2f} GiB)"
                if held < 1
                else "; ".join(view.notes) or "its process exceeds the card"
            )
        )
        return _Memory("does_not_start", 0, per_gpu, demand, kv_all, pool, 0, 0, False, tuple(reasons))
    offload = e.plan.offload_weight_bytes
    if offload:
        reasons.append(
            f"--cpu-offload-gb keeps {gib(offload):.2f} GiB of weights in host memory; {name} copies them "
            "over PCIe in every forward pass"
        )
    if running < users:
        why = (
            f"max_num_seqs {cap}"
            if held >= cap and cap < per_process_users
            else f"its {gib(pool):.2f} GiB KV pool holds {held} of {per_process_users}"
        )
        reasons.append(
            f"{name} runs {running} of {plural(users, 'request')} at once ({why}); the other "
            f"{users - running} {'waits' if users - running == 1 else 'wait'} in its queue: memory stays at "
            "the pre-allocation; the running ones stream at full speed, the others wait for a place"
        )
        return _Memory("queues", running, per_gpu, demand, kv_all, pool, offload, 0, True, tuple(reasons))
    if offload:
        return _Memory("offloads", running, per_gpu, demand, kv_all, pool, offload, 0, True, tuple(reasons))
    reasons.append(
        f"{name} pre-allocates {gib(process):.2f} GiB per process; the KV cache of {plural(users, 'user')} "
        f"({gib(kv_all):.2f} GiB) fits its {gib(pool):.2f} GiB pool"
    )
    return _Memory("fits", running, per_gpu, demand, kv_all, pool, 0, 0, False, tuple(reasons))


def host_expert_bytes(sc: Scenario) -> int:
    """Routed experts a llama.cpp deployment keeps in RAM: --n-cpu-moe's (the plan's) or --fit's
    (the engine view's, MoE models fitted dense-first)."""
    e = sc.estimate
    return (e.plan.offload_weight_bytes if e.plan.offload_experts else 0) + int(
        _figure(sc, "fit_expert_bytes") or 0
    )


def _slot_engine(d: Deployment, sc: Scenario, users: int, usable: int) -> _Memory:
    """llama.cpp, Ollama: slots x context allocated at start; layers that do not fit run from host
    memory (--fit / Ollama's scheduler); more users than slots wait for one."""
    e, view = sc.estimate, sc.view
    assert view is not None
    name = f"{e.plan.engine} {e.plan.version}"
    slots = e.plan.slots or users
    running = min(users, slots)
    reasons: list[str] = []
    layers = int(_figure(sc, "gpu_layers") or 0)
    every = e.model.num_hidden_layers + 1
    # On several GPUs (-sm layer) the engine's view sums the cards; the busiest card's buffers
    # (total_bytes) size the per-GPU memory.
    model_gpu = int(_figure(sc, "gpus_model_bytes") or _figure(sc, "model_buffer_bytes") or 0)
    kv_gpu = int(_figure(sc, "gpus_kv_bytes") or _figure(sc, "kv_buffer_bytes") or 0)
    buffers = int(_figure(sc, "total_bytes") or 0)
    per_gpu = d.workers * (buffers + CUDA_CONTEXT_BYTES)
    # e.weights_bytes leaves out the experts --n-cpu-moe keeps in RAM (plan.offload_weight_bytes).
    host_weights = max(0, e.weights_bytes + e.plan.offload_weight_bytes - model_gpu)
    host_experts = host_expert_bytes(sc)
    host_kv = max(0, e.kv.bytes - kv_gpu)
    # What the workload needs on the busiest GPU: everything on one card; over several, that
    # card's buffers and context (the layer split is the engine's, not an even share).
    demand = e.total_bytes if d.pp == 1 else per_gpu
    # KV on the busiest GPU: all of it on one card, that card's KV buffer over several.
    kv_here = e.kv.bytes if d.pp == 1 else int(_figure(sc, "kv_buffer_bytes") or 0)
    gpus = "the GPU" if d.pp == 1 else f"the {d.pp} GPUs"
    if not view.starts:
        reasons.append(f"{name} does not start: " + ("; ".join(view.notes) or "out of memory at load"))
        return _Memory("does_not_start", 0, per_gpu, demand, kv_here, None, host_weights, host_kv,
                       False, tuple(reasons))  # fmt: skip
    if d.workers > 1 and per_gpu > usable:
        reasons.append(
            f"{d.workers} {e.plan.engine} processes each hold {gib(per_gpu // d.workers):.2f} GiB: "
            f"{gib(per_gpu):.2f} GiB of {gib(usable):.2f} GiB"
        )
        return _Memory("does_not_start", 0, per_gpu, demand, kv_here, None, 0, 0, False, tuple(reasons))
    verdict: Verdict
    if layers < every:
        reasons.append(
            f"{name} keeps {layers} of {every} layers on {gpus}; {gib(host_weights):.2f} GiB of weights"
            + (f" and {gib(host_kv):.2f} GiB of KV cache" if host_kv else "")
            + f" stay in host memory and are read there every token (at {d.host_bandwidth_gbs:g} GB/s)"
        )
        verdict = "offloads"
    elif host_experts:
        why = (
            f"{e.plan.offload_flag} leaves"
            if e.plan.offload_experts
            else "--fit (MoE: dense weights first) leaves"
        )
        reasons.append(
            f"{name} keeps all {every} layers on {gpus} but {why} {gib(host_experts):.2f} GiB of routed "
            f"experts in host memory: the CPU multiplies the ones each token picks, read there at "
            f"{d.host_bandwidth_gbs:g} GB/s; {gib(buffers):.2f} GiB of buffers on the busiest GPU"
        )
        verdict = "offloads"
    else:
        verdict = "fits"
        reasons.append(
            f"{name} allocates {plural(slots, 'slot')} x {d.ctx_tokens:,} tokens up front: "
            f"{gib(buffers):.2f} GiB of buffers"
            + (
                f", all {every} layers on the GPU"
                if d.pp == 1
                else f" on the busiest card, {every} layers over {gpus}"
            )
        )
    if running < users:
        reasons.append(
            f"{plural(slots, 'slot')} for {plural(users, 'user')}: {users - running} "
            f"{'waits' if users - running == 1 else 'wait'} for a free slot"
            + (" (OLLAMA_NUM_PARALLEL)" if e.plan.engine == "ollama" else " (-np)")
        )
        verdict = "queues" if verdict == "fits" else verdict
    return _Memory(verdict, running, per_gpu, demand, kv_here, None, host_weights, host_kv, False,
                   tuple(reasons))  # fmt: skip


def _batch_engine(d: Deployment, sc: Scenario, users: int, usable: int) -> _Memory:
    """transformers: one generate() batch of every user. device_map="auto" places what does not
    fit in host memory and streams it over PCIe each forward; a KV cache that outgrows the GPU at
    generation time is an out-of-memory error."""
    e = sc.estimate
    pp = d.pp
    per_gpu = (e.weights_bytes + e.kv.bytes) // pp + e.activations.bytes + e.reserve_bytes + e.copies_bytes
    rest = per_gpu - e.weights_bytes // pp  # what generate() needs beside the weights
    reasons: list[str] = []
    if per_gpu <= usable:
        reasons.append(f"one generate() batch of {users} needs {gib(per_gpu):.2f} GiB at its peak")
        return _Memory("fits", users, per_gpu, per_gpu, e.kv.bytes // pp, None, 0, 0, False, tuple(reasons))
    if e.weights_bytes // pp + e.reserve_bytes <= usable:
        reasons.append(
            f"the weights fit, so device_map='auto' keeps them all on the GPU; generate() then needs "
            f"{gib(per_gpu):.2f} GiB of {gib(usable):.2f} GiB: CUDA out of memory"
        )
        return _Memory(
            "does_not_fit", 0, per_gpu, per_gpu, e.kv.bytes // pp, None, 0, 0, False, tuple(reasons)
        )
    if rest >= usable:
        reasons.append(
            f"even with every weight in host memory, the KV cache and buffers need {gib(rest):.2f} GiB "
            f"of {gib(usable):.2f} GiB"
        )
        return _Memory(
            "does_not_fit", 0, per_gpu, per_gpu, e.kv.bytes // pp, None, 0, 0, False, tuple(reasons)
        )
    host = (per_gpu - usable) * pp
    reasons.append(
        f"device_map='auto' places {gib(host):.2f} GiB of weights in host memory, copied over PCIe to the "
        "GPU for every forward pass (accelerate offload hooks)"
    )
    return _Memory("offloads", users, usable, per_gpu, e.kv.bytes // pp, None, host, 0, True, tuple(reasons))


def _memory(d: Deployment, sc: Scenario, users: int, usable: int) -> _Memory:
    engine = sc.estimate.plan.engine
    if engine in _POOL_ENGINES:
        return _pool_engine(d, sc, users, usable)
    if engine in _SLOT_ENGINES:
        return _slot_engine(d, sc, users, usable)
    return _batch_engine(d, sc, users, usable)


_REGIME = {
    "fits": "every user at once on the GPU",
    "queues": "{running} of {users} at once, the rest queue",
    "offloads": "{host:.1f} GiB read from host memory every token",
    "does_not_start": "the engine does not start",
    "does_not_fit": "the weights do not fit",
}


def assess(d: Deployment) -> Assessment:
    """Assess `d` (memoised: the fix search, recommend and the per-user rows ask for the same
    deployments again; an assessment is a pure function of its frozen deployment)."""
    try:
        hash(d)
    except TypeError:  # a deployment holding an unhashable value (none of ours do): no memo
        return _assess(d)
    return _assess_memo(d)


# Reuse is within one deployment's fix search and across recommend's options and counts (a few
# thousand assessments); a check of 10,000 deployments must not keep every one alive.
@functools.lru_cache(maxsize=4096)
def _assess_memo(d: Deployment) -> Assessment:
    return _assess(d)


def _assess(d: Deployment) -> Assessment:
    """Assess `d`: run the one estimator and the engine's own figures for one replica, decide what
    the engine does with the users (fits / queues / offloads / does not start / does not fit), and
    time the running batch.

    Speed: step = the decode step of the running batch (core.speed); per user = running / step /
    users (everyone shares the batch); TTFT = one prompt's prefill; wait = when users exceed what
    runs at once and all ask together, the last of them waits (waves - 1) x (TTFT + output x step),
    waves = ceil(users / running).
    """
    validate(d)
    users = d.users_per_replica
    sc = _run(d, users)
    e = sc.estimate
    usable, _ = usable_gpu_bytes(d.gpu)
    mem = _memory(d, sc, users, usable)
    budget = int((1 - d.headroom) * usable)
    spd: Speed | None = None
    srv: Serving | None = None
    other_p2p: Serving | None = None
    per_user = aggregate = ttft = wait = None
    decode_factor, prefill_factor, overhead_s, speed_note = _speed_factors(d, e)
    if mem.running > 0:
        st = stepper(
            e,
            d.gpu,
            gpus_per_replica=d.tp,
            offloaded_bytes=mem.host_weight_bytes,
            offload_over_pcie=mem.over_pcie,
            host_kv_bytes=mem.host_kv_bytes,
            host_bandwidth_gbs=d.host_bandwidth_gbs,
            decode_factor=decode_factor or 1.0,
            prefill_factor=prefill_factor or 1.0,
            host_expert_bytes=host_expert_bytes(sc),
        )
        spd = speed_of(st, mem.running, d.prompt_tokens)
        load = _load(d, e, users, mem.running)
        srv = serve(st, load, overhead_s)
        if d.tp > 1 and e.plan.gpu_p2p is None:
            # Whether the GPUs reach each other peer to peer is not known: the other regime's
            # all-reduces (core.speed.all_reduce_s) bound the ranges too.
            flipped = replace(e, plan=replace(e.plan, gpu_p2p=not default_p2p(d.gpu)))
            other_p2p = serve(replace(st, e=flipped), load, overhead_s)
        per_user = srv.decode_tokens_per_s_per_user
        aggregate = srv.output_tokens_per_s * d.replicas
        ttft = srv.ttft_s
        if mem.running < users:
            wait = srv.queue_s
    reasons = list(mem.reasons)
    if d.replicas > 1:
        reasons.append(f"{d.replicas} replicas, each with its own copy, serve {plural(users, 'user')} each")
    if srv is not None and spd is not None:
        ranges = _speed_ranges(d, e, srv, (decode_factor, prefill_factor, overhead_s, speed_note), other_p2p)
        decode_span = ranges.get("decode_tokens_per_s_per_user")
        first_span = ranges.get("ttft_s")
        reasons.append(
            f"decode {srv.decode_tokens_per_s_per_user:.1f} tokens/s per user ("
            + (f"published runs {decode_span[0]:.1f}-{decode_span[1]:.1f}; " if decode_span else "")
            + f"{srv.running} running, step "
            f"{srv.step_s * 1000:.1f} ms with the prompts chunked in, {spd.bound}-bound); first token after "
            f"{srv.ttft_s:.2f} s"
            + (f" ({first_span[0]:.2f}-{first_span[1]:.2f})" if first_span else "")
            + f" for a {d.prompt_tokens:,}-token prompt; "
            f"{srv.output_tokens_per_s * d.replicas:,.0f} "
            f"output tokens/s in all"
        )
    if other_p2p is not None:
        reasons.append(
            "peer-to-peer between the GPUs unknown: "
            + ("without" if default_p2p(d.gpu) else "with")
            + f" it, decode {other_p2p.decode_tokens_per_s_per_user:.1f} tokens/s per user and the first token "
            f"after {other_p2p.ttft_s:.2f} s (in the ranges; "
            + (
                "the tensor-parallel all-reduces cross host memory"
                if default_p2p(d.gpu)
                else "a P2P driver or NVLink bridge"
            )
            + ")"
        )
    if speed_note and srv is not None:
        reasons.append(speed_note)
    if srv is not None and wait is not None:
        reasons.append(
            f"{users - srv.running} of {users} users wait {wait:.1f} s for a place before each request "
            f"({d.output:,} output tokens per request)"
        )
    host = (mem.host_weight_bytes + mem.host_kv_bytes) / GIB
    regime = _REGIME[mem.verdict].format(running=mem.running * d.replicas, users=d.users, host=host)
    if mem.verdict == "fits" and spd is not None:
        regime = f"all on GPU, {spd.bound}-bound decode"
    a = Assessment(
        deployment=d,
        scenario=sc,
        verdict=mem.verdict,
        users_at_once=mem.running * d.replicas if mem.running else 0,
        per_gpu_bytes=mem.per_gpu_bytes,
        demand_bytes=mem.demand_bytes,
        usable_bytes=usable,
        budget_bytes=budget,
        kv_bytes=mem.kv_bytes,
        kv_pool_bytes=mem.pool_bytes,
        offloaded_bytes=mem.host_weight_bytes + mem.host_kv_bytes,
        speed=spd,
        serving=srv,
        decode_tokens_per_s_per_user=per_user,
        aggregate_tokens_per_s=aggregate,
        ttft_s=ttft,
        wait_s=wait,
        regime=regime,
        reasons=tuple(reasons),
        misses=(),
        other_p2p=other_p2p,
    )
    return replace(a, users_at_once=min(d.users, a.users_at_once), misses=_misses(a))


def _speed_ranges(
    d: Deployment,
    e: Estimate,
    srv: Serving,
    factors: tuple[float | None, float | None, float | None, str],
    other: Serving | None = None,
) -> dict[str, tuple[float, float]]:
    """Where published runs would put the speed figures; a benchmark of this setup (a calibration
    profile's speed terms) pins the regime: no published spread for what it measured. With
    `other` (the load in the other peer-to-peer regime) each range spans both regimes' ranges."""
    decode_factor, prefill_factor, overhead_s, _ = factors
    engine = e.plan.engine
    kind = "decode" if d.users_per_replica == 1 else "load"
    ranges: dict[str, tuple[float, float]] = {}
    if decode_factor is None:
        ranges["decode_tokens_per_s_per_user"] = rate_range(engine, kind, srv.decode_tokens_per_s_per_user)
        ranges["aggregate_tokens_per_s"] = rate_range(engine, kind, srv.output_tokens_per_s * d.replicas)
    # The first token: the engine's part (prefill and overhead) spreads as published TTFTs do; the
    # wait for a place is whole requests' time, so it spreads as the decode under load does.
    own = srv.ttft_s - srv.queue_s
    first = (
        (own, own)
        if prefill_factor is not None or overhead_s is not None
        else time_range(engine, "ttft", own)
    )
    wait = (srv.queue_s, srv.queue_s) if decode_factor is not None else time_range(engine, kind, srv.queue_s)
    if first != (own, own) or wait != (srv.queue_s, srv.queue_s):
        ranges["ttft_s"] = (first[0] + wait[0], first[1] + wait[1])
    if other is not None:
        span = _speed_ranges(d, e, other, factors)
        ranges = {k: (min(lo, span[k][0]), max(hi, span[k][1])) for k, (lo, hi) in ranges.items()}
    return ranges


def _speed_factors(d: Deployment, e: Estimate) -> tuple[float | None, float | None, float | None, str]:
    """A calibration profile's speed terms (bench --save): decode and prompt factors and the
    server's time per request, where they were measured on this GPU, engine, weight format and
    tensor-parallel size (None where it has none or was measured elsewhere), and the sentence that
    says so."""
    m = d.settings.measured
    terms = (m.decode_speed_factor, m.prefill_speed_factor, m.request_overhead_s) if m else (None, None, None)
    if m is None or all(t is None for t in terms):
        return None, None, None, ""
    here = (e.plan.engine, d.gpu.id, e.weight_format.name, d.tp)
    there = (m.engine, m.gpu, m.weights_format, m.tp)
    if here != there:
        return (
            None,
            None,
            None,
            (
                f"speed terms of {m.source} were measured with {m.engine} on {m.gpu}, {m.weights_format}, TP {m.tp}: "
                "not used here"
            ),
        )
    decode, prefill, overhead = terms
    said = [f"{name} x {f:.3g}" for name, f in (("decode", decode), ("prompt", prefill)) if f is not None]
    if overhead is not None:
        said.append(f"{overhead * 1000:.1f} ms per request before the first token")
    return decode, prefill, overhead, f"speed calibrated from {m.source}: " + ", ".join(said)


def _load(d: Deployment, e: Estimate, users: int, running: int) -> Load:
    """The deployment's users as a closed loop on one replica. transformers' generate() takes the
    whole batch at once: every prompt in one forward, then the batch decodes together."""
    if d.engine.partition("@")[0] == "transformers":
        return Load(running, d.prompt_tokens, d.output, running, running * d.prompt_tokens, "burst")
    return Load(
        users,
        d.prompt_tokens,
        d.output,
        running,
        e.plan.prefill_tokens,
        d.arrival,
        d.arrival_rate_per_s,
        separate_prefill=e.plan.prefill_apart,
    )


def _misses(a: Assessment) -> tuple[Miss, ...]:
    """What keeps the deployment from passing: its verdict, then headroom, then the goals."""
    d, e = a.deployment, a.scenario.estimate
    engine = e.plan.engine
    out: list[Miss] = []
    if a.verdict == "does_not_fit":
        out.append(Miss("fit", a.demand_bytes, a.usable_bytes, "bytes", a.reasons[0]))
    elif a.verdict == "does_not_start":
        out.append(Miss("start", a.per_gpu_bytes, a.usable_bytes, "bytes", a.reasons[0]))
    elif a.verdict == "queues":
        out.append(
            Miss(
                "queue",
                a.users_at_once,
                d.users,
                "users",
                f"{engine} runs {a.users_at_once} of {d.users} users at once; the rest wait"
                + (f" up to {a.wait_s:.1f} s" if a.wait_s else ""),
            )
        )
    elif a.verdict == "offloads":
        out.append(
            Miss(
                "offload",
                a.offloaded_bytes,
                0,
                "bytes",
                f"{gib(a.offloaded_bytes):.2f} GiB of the model run from host memory (the speed cliff)",
            )
        )
    if a.verdict in ("fits", "queues") and a.demand_bytes > a.budget_bytes:
        out.append(
            Miss(
                "memory",
                a.demand_bytes,
                a.budget_bytes,
                "bytes",
                f"memory: needs {gib(a.demand_bytes):.2f} GiB per GPU, the budget is {gib(a.budget_bytes):.2f} GiB "
                f"({1 - d.headroom:.0%} of {gib(a.usable_bytes):.2f} GiB): "
                f"{gib(a.demand_bytes - a.budget_bytes):.2f} GiB over",
            )
        )
    speed_now = a.decode_tokens_per_s_per_user or 0.0
    if d.min_tokens_per_s > 0 and speed_now < d.min_tokens_per_s:
        out.append(
            Miss(
                "speed",
                speed_now,
                d.min_tokens_per_s,
                "tokens/s",
                f"speed: {speed_now:.1f} tokens/s per user, the goal is {d.min_tokens_per_s:g}",
            )
        )
    if d.max_ttft_s is not None:
        first = (a.ttft_s or math.inf) if a.users_at_once else math.inf
        if first > d.max_ttft_s:
            out.append(
                Miss(
                    "ttft",
                    first,
                    d.max_ttft_s,
                    "s",
                    f"first token: {first:.2f} s for a {d.prompt_tokens:,}-token prompt, the goal is "
                    f"{d.max_ttft_s:g} s",
                )
            )
    return tuple(out)


def max_gpu_util(d: Deployment) -> float:
    """The highest gpu_memory_utilization whose process still leaves the CUDA context and 1 GiB free
    on the card, in hundredths (the 1 GiB is llama.cpp's --fit default margin, common/fit.cpp)."""
    usable, _ = usable_gpu_bytes(d.gpu)
    share = (usable - CUDA_CONTEXT_BYTES - GIB) / cuda_total_bytes(d.gpu)
    return max(0.05, math.floor(share * 100) / 100)


@dataclass(frozen=True, slots=True)
class Request:
    """What to serve, before a GPU is chosen: the model as served, the load, headroom and goals.

    `on()` places it on GPUs as a Deployment; recommend tries every card, check the planned one.
    """

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
    max_ttft_s: float | None = None
    workers: int = 1
    output_tokens: int | None = None
    host_bandwidth_gbs: float = HOST_MEMORY_BANDWIDTH_GBS
    settings: EngineSettings = field(default_factory=EngineSettings)
    stored: WeightFormat | None = None
    allow_long_ctx: bool = False

    def on(
        self, gpu: GpuSpec, count: int = 1, layout: LayoutKind = "single", users: int | None = None
    ) -> Deployment:
        return Deployment(
            model=self.model,
            gpu=gpu,
            users=self.users if users is None else users,
            ctx_tokens=self.ctx_tokens,
            count=count,
            layout=layout,
            engine=self.engine,
            bits=None if self.quant else self.bits,
            quant=self.quant,
            kv_dtype=self.kv_dtype,
            fill=self.fill,
            shared_prefix_tokens=self.shared_prefix_tokens,
            workers=self.workers,
            output_tokens=self.output_tokens,
            settings=replace(self.settings, prompt_tokens=self.prompt_tokens or self.settings.prompt_tokens),
            stored=self.stored,
            allow_long_ctx=self.allow_long_ctx,
            host_bandwidth_gbs=self.host_bandwidth_gbs,
            headroom=self.headroom,
            min_tokens_per_s=self.min_tokens_per_s,
            max_ttft_s=self.max_ttft_s,
        )


# The default columns of `estimate` without --gpu: one named card per capacity tier, each assessed
# like any other deployment (the consumer 24 GB card, the 48 GB workstation/datacenter card and the
# 80 GB HBM card of the brief's tiers).
REFERENCE_GPUS: tuple[tuple[str, str], ...] = (
    ("24 GB", "rtx-4090"),
    ("48 GB", "l40s"),
    ("80 GB", "h100-sxm"),
)


def by_users(d: Deployment, counts: tuple[int, ...] | list[int]) -> tuple[Assessment, ...]:
    """The same deployment assessed at each user count (the rows of estimate's concurrency table)."""
    return tuple(assess(replace(d, users=u)) for u in counts)


@dataclass(frozen=True, slots=True)
class EstimateReport:
    """What `estimate` shows: the memory arithmetic and the assessments made of it.

    On a GPU: `assessment` at the asked load, one column (that card) with one assessment per row of
    the concurrency table. Without one: the estimate without a device, and one column per tier's
    reference card (REFERENCE_GPUS); no single assessment.
    """

    estimate: Estimate
    view: EngineView | None
    assessment: Assessment | None
    columns: tuple[str, ...]
    rows: tuple[tuple[Assessment, ...], ...]  # per row of estimate.by_users, one per column


def report_on_gpu(d: Deployment) -> EstimateReport:
    """`estimate --gpu`: the deployment's assessment and one per row of its concurrency table."""
    a = assess(d)
    e = a.scenario.estimate
    rows = by_users(d, [row.users for row in e.by_users])
    return EstimateReport(e, a.scenario.view, a, (d.gpu.id,), tuple((r,) for r in rows))


def report_on_tiers(d: Deployment, cards: tuple[tuple[str, GpuSpec], ...]) -> EstimateReport:
    """`estimate` without --gpu: the device-free estimate, each row assessed on each tier's card."""
    validate(d)
    e = _run(d, d.users, on_gpu=False).estimate
    counts = [row.users for row in e.by_users]
    per_card = [by_users(replace(d, gpu=card), counts) for _, card in cards]
    return EstimateReport(e, None, None, tuple(card.id for _, card in cards),
                          tuple(zip(*per_card, strict=True)))  # fmt: skip
