"""Show a Recommendation for `recommend`: JSON, Markdown or a rich table of ranked options per tier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramcalc.core.estimate import SCHEMA_VERSION
from vramcalc.render.assessment import assessment_dict, verdict_word
from vramcalc.render.common import Fit

if TYPE_CHECKING:
    from rich.console import RenderableType

    from vramcalc.core.fixes import Fix
    from vramcalc.core.recommend import Option, Recommendation


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _option_dict(o: Option | None) -> dict[str, Any] | None:
    if o is None:
        return None
    a = o.assessment
    return {
        "tier": o.tier,
        "gpu": o.gpu.id,
        "count": o.count,
        "layout": o.layout,
        "changes": dict(o.changes),
        "max_users": o.max_users,
        "fits": o.serves,
        "verdict": a.verdict,
        "per_user_tokens_per_s": _round(a.decode_tokens_per_s_per_user, 2),
        "aggregate_tokens_per_s": _round(a.aggregate_tokens_per_s, 1),
        "ttft_s": _round(a.ttft_s, 3),
        "per_gpu_total_bytes": a.per_gpu_bytes,
        "usable_bytes": a.usable_bytes,
        "price_usd": o.price_usd,
        "cost_usd": o.cost_usd,
        "usd_per_user": _round(o.usd_per_user, 2),
        "assessment": assessment_dict(a),
    }


def _fix_dict(m: Fix) -> dict[str, Any]:
    return {
        "change": m.change,
        "fields": m.plan_fields,
        "fits": m.assessment.passes,
        "detail": m.detail,
        "assessment": assessment_dict(m.assessment),
    }


def _nearest(r: Recommendation, n: int = 3) -> list[Option]:
    return [o for o in r.options if not o.serves][:n]


def _as_asked(r: Recommendation) -> Option:
    """An option with no lever applied: it states the model, format and engine as asked."""
    return next((o for o in r.options if not o.changes), r.closest)


def recommendation_dict(r: Recommendation, defaulted: bool, per_tier: int = 3) -> dict[str, Any]:
    """The JSON document for one user count of `recommend --json`."""
    q = r.request
    fmt = _as_asked(r).scenario.estimate
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": {
            "model": q.model.id,
            "format": fmt.weight_format.name,
            "kv_dtype": fmt.kv_dtype,
            "ctx_tokens": q.ctx_tokens,
            "users": q.users,
            "engine": f"{fmt.plan.engine}@{fmt.plan.version}",
            "headroom": q.headroom,
            "max_gpus": q.max_gpus,
            "default_scenario": defaulted,
        },
        "objective": r.objective,
        "recommendation": _option_dict(r.choice),
        "closest": None if r.choice else _option_dict(r.closest),
        "options": [_option_dict(o) for o in r.options if o.serves]
        + [{**(_option_dict(o) or {}), "nearest_not_serving": True} for o in _nearest(r)],
        "tiers": [
            {
                **(_option_dict(opts[0]) or {} if opts else {"gpu": None, "fits": False}),
                "tier": name,
                "options": [_option_dict(o) for o in opts[:per_tier]],
            }
            for name, opts in r.tiers
        ],
        "remedies": [
            {"tier": where, "changes": [_fix_dict(m) for m in items]} for where, items in r.remedies
        ],
        "assumptions": list(r.assumptions),
    }


def recommendations_dict(
    rs: tuple[Recommendation, ...], defaulted: bool, per_tier: int = 3
) -> dict[str, Any]:
    """`recommend --json`: one count is the document itself; several add `by_users[]`, one each."""
    if len(rs) == 1:
        return recommendation_dict(rs[0], defaulted, per_tier)
    docs = [recommendation_dict(r, defaulted, per_tier) for r in rs]
    return {
        **docs[-1],
        "by_users": [{"users": r.request.users, **doc} for r, doc in zip(rs, docs, strict=True)],
    }


_LAYOUT_SHORT = {"single": "", "tensor-parallel": " TP", "pipeline-parallel": " PP", "replicas": " replicas"}


def option_name(o: Option) -> str:
    """E.g. 'h100-sxm', '2x rtx-4090 replicas', '4x l40s TP', 'rtx-4090 + kv_dtype q4_0, engine llama.cpp'."""
    name = o.gpu.id if o.count == 1 else f"{o.count}x {o.gpu.id}{_LAYOUT_SHORT[o.layout]}"
    if o.changes:
        name += " + " + ", ".join(f"{k} {v}" for k, v in o.changes.items() if v is not None and k != "bits")
    return name


def _speed_text(o: Option) -> tuple[str, str]:
    a = o.assessment
    if a.decode_tokens_per_s_per_user is None:
        return "-", "-"
    ttft = "-" if a.ttft_s is None else f"{a.ttft_s:.2f}"
    return f"{a.decode_tokens_per_s_per_user:.1f}", ttft


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _users(n: int) -> str:
    return f"{n:,} user" + ("" if n == 1 else "s")


def recommendation_summary(r: Recommendation, defaulted: bool) -> list[str]:
    q = r.request
    e = _as_asked(r).scenario.estimate
    lines = [
        f"{q.model.id} | {e.weight_format.name} weights | KV {e.kv_dtype} | {q.ctx_tokens:,} tokens per user | "
        f"{e.plan.engine} {e.plan.version} | {_users(q.users)} | {q.headroom:.0%} headroom | "
        f"optimize {r.objective}"
    ]
    if defaulted:
        lines.append(
            "(built-in default scenario: Gemma-2-27B, 4-bit, 4,096 tokens; pass MODEL or a project file)"
        )
    return lines


def recommendation_verdict(r: Recommendation) -> list[str]:
    q = r.request
    out: list[str] = []
    o = r.choice
    if o is not None:
        per_user, ttft = _speed_text(o)
        price = "" if o.cost_usd is None else f"; ${o.cost_usd:,.0f}"
        if o.cost_usd is not None and o.price_usd is not None and o.cost_usd != o.price_usd:
            price += f" to add (${o.price_usd:,.0f} list)"
        out.append(
            f"Recommendation ({r.objective}): {option_name(o)} ({o.tier}) serves up to {_users(o.max_users)} at "
            f"{q.ctx_tokens:,} tokens with {q.headroom:.0%} headroom; at {_users(q.users)} {per_user} tokens/s per "
            f"user, first token in {ttft} s{price}."
        )
    else:
        c = r.closest
        gpus = f"{q.max_gpus:,} GPU" + ("" if q.max_gpus == 1 else "s")
        out.append(
            f"Nothing in the catalog serves {_users(q.users)} within {gpus}. Closest: {option_name(c)} "
            f"serves {c.max_users}; at {_users(q.users)} it {c.assessment.verdict.replace('_', ' ')}: "
            f"{c.assessment.reasons[0] if c.assessment.reasons else ''}."
        )
    for where, items in r.remedies:
        if items:
            changes = "; ".join(f"{m.change} -> {m.detail}" for m in items)
            out.append(f"To make {where} work: {changes}.")
    return out


_HEADERS = ("tier", "option", "max users", "at the load", "tok/s/user", "TTFT s", "USD", "USD/user")


def _rows(r: Recommendation, per_tier: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, opts in r.tiers:
        if not opts:
            continue  # no candidate card in this tier (filters, --gpu, or the engine's hardware)
        for i, o in enumerate(opts[:per_tier]):
            per_user, ttft = _speed_text(o)
            rows.append(
                (
                    name if i == 0 else "",
                    option_name(o),
                    str(o.max_users),
                    verdict_word(o.assessment),
                    per_user,
                    ttft,
                    _money(o.cost_usd),
                    _money(o.usd_per_user),
                )
            )
    return rows


def _by_users_rows(rs: tuple[Recommendation, ...]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in rs:
        o = r.choice
        if o is None:
            out.append((str(r.request.users), "nothing serves", "", "", ""))
            continue
        per_user, _ = _speed_text(o)
        out.append((str(r.request.users), option_name(o), o.tier, per_user, _money(o.cost_usd)))
    return out


def recommendation_table(
    rs: tuple[Recommendation, ...], defaulted: bool, per_tier: int = 3
) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    r = rs[-1]
    parts: list[RenderableType] = [Text("\n".join(recommendation_summary(r, defaulted)), style="bold")]
    if len(rs) > 1:
        picks = Table(title="The pick by number of users", title_justify="left", show_edge=False)
        for header in ("users", "pick", "tier", "tok/s/user", "USD"):
            picks.add_column(header, no_wrap=True)
        for row in _by_users_rows(rs):
            picks.add_row(*row)
        parts.append(Fit(picks, words=("pick", "tier"), drop=("tier",)))
    table = Table(
        title=f"Best options per tier (top {per_tier}) at {_users(r.request.users)}",
        title_justify="left",
        show_edge=False,
    )
    for header in _HEADERS:
        table.add_column(header, no_wrap=header != "option")
    for row in _rows(r, per_tier):
        table.add_row(*row)
    parts.append(Fit(table, words=("tier", "option"), drop=("USD/user", "TTFT s", "tier")))
    for i, line in enumerate(recommendation_verdict(r)):
        parts.append(Text(line, style="bold green" if r.choice and i == 0 else ""))
    parts.append(Text("Assumptions: " + "; ".join(r.assumptions) + ".", style="dim"))
    return Group(*parts)


def recommendation_markdown(rs: tuple[Recommendation, ...], defaulted: bool, per_tier: int = 3) -> str:
    r = rs[-1]
    lines = [f"**{line}**" for line in recommendation_summary(r, defaulted)] + [""]
    if len(rs) > 1:
        lines += ["| users | pick | tier | tok/s/user | USD |", "|---:|---|---|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in _by_users_rows(rs)]
        lines.append("")
    lines += ["| " + " | ".join(_HEADERS) + " |", "|---|---|---:|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(r, per_tier)]
    lines += ["", *recommendation_verdict(r), ""]
    lines += [f"- {a}" for a in r.assumptions]
    return "\n".join(lines) + "\n"
