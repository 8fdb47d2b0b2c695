"""Show a Recommendation for `recommend`: JSON, Markdown or a rich table of options per tier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramcalc.core.estimate import SCHEMA_VERSION
from vramcalc.render.assessment import assessment_dict, verdict_word

if TYPE_CHECKING:
    from rich.console import RenderableType

    from vramcalc.core.recommend import Option, Recommendation


def _option_dict(o: Option | None) -> dict[str, Any] | None:
    if o is None:
        return None
    a = o.assessment
    return {
        "tier": o.tier,
        "gpu": o.gpu.id,
        "count": o.count,
        "layout": o.layout,
        "max_users": o.max_users,
        "fits": o.serves,
        "verdict": a.verdict,
        "per_user_tokens_per_s": a.decode_tokens_per_s_per_user and round(a.decode_tokens_per_s_per_user, 2),
        "aggregate_tokens_per_s": a.aggregate_tokens_per_s and round(a.aggregate_tokens_per_s, 1),
        "ttft_s": None if a.ttft_s is None else round(a.ttft_s, 3),
        "per_gpu_total_bytes": a.per_gpu_bytes,
        "usable_bytes": a.usable_bytes,
        "price_usd": o.price_usd,
        "assessment": assessment_dict(a),
    }


def recommendation_dict(r: Recommendation, defaulted: bool) -> dict[str, Any]:
    """The stable JSON document for `recommend --json`."""
    q = r.request
    fmt = (r.choice or r.closest).scenario.estimate
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
        "recommendation": _option_dict(r.choice),
        "closest": None if r.choice else _option_dict(r.closest),
        "tiers": [{**(_option_dict(o) or {"gpu": None, "fits": False}), "tier": name} for name, o in r.tiers],
        "remedies": [
            {
                "tier": tier,
                "changes": [
                    {
                        "change": m.change,
                        "fields": m.plan_fields,
                        "fits": m.assessment.passes,
                        "detail": m.detail,
                        "assessment": assessment_dict(m.assessment),
                    }
                    for m in items
                ],
            }
            for tier, items in r.remedies
        ],
        "assumptions": list(r.assumptions),
    }


_LAYOUT_SHORT = {"single": "", "tensor-parallel": " TP", "pipeline-parallel": " PP", "replicas": " replicas"}


def option_name(o: Option) -> str:
    """E.g. 'h100-sxm', '2x rtx-4090 replicas', '4x l40s TP'."""
    return o.gpu.id if o.count == 1 else f"{o.count}x {o.gpu.id}{_LAYOUT_SHORT[o.layout]}"


def _speed_text(o: Option) -> tuple[str, str]:
    a = o.assessment
    if a.decode_tokens_per_s_per_user is None:
        return "-", "-"
    ttft = "-" if a.ttft_s is None else f"{a.ttft_s:.2f}"
    return f"{a.decode_tokens_per_s_per_user:.1f}", ttft


def recommendation_summary(r: Recommendation, defaulted: bool) -> list[str]:
    q = r.request
    e = (r.choice or r.closest).scenario.estimate
    lines = [
        f"{q.model.id} | {e.weight_format.name} weights | KV {e.kv_dtype} | {q.ctx_tokens:,} tokens per user | "
        f"{e.plan.engine} {e.plan.version} | {q.users} users | {q.headroom:.0%} headroom"
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
        price = f"; ${o.price_usd:,.0f}" if o.price_usd else ""
        out.append(
            f"Recommendation: {option_name(o)} ({o.tier}) serves up to {o.max_users} users at "
            f"{q.ctx_tokens:,} tokens with {q.headroom:.0%} headroom; at {q.users} users {per_user} tokens/s per "
            f"user, first token in {ttft} s{price}."
        )
    else:
        c = r.closest
        out.append(
            f"Nothing in the catalog serves {q.users} users within {q.max_gpus} GPUs. Closest: {option_name(c)} "
            f"serves {c.max_users}; at {q.users} users it {c.assessment.verdict.replace('_', ' ')}: "
            f"{c.assessment.reasons[0] if c.assessment.reasons else ''}."
        )
    for tier, items in r.remedies:
        if items:
            changes = "; ".join(f"{m.change} -> {m.detail}" for m in items)
            out.append(f"To make the {tier} tier work: {changes}.")
    return out


def recommendation_table(r: Recommendation, defaulted: bool) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Best option per tier", title_justify="left", show_edge=False)
    for header in ("tier", "option", "max users", "tok/s/user", "TTFT s", "USD", "at the load"):
        table.add_column(header, no_wrap=True)
    for name, o in r.tiers:
        if o is None:
            table.add_row(name, "-", "", "", "", "", "")
            continue
        per_user, ttft = _speed_text(o)
        price = f"{o.price_usd:,.0f}" if o.price_usd else "-"
        table.add_row(
            name, option_name(o), str(o.max_users), per_user, ttft, price, verdict_word(o.assessment)
        )
    parts: list[RenderableType] = [Text("\n".join(recommendation_summary(r, defaulted)), style="bold"), table]
    for i, line in enumerate(recommendation_verdict(r)):
        parts.append(Text(line, style="bold green" if r.choice and i == 0 else ""))
    parts.append(Text("Assumptions: " + "; ".join(r.assumptions) + ".", style="dim"))
    return Group(*parts)


def recommendation_markdown(r: Recommendation, defaulted: bool) -> str:
    lines = [f"**{line}**" for line in recommendation_summary(r, defaulted)] + [""]
    lines += [
        "| tier | option | max users | tok/s/user | TTFT s | USD | at the load |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, o in r.tiers:
        if o is None:
            lines.append(f"| {name} | - | | | | | |")
            continue
        per_user, ttft = _speed_text(o)
        price = f"{o.price_usd:,.0f}" if o.price_usd else "-"
        lines.append(
            f"| {name} | {option_name(o)} | {o.max_users} | {per_user} | {ttft} | {price} | {verdict_word(o.assessment)} |"
        )
    lines += ["", *recommendation_verdict(r), ""]
    lines += [f"- {a}" for a in r.assumptions]
    return "\n".join(lines) + "\n"
