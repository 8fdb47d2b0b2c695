"""Show an Estimate for `estimate`: JSON, Markdown, CSV or a rich table."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from vramcalc.core.estimate import SCHEMA_VERSION, Estimate
from vramcalc.render.assessment import assessment_dict, headline, verdict_word
from vramcalc.render.common import BAR_WIDTH, _figure_text, _g, users_chart
from vramcalc.units import fmt_count, gib

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.table import Table

    from vramcalc.core.assess import Assessment, EstimateReport
    from vramcalc.core.engines.base import EngineView


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
        out["ranges"] = {key: [low, high] for key, low, high in view.ranges}
        if view.ranges:
            out["range_reason"] = view.range_reason
    return out


def estimate_dict(r: EstimateReport) -> dict[str, Any]:
    """The stable JSON document for `estimate --json` (bytes are integers)."""
    e = r.estimate
    w = e.workload
    single = r.assessment is not None
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
        "engine": engine_dict(e, r.view),
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
                "users": row.users,
                "kv_bytes": row.kv_bytes,
                "total_bytes": row.total_bytes,
                "verdict": cells[0].verdict if single else None,
                "verdicts": {label: a.verdict for label, a in zip(r.columns, cells, strict=True)},
                "per_gpu_bytes": cells[0].per_gpu_bytes if single else None,
                "users_at_once": cells[0].users_at_once if single else None,
                "per_user_tokens_per_s": _tps(cells[0]) if single else None,
            }
            for row, cells in zip(e.by_users, r.rows, strict=True)
        ],
        "gpu": None
        if e.gpu is None
        else {"id": e.gpu.gpu.id, "usable_bytes": e.gpu.usable_bytes, "usable_basis": e.gpu.usable_basis},
        "assessment": None if r.assessment is None else assessment_dict(r.assessment),
        "terms": [
            {"key": t.key, "label": t.label, "bytes": t.bytes, "formula": t.formula, "source": t.source}
            for t in e.terms
        ],
        "assumptions": list(e.assumptions),
        "warnings": list(e.warnings),
    }


def _tps(a: Assessment) -> float | None:
    v = a.decode_tokens_per_s_per_user
    return None if v is None else round(v, 2)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _headline(e: Estimate) -> str:
    w = e.workload
    fill = "" if w.fill == 1 else f", {w.fill:.0%} full on average"
    prefix = f", {w.shared_prefix_tokens:,}-token shared prefix" if w.shared_prefix_tokens else ""
    workers = f", {w.workers} worker processes" if w.workers > 1 else ""
    return (
        f"{e.model.id} ({fmt_count(e.params.total)} params) | {e.weight_format.name} weights | "
        f"KV {e.kv_dtype} | {e.plan.engine} {e.plan.version}\n"
        f"{_plural(w.users, 'user')} x {w.ctx_tokens:,} tokens{fill}{prefix}{workers}"
    )


def verdict(r: EstimateReport) -> str:
    """One sentence: the assessment's verdict on the GPU, or the total and each tier card's verdict."""
    if r.assessment is not None:
        return headline(r.assessment)
    e = r.estimate
    last = r.rows[-1] if r.rows else ()
    parts = [f"Needs {gib(e.total_bytes):.2f} GiB"]
    parts += [f"{verdict_word(a)} on {label}" for label, a in zip(r.columns, last, strict=True)]
    return "; ".join(parts) + f" (at {_plural(e.workload.users, 'user')})."


def _breakdown_rows(e: Estimate) -> list[tuple[str, int]]:
    return [(t.label, t.bytes) for t in e.terms] + [("Total", e.total_bytes)]


def _bar(weights: int, kv: int, total: int, scale: int, width: int = BAR_WIDTH) -> str:
    cells = max(1, round(width * total / scale)) if scale else 0
    w = round(cells * weights / total) if total else 0
    k = round(cells * kv / total) if total else 0
    w = min(w, cells)
    k = min(k, cells - w)
    return "#" * w + "=" * k + "." * (cells - w - k)


def engine_lines(view: EngineView, gpu_id: str) -> list[str]:
    """The engine's own figures in its own words, for holding against its startup log."""
    lines = [f"What {view.engine} {view.version} will do on {gpu_id}:"]
    spans = {key: (low, high) for key, low, high in view.ranges}
    for f in view.figures:
        text = f"  {f.label}: {_figure_text(f.value, f.unit)}"
        if f.key in spans:
            low, high = spans[f.key]
            text += f" (range {_figure_text(low, f.unit)} to {_figure_text(high, f.unit)})"
        lines.append(text)
    if view.ranges:
        lines.append(f"  ranges: {view.range_reason}; verdicts count the smaller KV pool")
    lines += [f"  note: {n}" for n in view.notes]
    return lines


def assessment_lines(a: Assessment) -> list[str]:
    """The reasons behind the verdict (memory, scheduling, speed, wait), and what it misses."""
    lines = [f"  - {reason}" for reason in a.reasons]
    lines += [f"  - misses: {m.text}" for m in a.misses if m.kind in ("memory", "speed", "ttft")]
    return lines


def estimate_table(r: EstimateReport, explain: bool = False) -> RenderableType:
    """A rich renderable: headline, breakdown, per-concurrency table, verdict, reasons, assumptions."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    e = r.estimate
    parts: list[RenderableType] = [Text(_headline(e), style="bold")]
    breakdown = Table(title="Memory breakdown", title_justify="left", show_edge=False)
    breakdown.add_column("Component")
    breakdown.add_column("GiB", justify="right", no_wrap=True)
    breakdown.add_column("Share", justify="right", no_wrap=True)
    for label, n_bytes in _breakdown_rows(e):
        share = f"{n_bytes / e.total_bytes:.0%}" if e.total_bytes else "-"
        style = "bold" if label == "Total" else None
        breakdown.add_row(label, _g(n_bytes), share, style=style)
    parts.append(breakdown)

    parts.append(_FitTable(lambda bar, compact: _users_table(r, bar, compact)))
    ok = (
        r.assessment.passes
        if r.assessment is not None
        else any(a.passes for a in (r.rows[-1] if r.rows else ()))
    )
    parts.append(Text(verdict(r), style="bold green" if ok else "bold red"))
    if r.assessment is not None:
        parts.append(Text("\n".join(assessment_lines(r.assessment))))
    if r.view is not None and e.gpu is not None:
        parts.append(Text("\n".join(engine_lines(r.view, e.gpu.gpu.id))))
    if explain:
        parts.append(Text("How each figure is computed", style="bold"))
        for term in e.terms:
            parts.append(
                Text(f"{term.label}: {_g(term.bytes)} GiB\n  = {term.formula}\n  source: {term.source}")
            )
    for warning in e.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    parts.append(Text("Assumptions: " + "; ".join(_assumptions(r)) + ".", style="dim"))
    return Group(*parts)


class _FitTable:
    """The concurrency table at the widest split bar the console has room for: on a narrow terminal
    the bar shrinks, then goes, then long headers take two lines; a number is never cut."""

    def __init__(self, build: Callable[[int, bool], Table]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.measure import Measurement

        tries = [(w, False) for w in range(BAR_WIDTH, 3, -1)] + [(0, False), (0, True)]
        unbounded = options.update_width(10_000)  # the measure of a table is capped at the width given
        for bar, compact in tries:
            table = self.build(bar, compact)
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
        yield table


def _users_table(r: EstimateReport, bar: int, compact: bool) -> Table:
    """One row per user count; `bar` cells of split bar (0: no Split column); `compact`: two-line headers."""
    from rich.table import Table

    e = r.estimate
    single = r.assessment is not None
    title = "By concurrent users (Need: all at once; "
    title += "split: # weights, = KV cache, . other; " if bar else ""
    title += "GPU: what the engine holds)" if single else "verdict on one card per tier: 24, 48, 80 GB)"
    users = Table(title=title, title_justify="left", show_edge=False)

    def head(label: str) -> str:
        return label.replace(" ", "\n").replace("tok/s/", "tok/s/\n") if compact else label

    users.add_column("Users", justify="right", no_wrap=True)
    users.add_column(head("KV GiB"), justify="right", no_wrap=True)
    users.add_column(head("Need GiB"), justify="right", no_wrap=True)
    if bar:
        users.add_column("Split", no_wrap=True)
    for label in r.columns:
        users.add_column(label, justify="center", no_wrap=True)
    if single:
        users.add_column(head("GPU GiB"), justify="right", no_wrap=True)
        users.add_column(head("at once"), justify="right", no_wrap=True)
        users.add_column(head("tok/s/user"), justify="right", no_wrap=True)
    scale = max(row.total_bytes for row in e.by_users)
    for row, cells in zip(e.by_users, r.rows, strict=True):
        other = row.total_bytes - row.kv_bytes
        weights = min(e.weights_bytes * e.workload.workers, other)
        line = [str(row.users), _g(row.kv_bytes), _g(row.total_bytes)]
        if bar:
            line.append(_bar(weights, row.kv_bytes, row.total_bytes, scale, bar))
        line += [verdict_word(a) for a in cells]
        if single:
            a = cells[0]
            tps = a.decode_tokens_per_s_per_user
            line += [_g(a.per_gpu_bytes), str(a.users_at_once), "-" if tps is None else f"{tps:.1f}"]
        users.add_row(*line)
    return users


def _assumptions(r: EstimateReport) -> list[str]:
    out = list(r.estimate.assumptions)
    if r.assessment is None and r.columns:
        out.append(f"the 24, 48 and 80 GB tiers are assessed on one named card each: {', '.join(r.columns)}")
    if r.assessment is not None:
        d = r.assessment.deployment
        out.append(
            f"each request: {d.prompt_tokens:,}-token prompt + {d.output:,} output tokens; host memory "
            f"{d.host_bandwidth_gbs:g} GB/s"
        )
    return out


def estimate_markdown(r: EstimateReport, explain: bool = False) -> str:
    e = r.estimate
    lines = [f"**{_headline(e).replace(chr(10), '** | ')}", ""]
    lines += ["| Component | GiB | Share |", "|---|---:|---:|"]
    for label, n_bytes in _breakdown_rows(e):
        share = f"{n_bytes / e.total_bytes:.0%}" if e.total_bytes else "-"
        lines.append(f"| {label} | {_g(n_bytes)} | {share} |")
    single = r.assessment is not None
    header = (
        "| Users | KV GiB | Need GiB | "
        + " | ".join(r.columns)
        + (" | GPU GiB | at once | tok/s/user |" if single else " |")
    )
    lines += ["", header, "|" + "---:|" * (3 + len(r.columns) + (3 if single else 0))]
    for row, cells in zip(e.by_users, r.rows, strict=True):
        marks = " | ".join(verdict_word(a) for a in cells)
        extra = ""
        if single:
            tps = cells[0].decode_tokens_per_s_per_user
            extra = f" | {_g(cells[0].per_gpu_bytes)} | {cells[0].users_at_once} | {'-' if tps is None else f'{tps:.1f}'}"
        lines.append(f"| {row.users} | {_g(row.kv_bytes)} | {_g(row.total_bytes)} | {marks}{extra} |")
    lines += ["", *_chart(r), "", verdict(r), ""]
    if r.assessment is not None:
        lines += [*assessment_lines(r.assessment), ""]
    if r.view is not None and e.gpu is not None:
        head, *rest = engine_lines(r.view, e.gpu.gpu.id)
        lines += [f"**{head}**", "", *(f"- {x.strip()}" for x in rest), ""]
    if explain:
        lines += [f"- **{t.label}** = {t.formula} (source: {t.source})" for t in e.terms]
        lines.append("")
    lines += [f"> warning: {w}" for w in e.warnings]
    lines += [f"- {a}" for a in _assumptions(r)]
    return "\n".join(lines) + "\n"


def _chart(r: EstimateReport) -> list[str]:
    """The table's rows as a chart: per-GPU memory of each column's card (bars) and its usable memory
    (lines), in the columns' order."""
    cards = ", ".join(r.columns)
    title = f"{r.estimate.model.id}: GiB per GPU by users on {cards} (bars), usable memory (lines)"
    users = [row.users for row in r.estimate.by_users]
    bars = [[cells[i].per_gpu_bytes for cells in r.rows] for i in range(len(r.columns))]
    lines = [[cells[i].usable_bytes for cells in r.rows] for i in range(len(r.columns))]
    return users_chart(title, users, bars, lines)


def estimate_csv(r: EstimateReport) -> str:
    e = r.estimate
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["model", "format", "kv_dtype", "ctx_tokens", "users", "kv_bytes", "total_bytes"]
        + [f"verdict_{label.replace(' ', '')}" for label in r.columns]
    )
    for row, cells in zip(e.by_users, r.rows, strict=True):
        writer.writerow(
            [
                e.model.id,
                e.weight_format.name,
                e.kv_dtype,
                e.workload.ctx_tokens,
                row.users,
                row.kv_bytes,
                row.total_bytes,
            ]
            + [a.verdict for a in cells]
        )
    return buf.getvalue()
