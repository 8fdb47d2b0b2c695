"""One fix search over the assessment: the levers that make a failing deployment pass, smallest first."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from vramcalc.core.assess import Assessment, Deployment, LayoutKind, assess, max_gpu_util
from vramcalc.core.engines import ENGINE_NAMES, kv_dtype_unsupported, resolve_engine
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.formats import format_for_bits, kv_bytes
from vramcalc.errors import VramcalcError
from vramcalc.units import plural

FieldValue = str | int | float
Fields = tuple[tuple[str, FieldValue], ...]
PlanValue = str | int | float | bool | None | dict[str, "PlanValue"]

# Most replicas a "more replicas" fix proposes (a plan needing more is better served by bigger GPUs).
MAX_REPLICAS = 64
GPU_COUNTS = (2, 4, 8)
# Shortest context a "cap the context" fix proposes, and its step (tokens).
MIN_CTX_TOKENS = 512
CTX_STEP_TOKENS = 256

# How much each lever changes, for ranking (smaller first): an engine setting costs nothing but a
# restart; a smaller KV or weight format costs some quality; another engine costs a migration;
# more GPUs cost money; a shorter context or fewer users no longer serve what was asked.
COST = {
    "settings.max_num_seqs": 1,
    "settings.gpu_util": 1,
    "workers": 2,
    "kv_dtype": 2,
    "engine": 3,
    "quant": 4,
    "ctx": 5,
    "gpu_count": 6,
    "users": 20,  # serves fewer than asked: always after the levers that serve them all
}

# Weight widths by format, to carry a deployment's width to another engine's format family.
_WIDTH = {
    "bf16": 16, "fp16": 16, "F16": 16, "fp8": 8, "gptq-int8": 8, "Q8_0": 8, "Q6_K": 6, "Q5_K_M": 5,
    "awq-int4": 4, "gptq-int4": 4, "nf4": 4, "mxfp4-moe": 4, "Q4_K_M": 4, "Q4_0": 4, "IQ4_XS": 4,
    "Q3_K_M": 3, "MXFP4_MOE": 4,
}  # fmt: skip
_LADDER = {
    False: ("bf16", "fp8", "awq-int4"),
    True: ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M"),
}


@dataclass(frozen=True, slots=True)
class Fix:
    """A change to the deployment (as plan fields) that makes it pass, verified by assess()."""

    fields: Fields
    assessment: Assessment
    plan_fields: dict[str, PlanValue]  # the plan keys to set (None: remove), to apply it mechanically

    @property
    def change(self) -> str:
        """The levers in words; another engine names the format it serves the weights in."""
        fmt = self.assessment.scenario.estimate.weight_format.name
        quant_given = any(k == "quant" for k, _ in self.fields)
        return ", ".join(
            f"{k}: {v}" + (f" ({fmt})" if k == "engine" and not quant_given else "") for k, v in self.fields
        )

    @property
    def cost(self) -> int:
        return sum(COST[k] for k, _ in self.fields if k in COST)

    @property
    def detail(self) -> str:
        a = self.assessment
        speed = (
            f", {a.decode_tokens_per_s_per_user:.1f} tokens/s per user"
            if a.decode_tokens_per_s_per_user is not None
            else ""
        )
        return f"{a.verdict}: {a.users_at_once} of {plural(a.users, 'user')} at once{speed}"


def apply(d: Deployment, fields: Fields) -> Deployment:
    """The deployment with plan fields changed (engine first: it resets engine-specific choices)."""
    out = d
    for key, value in fields:
        if key == "engine":
            out = _switch_engine(out, str(value))
        elif key == "users":
            out = replace(out, users=int(value))
        elif key == "ctx":
            out = replace(out, ctx_tokens=int(value), output_tokens=_output_within(out, int(value)))
        elif key == "kv_dtype":
            out = replace(out, kv_dtype=str(value))
        elif key == "quant":
            out = replace(out, quant=str(value), bits=None, stored=None)
        elif key == "workers":
            out = replace(out, workers=int(value))
        elif key == "gpu_count":
            out = replace(out, count=int(value))
        elif key == "layout":
            layout: LayoutKind = value  # type: ignore[assignment]
            out = replace(out, layout=layout)
        elif key == "settings.max_num_seqs":
            out = replace(out, settings=replace(out.settings, max_num_seqs=int(value)))
        elif key == "settings.gpu_util":
            out = replace(out, settings=replace(out.settings, gpu_util=float(value)))
        else:
            raise KeyError(key)
    return out


def plan_fields(before: Deployment, after: Deployment) -> dict[str, PlanValue]:
    """The plan-file keys that turn `before` into `after` (None removes a key; settings whole)."""
    out: dict[str, PlanValue] = {}
    pairs: tuple[tuple[str, object, object], ...] = (
        ("engine", before.engine, after.engine),
        ("quant", before.quant, after.quant),
        ("bits", before.bits, after.bits),
        ("kv_dtype", before.kv_dtype, after.kv_dtype),
        ("ctx", before.ctx_tokens, after.ctx_tokens),
        ("output_tokens", before.output_tokens, after.output_tokens),
        ("users", before.users, after.users),
        ("workers", before.workers, after.workers),
        ("gpu_count", before.count, after.count),
        ("layout", before.layout, after.layout),
    )
    for key, old, new in pairs:
        if old != new:
            out[key] = new  # type: ignore[assignment]
    settings = {k: v for k, v in after.settings.given().items() if k != "tp"}
    if settings != {k: v for k, v in before.settings.given().items() if k != "tp"}:
        out["settings"] = settings  # type: ignore[assignment]
    return out


def _fix(d: Deployment, fields: Fields, a: Assessment) -> Fix:
    return Fix(fields, a, plan_fields(d, a.deployment))


def _output_within(d: Deployment, ctx: int) -> int | None:
    if d.output_tokens is None:
        return None
    return min(d.output_tokens, max(1, ctx // 2))


def _switch_engine(d: Deployment, engine: str) -> Deployment:
    """The same model and width on another engine: its format family, its default settings."""
    profile, _ = resolve_engine(engine)
    current = d.quant or _format_name(d)
    bits = _WIDTH.get(current, 16)
    if profile.gguf and bits not in (3, 4, 5, 6, 8, 16):
        bits = 4
    if not profile.gguf and bits not in (4, 8, 16):
        bits = 4 if bits < 8 else 8
    fmt = format_for_bits(bits, profile.gguf, d.model.native_weight_format).name
    return replace(
        d, engine=engine, quant=fmt, bits=None, stored=None, kv_dtype="auto", settings=EngineSettings()
    )


def _format_name(d: Deployment) -> str:
    a = assess_or_none(d)
    return a.scenario.estimate.weight_format.name if a else "bf16"


def assess_or_none(d: Deployment) -> Assessment | None:
    """assess(d), or None for a change the engine cannot take (a setting it lacks, a bad layout)."""
    try:
        return assess(d)
    except VramcalcError:
        return None


def _passes(d: Deployment) -> Assessment | None:
    a = assess_or_none(d)
    return a if a is not None and a.passes else None


def largest(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """Largest n in [low, high] with ok(n), for ok monotone (true up to a point); None if none."""
    if high < low or not ok(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    return low


def most_users(d: Deployment) -> int:
    """The most users (up to the planned number) the deployment passes for as planned; 0 if none."""
    return largest(lambda u: _passes(replace(d, users=u)) is not None, 1, d.users) or 0


# --- levers that keep the ask (users, context) and the hardware --------------------------------


def _kv_levers(d: Deployment, a: Assessment) -> Iterator[Fields]:
    profile, _ = resolve_engine(d.engine)
    now = kv_bytes(a.scenario.estimate.kv_dtype, 1024)
    for dtype in sorted(profile.kv_dtypes, key=lambda t: -kv_bytes(t, 1024)):
        if kv_bytes(dtype, 1024) < now and kv_dtype_unsupported(profile, dtype, d.gpu) is None:
            yield (("kv_dtype", dtype),)


def _seq_levers(d: Deployment, a: Assessment) -> Iterator[Fields]:
    profile, _ = resolve_engine(d.engine)
    cap = a.scenario.estimate.plan.settings.get("max_num_seqs")
    if (
        "max_num_seqs" in profile.settings
        and not profile.gguf
        and isinstance(cap, int)
        and cap > d.users_per_replica
    ):
        yield (("settings.max_num_seqs", d.users_per_replica),)


def _util_levers(d: Deployment, a: Assessment) -> Iterator[Fields]:
    profile, _ = resolve_engine(d.engine)
    if "gpu_util" not in profile.settings:
        return
    s = a.scenario.estimate.plan.settings
    now = float(
        s.get("gpu_memory_utilization", s.get("mem_fraction_static", s.get("cuda_memory_fraction", 1)))
    )
    top = max_gpu_util(d)
    if top > now:
        yield (("settings.gpu_util", top),)


def _worker_levers(d: Deployment, a: Assessment) -> Iterator[Fields]:
    for n in range(d.workers - 1, 0, -1):
        yield (("workers", n),)


def _quant_levers(d: Deployment, a: Assessment) -> Iterator[Fields]:
    e = a.scenario.estimate
    ladder = _LADDER[e.weight_format.is_gguf]
    name = e.weight_format.name
    if name in ladder and name != ladder[-1]:
        yield (("quant", ladder[ladder.index(name) + 1]),)


def _engine_levers(d: Deployment, a: Assessment) -> Iterator[Fields]:
    if d.stored is not None:
        return  # a concrete file is sized as stored; another engine would need another file
    for name in ENGINE_NAMES:
        if name not in (d.engine.split("@")[0], "transformers", "tgi"):
            yield (("engine", name),)


# Applied in this order inside a combination (the engine first: the others depend on it).
_KEEP_ASK: tuple[Callable[[Deployment, Assessment], Iterator[Fields]], ...] = (
    _engine_levers,
    _quant_levers,
    _kv_levers,
    _seq_levers,
    _util_levers,
    _worker_levers,
)


def _combos(d: Deployment, kinds: tuple[int, ...]) -> Iterator[Fields]:
    """Every combination of one value per lever kind, each kind's values read off the deployment
    as changed by the kinds before it."""

    def walk(base: Deployment, done: Fields, rest: tuple[int, ...]) -> Iterator[Fields]:
        if not rest:
            yield done
            return
        a = assess_or_none(base)
        if a is None:
            return
        for fields in _KEEP_ASK[rest[0]](base, a):
            yield from walk(apply(base, fields), done + fields, rest[1:])

    yield from walk(d, (), kinds)


# --- levers that change the ask or the hardware (single only) ----------------------------------


def _users_fix(d: Deployment) -> Fix | None:
    most = most_users(d)
    a = _passes(replace(d, users=most)) if 0 < most < d.users else None
    return _fix(d, (("users", most),), a) if a else None


def _ctx_fix(d: Deployment) -> Fix | None:
    def ok(steps: int) -> bool:
        return _passes(apply(d, (("ctx", steps * CTX_STEP_TOKENS),))) is not None

    steps = largest(ok, MIN_CTX_TOKENS // CTX_STEP_TOKENS, (d.ctx_tokens - 1) // CTX_STEP_TOKENS)
    if steps is None:
        return None
    fields: Fields = (("ctx", steps * CTX_STEP_TOKENS),)
    a = _passes(apply(d, fields))
    return _fix(d, fields, a) if a else None


def _gpu_fixes(d: Deployment, a: Assessment, max_gpus: int = MAX_REPLICAS) -> list[Fix]:
    """The fewest GPUs of the same card that pass, per layout: replicas (starting from as many as
    the users need at one replica's capacity), tensor parallel, pipeline parallel."""
    out: list[Fix] = []
    profile, _ = resolve_engine(d.engine)
    per_replica = most_users(replace(d, count=1, layout="single", users=d.users_per_replica))
    if per_replica:
        first = max(d.replicas + 1, math.ceil(d.users / per_replica))
        for n in range(first, min(max_gpus, MAX_REPLICAS, first + 8) + 1):
            fields: Fields = (("gpu_count", n),) + (
                (("layout", "replicas"),) if d.layout != "replicas" else ()
            )
            ok = _passes(apply(d, fields))
            if ok:
                out.append(_fix(d, fields, ok))
                break
    for layout in ("tensor-parallel", "pipeline-parallel"):
        if layout == "tensor-parallel" and "tp" not in profile.settings:
            continue
        for n in GPU_COUNTS:
            if (
                n <= d.count
                or n > max_gpus
                or (layout == "tensor-parallel" and d.model.num_attention_heads % n)
            ):
                continue
            fields = (("gpu_count", n),) + ((("layout", layout),) if d.layout != layout else ())
            ok = _passes(apply(d, fields))
            if ok:
                out.append(_fix(d, fields, ok))
                break
    return out


def search(
    d: Deployment, a: Assessment | None = None, *, limit: int = 8, max_gpus: int = MAX_REPLICAS
) -> tuple[Fix, ...]:
    """Fixes for a deployment that does not pass, each verified with assess(), smallest change first.

    Single levers first: the engine settings (max_num_seqs, gpu_util), fewer workers, a smaller KV
    dtype, another engine on the same GPU, the next smaller weight format, a context cap, more GPUs,
    fewer users. When no single lever that keeps the users, the context and the GPUs passes, the
    smallest combinations of two, then three, of those levers are searched. No fix uses more than
    `max_gpus` GPUs.
    """
    a = a or assess(d)
    if a.passes:
        return ()
    found: dict[Fields, Fix] = {}

    def consider(fields: Fields) -> None:
        if fields in found:
            return
        try:
            ok = _passes(apply(d, fields))
        except (VramcalcError, KeyError):
            ok = None
        if ok:
            found[fields] = _fix(d, fields, ok)

    for levers in _KEEP_ASK:
        for fields in levers(d, a):
            consider(fields)
    kept = bool(found)
    for size in (2, 3):
        if kept:
            break
        for kinds in itertools.combinations(range(len(_KEEP_ASK)), size):
            for fields in _combos(d, kinds):
                consider(fields)
        kept = bool(found)
    others = [f for f in (_ctx_fix(d), _users_fix(d), *_gpu_fixes(d, a, max_gpus)) if f is not None]
    fixes = [*found.values(), *others]
    fixes.sort(key=lambda f: (f.cost, len(f.fields), -(f.assessment.decode_tokens_per_s_per_user or 0)))
    return tuple(fixes[:limit])
