"""Check planned deployments: does each fit with its headroom and meet its goals, by how much does it
miss, and what is the smallest change of each kind that makes it pass."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from vramcalc.core.recommend import (
    GPU_COUNTS,
    LayoutKind,
    Option,
    Request,
    context_cap,
    evaluate,
    layouts,
    max_users,
    per_gpu_total,
    quantized_kv,
    run_layout,
    smaller_format,
)
from vramcalc.core.scenario import Scenario
from vramcalc.core.speed import Speed, speed
from vramcalc.errors import PlanError, VramcalcError
from vramcalc.specs import GpuSpec

# Most replicas a "more replicas" fix proposes (a plan needing more is better served by bigger GPUs).
MAX_REPLICAS = 64

MissKind = Literal["memory", "kv-pool", "start", "speed", "ttft"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One deployment from a plan file, resolved: where it was written, and what to evaluate."""

    name: str
    source: str  # the plan file, as given (for reports and annotations)
    line: int | None
    request: Request  # model, engine, format, workload, headroom and goals
    gpu: GpuSpec
    count: int
    layout: LayoutKind

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
        return math.ceil(self.request.users / self.replicas)


@dataclass(frozen=True, slots=True)
class Miss:
    """A limit the deployment breaks: `value` against `limit` in `unit` (bytes, tokens/s, s)."""

    kind: MissKind
    value: float
    limit: float
    unit: str

    @property
    def by(self) -> float:
        """How far past the limit (always positive)."""
        return abs(self.value - self.limit)

    @property
    def share(self) -> float | None:
        """`by` as a share of the limit (None when the limit is not positive)."""
        return self.by / self.limit if self.limit > 0 else None


@dataclass(frozen=True, slots=True)
class Fix:
    """A change to the plan that makes the deployment pass, as plan fields, and what it then does."""

    fields: tuple[tuple[str, str | int], ...]  # e.g. (("users", 2),) or (("gpu_count", 2), ("layout", ...))
    max_users: int
    detail: str

    @property
    def change(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.fields)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict for one planned deployment, with the figures behind it."""

    planned: Planned
    option: Option  # evaluate(): the most users this deployment serves with its headroom
    scenario: Scenario  # one replica at its share of the users
    per_gpu_bytes: int
    budget_bytes: int  # (1 - headroom) x usable memory of one GPU
    usable_bytes: int
    kv_bytes: int  # on the busiest GPU
    kv_pool_bytes: int | None  # what the engine's KV pool holds on that GPU (vLLM, SGLang, TGI)
    speed: Speed | None  # per replica at its share of the users
    misses: tuple[Miss, ...]
    most_users: int | None  # when it fails: the most users that pass as planned (0: none)
    fixes: tuple[Fix, ...]

    @property
    def passed(self) -> bool:
        return not self.misses


def budget_bytes(usable: int, headroom: float) -> int:
    """What one GPU may use: (1 - headroom) x usable bytes, rounded down (recommend.fits_budget's test
    `total <= (1 - headroom) x usable` on whole bytes)."""
    return int((1 - headroom) * usable)


def _pool(sc: Scenario) -> int | None:
    figures = sc.view.figures if sc.view else ()
    return next((int(f.value) for f in figures if f.key == "kv_pool_bytes"), None)


def misses(p: Planned, sc: Scenario, spd: Speed | None, usable: int) -> tuple[Miss, ...]:
    """Memory over the headroom budget, a KV cache the engine's pool cannot hold (or an engine that
    does not start), decode slower than the goal, first token later than the goal."""
    req = p.request
    out: list[Miss] = []
    budget = budget_bytes(usable, req.headroom)
    per_gpu = per_gpu_total(sc, p.pp)
    if per_gpu > budget:
        out.append(Miss("memory", per_gpu, budget, "bytes"))
    kv = sc.estimate.kv.bytes // p.pp
    pool = _pool(sc)
    if sc.view is not None and not sc.view.serves(kv):
        if pool is not None:
            out.append(Miss("kv-pool", kv, pool, "bytes"))
        elif per_gpu <= budget:  # an engine that will not start on a card we already count as full
            out.append(Miss("start", per_gpu, usable, "bytes"))
    if req.min_tokens_per_s > 0 and (spd is None or spd.per_user_tokens_per_s < req.min_tokens_per_s):
        out.append(Miss("speed", spd.per_user_tokens_per_s if spd else 0.0, req.min_tokens_per_s, "tokens/s"))
    if (
        req.max_ttft_s is not None
        and spd is not None
        and spd.ttft_s is not None
        and spd.ttft_s > req.max_ttft_s
    ):
        out.append(Miss("ttft", spd.ttft_s, req.max_ttft_s, "s"))
    return tuple(out)


def _evaluate(p: Planned, req: Request, count: int | None = None, layout: LayoutKind | None = None) -> Option:
    return evaluate(req, p.gpu, count or p.count, layout or p.layout)


def most_users(p: Planned, option: Option) -> int:
    """The most users (fewer than planned) the deployment serves as planned: memory, pool and goals;
    0 when even one user does not pass."""
    req = p.request

    def ok(users: int) -> bool:
        return users < req.users and _evaluate(p, replace(req, users=users)).serves

    return max_users(ok, min(req.users - 1, max(1, option.max_users)))


def _more_gpus(p: Planned, option: Option) -> Fix | None:
    """The fewest GPUs (same card) that serve the users: more replicas (starting from as many as the
    users need at one replica's capacity), or the next tensor/pipeline-parallel size; for one GPU, the
    first multi-GPU layout that works."""
    req = p.request
    tries: list[tuple[int, LayoutKind]]
    if p.layout == "single":
        tries = layouts(req.model, req.engine, max(GPU_COUNTS))[1:]
    elif p.layout == "replicas":
        per_replica = option.max_users // p.count
        if per_replica == 0:
            return None  # one replica serves nobody: more of them will not either
        first = max(p.count + 1, math.ceil(req.users / per_replica))
        tries = [(n, "replicas") for n in range(first, MAX_REPLICAS + 1)]
    else:
        tries = [(n, p.layout) for n in GPU_COUNTS if n > p.count]
        if p.layout == "tensor-parallel":
            tries = [(n, "tensor-parallel") for n, _ in tries if req.model.num_attention_heads % n == 0]
    for count, layout in tries:
        try:
            alt = _evaluate(p, req, count, layout)
        except VramcalcError:
            continue  # e.g. a layout this engine cannot take
        if alt.serves:
            fields: tuple[tuple[str, str | int], ...] = (("gpu_count", count),)
            if layout != p.layout:
                fields += (("layout", layout),)
            return Fix(fields, alt.max_users, f"{count} x {p.gpu.id} serve {alt.max_users} users")
    return None


def fixes(p: Planned, option: Option, most: int) -> tuple[Fix, ...]:
    """The smallest change of each kind that makes the deployment pass, each verified with the same
    evaluation: the most users, the longest context, an 8-bit KV cache, the fewest more GPUs, the next
    smaller weight format."""
    req = p.request
    out: list[Fix] = []
    candidates: list[Callable[[], Fix | None]] = [
        lambda: Fix((("users", most),), most, "the most users that pass as planned") if most else None
    ]

    def ctx() -> Fix | None:
        cap = context_cap(req, option)
        return Fix((("ctx", cap),), req.users, f"{req.users} users at {cap:,} tokens") if cap else None

    def kv() -> Fix | None:
        alt_kv = quantized_kv(req)
        if alt_kv is None:
            return None
        alt = _evaluate(p, replace(req, kv_dtype=alt_kv))
        return (
            Fix((("kv_dtype", alt_kv),), alt.max_users, f"serves {alt.max_users} users")
            if alt.serves
            else None
        )

    def weights() -> Fix | None:
        smaller = smaller_format(req, option, option.scenario.engine.gguf)
        if smaller is None or not smaller[1].serves:
            return None
        instead = f" (instead of bits: {req.bits})" if req.bits is not None else ""
        return Fix(
            (("quant", smaller[0]),), smaller[1].max_users, f"serves {smaller[1].max_users} users{instead}"
        )

    candidates += [ctx, kv, lambda: _more_gpus(p, option), weights]
    for make in candidates:
        try:
            fix = make()
        except VramcalcError:
            fix = None  # a change the engine cannot take is no fix
        if fix is not None:
            out.append(fix)
    return tuple(out)


def check(p: Planned) -> CheckResult:
    """Evaluate one deployment with the estimator `estimate` and `recommend` use."""
    option = evaluate(p.request, p.gpu, p.count, p.layout)
    users = p.users_per_replica
    sc = option.scenario
    if sc.estimate.workload.users != users:
        sc = run_layout(p.request, p.gpu, users, p.tp)
    spd = speed(sc.estimate, p.gpu, users, gpus_per_replica=p.tp)
    found = misses(p, sc, spd, option.usable_bytes)
    most = most_users(p, option) if found else None
    return CheckResult(
        planned=p,
        option=option,
        scenario=sc,
        per_gpu_bytes=per_gpu_total(sc, p.pp),
        budget_bytes=budget_bytes(option.usable_bytes, p.request.headroom),
        usable_bytes=option.usable_bytes,
        kv_bytes=sc.estimate.kv.bytes // p.pp,
        kv_pool_bytes=_pool(sc),
        speed=spd,
        misses=found,
        most_users=most,
        fixes=fixes(p, option, most) if most is not None else (),
    )


def check_all(planned: Iterable[Planned]) -> list[CheckResult]:
    """Check every deployment; a deployment the estimator refuses (a setting the engine lacks, a
    context beyond the model) is bad input: all such problems are raised together, one line each."""
    results: list[CheckResult] = []
    errors: list[str] = []
    for p in planned:
        try:
            results.append(check(p))
        except VramcalcError as exc:
            errors.append(f"{p.source}:{p.line or 1}: {p.name}: {exc}")
    if errors:
        raise PlanError(errors)
    return results
