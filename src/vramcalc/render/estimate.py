"""Show an Estimate for `estimate`: JSON, Markdown, CSV or a rich table."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from vramcalc.core.engines.base import EngineView
from vramcalc.core.estimate import SCHEMA_VERSION, Estimate
from vramcalc.core.scenario import engine_rows
from vramcalc.render.common import BAR_WIDTH, _figure_text, _g, _mark
from vramcalc.units import fmt_count, gib

if TYPE_CHECKING:
    from rich.console import RenderableType

    from vramcalc.core.speed import ScenarioSpeed


def engine_dict(e: Estimate, view: EngineView | None) -> dict[str, Any]:
    """engine{name, version, settings, <the engine's own figures>, starts, notes} for JSON."""
    out: dict[str, Any] = {
        "name": e.plan.engine,
        "version": e.plan.version,
        "settings": dict(e.plan.settings),
    }
    if view is not None:
        out.update({f.key: f.value for f in view.figures})
        out["starts"] = view.starts
        out["notes"] = list(view.notes)
    return out


def speed_dict(sp: ScenarioSpeed | None) -> dict[str, Any] | None:
    if sp is None:
        return None
    a = sp.at_users
    off = sp.offload
    return {
        "users": a.users,
        "per_user_tokens_per_s": round(a.per_user_tokens_per_s, 2),
        "aggregate_tokens_per_s": round(a.aggregate_tokens_per_s, 1),
        "ttft_s": None if a.ttft_s is None else round(a.ttft_s, 3),
        "bound": a.bound,
        "offload": None
        if off is None
        else {"action": off.action, "offloaded_bytes": off.offloaded_bytes, "over_pcie": off.over_pcie},
    }


def estimate_dict(
    e: Estimate, view: EngineView | None = None, speed: ScenarioSpeed | None = None
) -> dict[str, Any]:
    """The stable JSON document for `estimate --json` (bytes are integers)."""
    w = e.workload
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {
            "id": e.model.id,
            "name": e.model.name,
            "params": e.params.total,
            "params_active": e.params.active,
        },
        "workload": {
            "ctx_tokens": w.ctx_tokens,
            "users": w.users,
            "fill": w.fill,
            "workers": w.workers,
            "shared_prefix_tokens": w.shared_prefix_tokens,
        },
        "engine": engine_dict(e, view),
        "weights": {
            "format": e.weight_format.name,
            "label": e.weight_format.label,
            "bits_per_weight": round(e.bits_per_weight, 4),
            "bytes": e.weights_bytes,
            "checkpoint_bytes": e.checkpoint_bytes,
        },
        "kv_cache": {
            "dtype": e.kv_dtype,
            "bytes_per_token": e.kv_bytes_per_token,
            "bytes_per_sequence": e.kv_bytes_per_sequence,
            "bytes": e.kv.bytes,
            "global_layers_bytes": e.kv.global_bytes,
            "local_layers_bytes": e.kv.local_bytes,
        },
        "activations": {
            "bytes": e.activations.bytes,
            "forward_bytes": e.activations.forward_bytes,
            "sampler_bytes": e.activations.sampler_bytes,
            "prefill_tokens": e.activations.prefill_tokens,
        },
        "reserve": {"bytes": e.reserve_bytes},
        "copies": {"bytes": e.copies_bytes},
        "total_bytes": e.total_bytes,
        "by_users": [
            {
                "users": r.users,
                "kv_bytes": r.kv_bytes,
                "total_bytes": r.total_bytes,
                "fits": r.fits[0] if e.gpu is not None else None,
                "fits_targets": dict(zip((t.label for t in e.fit_targets), r.fits, strict=True)),
                "per_user_tokens_per_s": None if speed is None else round(sp.per_user_tokens_per_s, 2),
            }
            for r, sp in zip(engine_rows(e, view), _row_speeds(e, speed), strict=True)
        ],
        "gpu": None
        if e.gpu is None
        else {
            "id": e.gpu.gpu.id,
            "usable_bytes": e.gpu.usable_bytes,
            "usable_basis": e.gpu.usable_basis,
            "fits": fits(e, view),
            "headroom_bytes": e.gpu.headroom_bytes,
        },
        "terms": [
            {"key": t.key, "label": t.label, "bytes": t.bytes, "formula": t.formula, "source": t.source}
            for t in e.terms
        ],
        "speed": speed_dict(speed),
        "assumptions": list(e.assumptions),
        "warnings": list(e.warnings),
    }


def _headline(e: Estimate) -> str:
    w = e.workload
    fill = "" if w.fill == 1 else f", {w.fill:.0%} full on average"
    prefix = f", {w.shared_prefix_tokens:,}-token shared prefix" if w.shared_prefix_tokens else ""
    workers = f", {w.workers} worker processes" if w.workers > 1 else ""
    return (
        f"{e.model.id} ({fmt_count(e.params.total)} params) | {e.weight_format.name} weights | "
        f"KV {e.kv_dtype} | {e.plan.engine} {e.plan.version}\n"
        f"{w.users} users x {w.ctx_tokens:,} tokens{fill}{prefix}{workers}"
    )


def fits(e: Estimate, view: EngineView | None) -> bool | None:
    """The verdict for --gpu: the total fits the card, and the engine starts and its KV pool holds
    the workload's KV cache (vLLM pre-allocates a share of the card, so the card alone is not enough)."""
    if e.gpu is None:
        return None
    return e.gpu.fits and (view is None or view.serves(e.kv.bytes))


def verdict(e: Estimate, view: EngineView | None = None) -> str:
    """One sentence: total, and whether it fits the GPU (or which tiers it fits)."""
    total = f"{gib(e.total_bytes):.2f} GiB"
    if e.gpu is not None:
        g = e.gpu
        if g.fits and view is not None and not view.serves(e.kv.bytes):
            why = "would not start" if not view.starts else "cannot hold this KV cache in its pool"
            return (
                f"Does NOT fit {g.gpu.id} with {view.engine} {view.version}: needs {total} of "
                f"{gib(g.usable_bytes):.2f} GiB, but the engine {why}."
            )
        if g.fits:
            return (
                f"Fits {g.gpu.id}: needs {total} of {gib(g.usable_bytes):.2f} GiB "
                f"({gib(g.headroom_bytes):.2f} GiB free)."
            )
        return (
            f"Does NOT fit {g.gpu.id}: needs {total}, has {gib(g.usable_bytes):.2f} GiB "
            f"({gib(-g.headroom_bytes):.2f} GiB short)."
        )
    fits = [t.label for t in e.fit_targets if e.total_bytes <= t.usable_bytes]
    misses = [t.label for t in e.fit_targets if e.total_bytes > t.usable_bytes]
    parts = [f"Needs {total}"]
    if misses:
        parts.append(f"does not fit {', '.join(misses)}")
    if fits:
        parts.append(f"fits {', '.join(fits)}")
    return "; ".join(parts) + "."


def _breakdown_rows(e: Estimate) -> list[tuple[str, int]]:
    return [(t.label, t.bytes) for t in e.terms] + [("Total", e.total_bytes)]


def _bar(weights: int, kv: int, total: int, scale: int) -> str:
    cells = max(1, round(BAR_WIDTH * total / scale)) if scale else 0
    w = round(cells * weights / total) if total else 0
    k = round(cells * kv / total) if total else 0
    w = min(w, cells)
    k = min(k, cells - w)
    return "#" * w + "=" * k + "." * (cells - w - k)


def engine_lines(view: EngineView, gpu_id: str) -> list[str]:
    """The engine's own figures in its own words, for holding against its startup log."""
    lines = [f"What {view.engine} {view.version} will do on {gpu_id}:"]
    lines += [f"  {f.label}: {_figure_text(f.value, f.unit)}" for f in view.figures]
    lines += [f"  note: {n}" for n in view.notes]
    return lines


def _row_speeds(e: Estimate, speed: ScenarioSpeed | None) -> list[Any]:
    return list(speed.rows) if speed is not None else [None] * len(e.by_users)


def speed_lines(e: Estimate, speed: ScenarioSpeed) -> list[str]:
    a = speed.at_users
    gpu = e.gpu.gpu.id if e.gpu else "the GPU"
    ttft = (
        ""
        if a.ttft_s is None
        else f"; first token after a {e.workload.ctx_tokens:,}-token prompt in {a.ttft_s:.2f} s"
    )
    lines = [
        f"Speed on {gpu}: {a.per_user_tokens_per_s:.1f} tokens/s per user at {a.users} users "
        f"({a.aggregate_tokens_per_s:,.0f} tokens/s in all, {a.bound}-bound){ttft}."
    ]
    if speed.offload is not None:
        off = speed.offload
        lines.append(
            f"Offload: {off.action}; {off.offloaded_bytes / 2**30:.2f} GiB read "
            f"{'over PCIe' if off.over_pcie else 'from host memory'} each token costs "
            f"{a.offload_tokens_per_s_penalty:.1f} tokens/s per user."
        )
    return lines


def estimate_table(
    e: Estimate, explain: bool = False, view: EngineView | None = None, speed: ScenarioSpeed | None = None
) -> RenderableType:
    """A rich renderable: headline, breakdown, per-concurrency table, verdict, assumptions."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = [Text(_headline(e), style="bold")]
    breakdown = Table(title="Memory breakdown", title_justify="left", show_edge=False)
    breakdown.add_column("Component")
    breakdown.add_column("GiB", justify="right")
    breakdown.add_column("Share", justify="right")
    for label, n_bytes in _breakdown_rows(e):
        share = f"{n_bytes / e.total_bytes:.0%}" if e.total_bytes else "-"
        style = "bold" if label == "Total" else None
        breakdown.add_row(label, _g(n_bytes), share, style=style)
    parts.append(breakdown)

    users = Table(
        title="By concurrent users (split: # weights, = KV cache, . other; columns: fits?)",
        title_justify="left",
        show_edge=False,
    )
    users.add_column("Users", justify="right")
    users.add_column("KV GiB", justify="right")
    users.add_column("Total GiB", justify="right")
    users.add_column("Split", no_wrap=True, min_width=BAR_WIDTH)
    for t in e.fit_targets:
        users.add_column(t.label, justify="center", no_wrap=True)
    if speed is not None:
        users.add_column("tok/s/user", justify="right")
    scale = max(r.total_bytes for r in e.by_users)
    for r, sp in zip(engine_rows(e, view), _row_speeds(e, speed), strict=True):
        other = r.total_bytes - r.kv_bytes
        weights = min(e.weights_bytes * e.workload.workers, other)
        cells = [
            str(r.users),
            _g(r.kv_bytes),
            _g(r.total_bytes),
            _bar(weights, r.kv_bytes, r.total_bytes, scale),
        ]
        cells += [_mark(f) for f in r.fits]
        if sp is not None:
            cells.append(f"{sp.per_user_tokens_per_s:.1f}")
        users.add_row(*cells)
    parts.append(users)
    ok = fits(e, view) if e.gpu is not None else _fits_all(e)
    parts.append(Text(verdict(e, view), style="bold green" if ok else "bold red"))
    if speed is not None:
        parts.append(Text("\n".join(speed_lines(e, speed))))
    if view is not None and e.gpu is not None:
        parts.append(Text("\n".join(engine_lines(view, e.gpu.gpu.id))))
    if explain:
        parts.append(Text("How each figure is computed", style="bold"))
        for term in e.terms:
            parts.append(
                Text(f"{term.label}: {_g(term.bytes)} GiB\n  = {term.formula}\n  source: {term.source}")
            )
    for warning in e.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    parts.append(Text("Assumptions: " + "; ".join(e.assumptions) + ".", style="dim"))
    return Group(*parts)


def _fits_all(e: Estimate) -> bool:
    if e.gpu is not None:
        return e.gpu.fits
    return any(e.total_bytes <= t.usable_bytes for t in e.fit_targets)


def estimate_markdown(
    e: Estimate, explain: bool = False, view: EngineView | None = None, speed: ScenarioSpeed | None = None
) -> str:
    lines = [f"**{_headline(e).replace(chr(10), '** | ')}", ""]
    lines += ["| Component | GiB | Share |", "|---|---:|---:|"]
    for label, n_bytes in _breakdown_rows(e):
        share = f"{n_bytes / e.total_bytes:.0%}" if e.total_bytes else "-"
        lines.append(f"| {label} | {_g(n_bytes)} | {share} |")
    header = "| Users | KV GiB | Total GiB | " + " | ".join(f"fits {t.label}" for t in e.fit_targets) + " |"
    lines += ["", header, "|" + "---:|" * (3 + len(e.fit_targets))]
    for r in engine_rows(e, view):
        marks = " | ".join(_mark(f) for f in r.fits)
        lines.append(f"| {r.users} | {_g(r.kv_bytes)} | {_g(r.total_bytes)} | {marks} |")
    lines += ["", verdict(e, view), ""]
    if speed is not None:
        lines += [*speed_lines(e, speed), ""]
    if view is not None and e.gpu is not None:
        head, *rest = engine_lines(view, e.gpu.gpu.id)
        lines += [f"**{head}**", "", *(f"- {r.strip()}" for r in rest), ""]
    if explain:
        lines += [f"- **{t.label}** = {t.formula} (source: {t.source})" for t in e.terms]
        lines.append("")
    lines += [f"> warning: {w}" for w in e.warnings]
    lines += [f"- {a}" for a in e.assumptions]
    return "\n".join(lines) + "\n"


def estimate_csv(e: Estimate, view: EngineView | None = None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["model", "format", "kv_dtype", "ctx_tokens", "users", "kv_bytes", "total_bytes"]
        + [f"fits_{t.label.replace(' ', '')}" for t in e.fit_targets]
    )
    for r in engine_rows(e, view):
        writer.writerow(
            [
                e.model.id,
                e.weight_format.name,
                e.kv_dtype,
                e.workload.ctx_tokens,
                r.users,
                r.kv_bytes,
                r.total_bytes,
            ]
            + [str(f).lower() for f in r.fits]
        )
    return buf.getvalue()
