"""The one shape of an Assessment in every output: a JSON object and a few lines of text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramcalc.units import gib, plural

if TYPE_CHECKING:
    from vramcalc.core.assess import Assessment, Miss


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def miss_dict(m: Miss) -> dict[str, Any]:
    whole = m.unit in ("bytes", "users")
    return {
        "kind": m.kind,
        "value": int(m.value) if whole else round(m.value, 4),
        "limit": int(m.limit) if whole else round(m.limit, 4),
        "unit": m.unit,
        "by": int(m.by) if whole else round(m.by, 4),
        "share": _round(m.share, 4),
        "text": m.text,
    }


def assessment_dict(a: Assessment) -> dict[str, Any]:
    """The `assessment` object: the same keys and values wherever the deployment appears."""
    d = a.deployment
    return {
        "verdict": a.verdict,
        "passes": a.passes,
        "users": a.users,
        "users_at_once": a.users_at_once,
        "per_gpu_bytes": a.per_gpu_bytes,
        "usable_bytes": a.usable_bytes,
        "headroom_bytes": a.headroom_bytes,
        "demand_bytes": a.demand_bytes,
        "budget_bytes": a.budget_bytes,
        "kv_bytes": a.kv_bytes,
        "kv_pool_bytes": a.kv_pool_bytes,
        "offloaded_bytes": a.offloaded_bytes,
        "decode_tokens_per_s_per_user": _round(a.decode_tokens_per_s_per_user, 2),
        "aggregate_tokens_per_s": _round(a.aggregate_tokens_per_s, 1),
        "ttft_s": _round(a.ttft_s, 3),
        "wait_s": _round(a.wait_s, 2),
        # where published benchmarks would put the speed figures (core.speed.SPEED_SPREAD)
        "speed_ranges": {
            key: [_round(low, 3 if key == "ttft_s" else 2), _round(high, 3 if key == "ttft_s" else 2)]
            for key, (low, high) in a.speed_ranges.items()
        },
        "serving": serving_dict(a),
        "prompt_tokens": d.prompt_tokens,
        "output_tokens": d.output,
        "regime": a.regime,
        "reasons": list(a.reasons),
        "misses": [miss_dict(m) for m in a.misses],
    }


def serving_dict(a: Assessment) -> dict[str, Any] | None:
    """What a serving benchmark would print for one replica at this load (core.serving)."""
    srv = a.serving
    if srv is None:
        return None
    return {
        "running": srv.running,
        "median_tpot_s": _round(srv.tpot_s, 5),
        "median_ttft_s": _round(srv.ttft_s, 4),
        "queue_s": _round(srv.queue_s, 3),
        "median_e2e_s": _round(srv.e2e_s, 3),
        "request_per_s": _round(srv.request_per_s, 3),
        "output_tokens_per_s": _round(srv.output_tokens_per_s, 1),
    }


VERDICT_WORDS = {
    "fits": "Fits",
    "queues": "Queues",
    "offloads": "Offloads",
    "does_not_start": "Does NOT start",
    "does_not_fit": "Does NOT fit",
}


def headline(a: Assessment) -> str:
    """One sentence: the verdict on the GPUs, memory on the busiest GPU, who runs at once."""
    d = a.deployment
    where = d.gpu.id if d.count == 1 else f"{d.count} x {d.gpu.id} ({d.layout})"
    used = f"{gib(a.per_gpu_bytes):.2f} of {gib(a.usable_bytes):.2f} GiB per GPU"
    if a.verdict == "fits":
        return f"Fits {where}: {used} ({gib(a.headroom_bytes):.2f} GiB free); every user at once."
    if a.verdict == "queues":
        return f"Queues on {where}: {a.users_at_once} of {plural(a.users, 'user')} at once, the rest wait; {used}."
    if a.verdict == "offloads":
        return (
            f"Offloads on {where}: {gib(a.offloaded_bytes):.2f} GiB of the model in host memory, read every "
            f"token; {used}."
        )
    return f"{VERDICT_WORDS[a.verdict]} on {where}: {a.reasons[0]}."


_MISS_WORDS = {"memory": "over headroom", "speed": "too slow", "ttft": "slow first token"}


def verdict_word(a: Assessment) -> str:
    """The verdict as a table cell: 'fits', 'queues', 'offloads', 'no start', 'no'; a deployment
    that fits but misses its headroom or a goal says which ('fits, too slow')."""
    if a.verdict == "fits" and a.misses:
        return "fits, " + _MISS_WORDS.get(a.misses[0].kind, a.misses[0].kind)
    return {"does_not_start": "no start", "does_not_fit": "no"}.get(a.verdict, a.verdict)
