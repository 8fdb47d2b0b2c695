"""Turn an Estimate (or catalog specs) into JSON, Markdown, CSV or a rich table; never prints."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from vramcalc.core.engines.base import EngineView
from vramcalc.core.estimate import SCHEMA_VERSION, Estimate
from vramcalc.core.kv import kv_bytes_per_token
from vramcalc.core.scenario import engine_rows
from vramcalc.core.tensors import param_counts
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import fmt_count, gib

if TYPE_CHECKING:
    from rich.console import RenderableType

    from vramcalc.core.recommend import Option, Recommendation
    from vramcalc.core.speed import ScenarioSpeed

BAR_WIDTH = 24


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


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _g(n_bytes: int) -> str:
    return f"{gib(n_bytes):.2f}"


def _mark(fits: bool) -> str:
    return "yes" if fits else "NO"


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


def _figure_text(value: int | float | bool, unit: str) -> str:
    if unit == "bytes" and isinstance(value, int):
        return f"{value / 2**30:,.2f} GiB"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if unit == "x":
        return f"{value:g}x"
    return f"{value:,} {unit}".strip()


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


def model_summary(m: ModelSpec) -> dict[str, Any]:
    counts = param_counts(m)
    return {
        "id": m.id,
        "name": m.name,
        "family": m.family,
        "params": counts.total,
        "params_active": counts.active,
        "layers": m.num_hidden_layers,
        "kv_bytes_per_token_bf16": kv_bytes_per_token(m, "bf16"),
        "layer_pattern": m.layer_pattern.kind,
        "max_position_embeddings": m.max_position_embeddings,
    }


def model_detail(m: ModelSpec) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "computed": model_summary(m)}


def gpu_summary(g: GpuSpec) -> dict[str, Any]:
    from vramcalc.core.estimate import usable_gpu_bytes

    usable, basis = usable_gpu_bytes(g)
    return {
        "id": g.id,
        "name": g.name,
        "tier": g.tier,
        "form_factor": g.form_factor,
        "memory_gb_marketed": g.memory_gb_marketed,
        "usable_bytes": usable,
        "usable_basis": basis,
        "memory_bandwidth_gbs": g.memory_bandwidth_gbs,
        "bf16_dense_tflops": g.bf16_dense_tflops,
        "price_usd": g.price_usd,
    }


def gpu_detail(g: GpuSpec) -> dict[str, Any]:
    return {**g.model_dump(mode="json"), "computed": gpu_summary(g)}


def models_table(models: Iterable[ModelSpec]) -> RenderableType:
    from rich.table import Table

    table = Table(title="Models", title_justify="left", show_edge=False)
    table.add_column("id", no_wrap=True)
    for header in ("params", "active", "layers", "KV/token bf16", "attention", "max ctx"):
        table.add_column(header)
    for m in models:
        s = model_summary(m)
        table.add_row(
            m.id,
            fmt_count(s["params"]),
            fmt_count(s["params_active"]),
            str(s["layers"]),
            f"{s['kv_bytes_per_token_bf16'] / 1024:,.0f} KiB",
            s["layer_pattern"],
            f"{s['max_position_embeddings']:,}",
        )
    return table


def gpus_table(gpus: Iterable[GpuSpec]) -> RenderableType:
    from rich.table import Table

    table = Table(title="GPUs", title_justify="left", show_edge=False)
    table.add_column("id", no_wrap=True)
    for header in ("tier", "usable GiB", "GB/s", "bf16 TFLOPS", "price USD"):
        table.add_column(header)
    for g in gpus:
        s = gpu_summary(g)
        table.add_row(
            g.id,
            g.tier,
            f"{gib(s['usable_bytes']):.2f}",
            f"{g.memory_bandwidth_gbs:,.0f}",
            "-" if g.bf16_dense_tflops is None else f"{g.bf16_dense_tflops:g}",
            "-" if g.price_usd is None else f"{g.price_usd:,.0f}",
        )
    return table


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def detail_table(title: str, data: dict[str, Any]) -> RenderableType:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, show_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        if isinstance(value, list | tuple):
            text = "\n".join(str(v) for v in value) or "-"
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            text = _cell(value)
        table.add_row(key, text)
    return table


# --- calibrate: an engine's startup log vs our estimate -------------------------------------------

if TYPE_CHECKING:
    from vramcalc.core.calibrate import CalibrationReport, CalibrationRow

# Our figure keys in words, for the first column of the calibration table.
_FIGURE_NAMES = {
    "cuda_total_bytes": "GPU total",
    "requested_bytes": "budget (util x total)",
    "weights_bytes_per_gpu": "weights",
    "activation_peak_bytes": "activation peak",
    "non_torch_bytes": "non-torch",
    "cuda_graph_bytes": "CUDA graphs",
    "kv_pool_bytes": "KV cache pool",
    "num_gpu_blocks": "KV blocks",
    "kv_capacity_tokens": "KV capacity",
    "max_concurrency": "max concurrency",
    "model_buffer_bytes": "model buffer",
    "host_model_buffer_bytes": "model buffer (host)",
    "kv_buffer_bytes": "KV buffer",
    "compute_buffer_bytes": "compute buffer",
    "total_bytes": "total",
    "gpu_layers": "GPU layers",
    "required_full_bytes": "required, all layers",
    "required_partial_bytes": "required, as placed",
    "required_kv_bytes": "KV (estimate)",
    "weights_total_bytes": "layers + KV (estimate)",
    "weights_repeating_bytes": "repeating layers",
    "weights_nonrepeating_bytes": "output layer",
    "graph_full_bytes": "graph, all layers",
    "graph_partial_bytes": "graph, partial",
    "layers_offload": "GPU layers (estimate)",
    "starts": "starts",
}


def _calibration_value(row: CalibrationRow, value: int | float | bool | None) -> str:
    """A figure in the unit and precision the engine printed it (so ours reads like theirs)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if row.unit == "bytes":
        scale = 2**20 if row.shown_in == "MiB" else 2**30
        return f"{value / scale:,.{row.decimals}f} {row.shown_in}"
    if row.unit == "x":
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:,.{row.decimals}f}"
    return f"{value:,}"


def _calibration_diff(row: CalibrationRow) -> str:
    if row.ours is None:
        return "not modelled"
    if isinstance(row.theirs, bool):
        return "agree" if row.agrees else "DIFFERS"
    if row.diff is None:
        return "0%" if row.ours == row.theirs else "-"
    return "0.0%" if abs(row.diff) < 0.0005 else f"{row.diff:+.1%}"


def _cell_setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:,}" if isinstance(value, int) else str(value)


def calibration_headline(report: CalibrationReport) -> str:
    printed = f" (log: {report.model_printed})" if report.model_printed else ""
    gpu = f" (log: {report.gpu_printed})" if report.gpu_printed else ""
    title = {"vllm": "vLLM", "llama.cpp": "llama.cpp", "ollama": "Ollama"}.get(report.engine, report.engine)
    return (
        f"{title} log vs vramcalc {report.engine_profile}: {report.model_id}{printed} on {report.gpu_id}{gpu}\n"
        f"Era: {report.era}"
    )


def calibration_table(report: CalibrationReport) -> RenderableType:
    """Headline, one row per printed figure (theirs vs ours, diff = ours / theirs - 1), settings,
    assumptions and notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    table.add_column("Figure", no_wrap=True)
    table.add_column("Engine's words")
    table.add_column("Theirs", justify="right", no_wrap=True)
    table.add_column("Ours", justify="right", no_wrap=True)
    table.add_column("Diff", justify="right", no_wrap=True)
    for row in report.rows:
        table.add_row(
            _FIGURE_NAMES.get(row.key, row.key),
            row.label,
            _calibration_value(row, row.theirs),
            _calibration_value(row, row.ours),
            _calibration_diff(row),
        )
    settings = ", ".join(f"{k} {_cell_setting(v)}" for k, v in report.settings.items())
    parts: list[RenderableType] = [Text(calibration_headline(report), style="bold"), table]
    parts.append(Text(f"Settings used: {settings}."))
    parts.append(Text("Assumptions: " + "; ".join(report.assumptions) + ".", style="dim"))
    parts += [Text(f"note: {n}", style="yellow") for n in report.notes]
    return Group(*parts)


def calibration_dict(report: CalibrationReport) -> dict[str, Any]:
    """The JSON document for `calibrate --json`: bytes as integers, diff as a fraction."""
    return {
        "schema_version": SCHEMA_VERSION,
        "log": {
            "engine": report.engine,
            "version": report.version,
            "model": report.model_printed,
            "gpu": report.gpu_printed,
        },
        "era": report.era,
        "engine_profile": report.engine_profile,
        "model": report.model_id,
        "gpu": report.gpu_id,
        "settings": dict(report.settings),
        "figures": [
            {
                "key": r.key,
                "label": r.label,
                "unit": r.unit,
                "theirs": r.theirs,
                "theirs_text": r.theirs_text,
                "ours": r.ours,
                "diff": None if r.diff is None else round(r.diff, 6),
                "print_rounding": None if r.print_rounding is None else round(r.print_rounding, 6),
                "agrees": r.agrees,
                "line": r.line,
            }
            for r in report.rows
        ],
        "assumptions": list(report.assumptions),
        "notes": list(report.notes),
    }


def _option_dict(o: Option | None) -> dict[str, Any] | None:
    if o is None:
        return None
    spd = o.speed
    return {
        "tier": o.tier,
        "gpu": o.gpu.id,
        "count": o.count,
        "layout": o.layout,
        "max_users": o.max_users,
        "fits": o.serves,
        "per_user_tokens_per_s": round(spd.per_user_tokens_per_s, 2) if spd else None,
        "aggregate_tokens_per_s": round(spd.aggregate_tokens_per_s, 1) if spd else None,
        "ttft_s": round(spd.ttft_s, 3) if spd and spd.ttft_s is not None else None,
        "per_gpu_total_bytes": o.per_gpu_total_bytes,
        "usable_bytes": o.usable_bytes,
        "price_usd": o.price_usd,
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
                    {"change": m.change, "max_users": m.max_users, "fits": m.serves, "detail": m.detail}
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
    s = o.speed
    if s is None:
        return "-", "-"
    ttft = "-" if s.ttft_s is None else f"{s.ttft_s:.2f}"
    return f"{s.per_user_tokens_per_s:.1f}", ttft


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
            f"serves {c.max_users}; each GPU needs {gib(c.per_gpu_total_bytes):.2f} GiB "
            f"of {gib(c.usable_bytes):.2f} GiB at {min(q.users, max(1, c.max_users))} users."
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
    for header in ("tier", "option", "max users", "tok/s/user", "TTFT s", "USD", "serves"):
        table.add_column(header, no_wrap=True)
    for name, o in r.tiers:
        if o is None:
            table.add_row(name, "-", "", "", "", "", "")
            continue
        per_user, ttft = _speed_text(o)
        price = f"{o.price_usd:,.0f}" if o.price_usd else "-"
        table.add_row(name, option_name(o), str(o.max_users), per_user, ttft, price, _mark(o.serves))
    parts: list[RenderableType] = [Text("\n".join(recommendation_summary(r, defaulted)), style="bold"), table]
    for i, line in enumerate(recommendation_verdict(r)):
        parts.append(Text(line, style="bold green" if r.choice and i == 0 else ""))
    parts.append(Text("Assumptions: " + "; ".join(r.assumptions) + ".", style="dim"))
    return Group(*parts)


def recommendation_markdown(r: Recommendation, defaulted: bool) -> str:
    lines = [f"**{line}**" for line in recommendation_summary(r, defaulted)] + [""]
    lines += [
        "| tier | option | max users | tok/s/user | TTFT s | USD | serves |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, o in r.tiers:
        if o is None:
            lines.append(f"| {name} | - | | | | | |")
            continue
        per_user, ttft = _speed_text(o)
        price = f"{o.price_usd:,.0f}" if o.price_usd else "-"
        lines.append(
            f"| {name} | {option_name(o)} | {o.max_users} | {per_user} | {ttft} | {price} | {_mark(o.serves)} |"
        )
    lines += ["", *recommendation_verdict(r), ""]
    lines += [f"- {a}" for a in r.assumptions]
    return "\n".join(lines) + "\n"


# --- check: planned deployments against their GPUs and goals -------------------------------------

if TYPE_CHECKING:
    from vramcalc.core.check import CheckResult, Miss
    from vramcalc.core.emit import Command, Launch

_LAYOUT_WORDS = {
    "single": "",
    "tensor-parallel": " tensor-parallel",
    "pipeline-parallel": " pipeline-parallel",
}


def _where(r: CheckResult) -> str:
    p = r.planned
    return f"{p.source}:{p.line}" if p.line else p.source


def check_setup(r: CheckResult) -> str:
    """One line: model, formats, engine, GPUs and load, e.g. 'gemma-2-27b awq-int4, KV bf16, vllm 0.33
    on 1 x rtx-4090 | 2 users x 4,096 tokens | 10% headroom'."""
    p, e = r.planned, r.scenario.estimate
    gpus = f"{p.count} x {p.gpu.id}" + (
        f" replicas ({p.users_per_replica} users each)" if p.layout == "replicas" else _LAYOUT_WORDS[p.layout]
    )
    return (
        f"{e.model.id} {e.weight_format.name}, KV {e.kv_dtype}, {e.plan.engine} {e.plan.version} on {gpus} | "
        f"{p.request.users} users x {p.request.ctx_tokens:,} tokens | {p.request.headroom:.0%} headroom"
    )


def _pct(m: Miss) -> str:
    return "" if m.share is None else f" ({m.share:+.0%})" if m.kind != "speed" else f" (-{m.share:.0%})"


def miss_text(r: CheckResult, m: Miss) -> str:
    """How far one limit is missed, in GiB, tokens/s or seconds and as a share of the limit."""
    engine = r.scenario.estimate.plan.engine
    if m.kind == "memory":
        return (
            f"memory: needs {gib(int(m.value)):.2f} GiB per GPU, the budget is {gib(int(m.limit)):.2f} GiB "
            f"({1 - r.planned.request.headroom:.0%} of {gib(r.usable_bytes):.2f} GiB): "
            f"{gib(int(m.by)):.2f} GiB over{_pct(m)}"
        )
    if m.kind == "kv-pool":
        if m.limit <= 0:
            return f"KV cache: {engine} would not start: nothing is left for its KV pool after weights and buffers"
        return (
            f"KV cache: {r.planned.users_per_replica} users need {gib(int(m.value)):.2f} GiB, {engine}'s pool "
            f"holds {gib(int(m.limit)):.2f} GiB: {gib(int(m.by)):.2f} GiB short{_pct(m)}"
        )
    if m.kind == "start":
        return f"start: {engine} would not start on {r.planned.gpu.id} (its buffers exceed the free memory)"
    if m.kind == "speed":
        return f"speed: {m.value:.1f} tokens/s per user, the goal is {m.limit:g}: {m.by:.1f} tokens/s short{_pct(m)}"
    return f"first token: {m.value:.2f} s for a {r.planned.request.ctx_tokens:,}-token prompt, the goal is {m.limit:g} s: {m.by:.2f} s late{_pct(m)}"


def _pass_lines(r: CheckResult) -> list[str]:
    req = r.planned.request
    spare = r.budget_bytes - r.per_gpu_bytes
    pool = (
        f"; KV {gib(r.kv_bytes):.2f} GiB in {r.scenario.estimate.plan.engine}'s {gib(r.kv_pool_bytes):.2f} GiB pool"
        if r.kv_pool_bytes is not None
        else ""
    )
    lines = [
        f"memory: {gib(r.per_gpu_bytes):.2f} of {gib(r.budget_bytes):.2f} GiB per GPU ({gib(spare):.2f} GiB to spare)"
        f"{pool}; room for up to {r.option.max_users} users"
    ]
    if r.speed is not None:
        goal = f" (goal >= {req.min_tokens_per_s:g})" if req.min_tokens_per_s > 0 else ""
        ttft = "" if r.speed.ttft_s is None else f", first token in {r.speed.ttft_s:.2f} s"
        ttft_goal = f" (goal <= {req.max_ttft_s:g})" if req.max_ttft_s is not None and ttft else ""
        lines.append(f"speed: {r.speed.per_user_tokens_per_s:.1f} tokens/s per user{goal}{ttft}{ttft_goal}")
    return lines


def _serves_text(r: CheckResult) -> str:
    users, room = r.planned.request.users, r.option.max_users
    most = r.most_users or 0
    memory = f"; memory alone has room for {room}" if room != most else ""
    if not most:
        return f"as planned it passes for no number of users{memory}"
    return f"as planned it passes for {most} of {users} users{memory}"


def check_lines(r: CheckResult) -> list[str]:
    """The body of one deployment's report: what it uses, or what it misses and how to make it pass."""
    if r.passed:
        return _pass_lines(r)
    lines = [miss_text(r, m) for m in r.misses]
    lines.append(_serves_text(r))
    if r.fixes:
        lines.append("smallest changes that pass (any one):")
        lines += [f"  {f.change}  ->  {f.detail}" for f in r.fixes]
    else:
        lines.append("no single change of users, ctx, kv_dtype, gpu_count or quant makes it pass")
    return lines


def check_summary(results: list[CheckResult]) -> str:
    failed = sum(not r.passed for r in results)
    files = len({r.planned.source for r in results})
    n = len(results)
    return (
        f"{n} deployment{'s' if n != 1 else ''} in {files} file{'s' if files != 1 else ''}: "
        f"{n - failed} passed, {failed} failed."
    )


def check_text(results: list[CheckResult]) -> str:
    out: list[str] = []
    for r in results:
        out.append(f"{'PASS' if r.passed else 'FAIL'} {r.planned.name} ({_where(r)})")
        out += [f"     {line}" for line in [check_setup(r), *check_lines(r)]]
    out.append(check_summary(results))
    return "\n".join(out) + "\n"


def check_dict(results: list[CheckResult]) -> dict[str, Any]:
    """The JSON document for `check --format json`; bytes are integers."""
    docs = []
    for r in results:
        p, e, req = r.planned, r.scenario.estimate, r.planned.request
        s = r.speed
        docs.append(
            {
                "name": p.name,
                "file": p.source,
                "line": p.line,
                "passed": r.passed,
                "model": e.model.id,
                "weights_format": e.weight_format.name,
                "kv_dtype": e.kv_dtype,
                "engine": f"{e.plan.engine}@{e.plan.version}",
                "gpu": p.gpu.id,
                "gpu_count": p.count,
                "layout": p.layout,
                "users": req.users,
                "users_per_replica": p.users_per_replica,
                "ctx_tokens": req.ctx_tokens,
                "headroom": req.headroom,
                "max_users": r.option.max_users,
                "memory": {
                    "per_gpu_bytes": r.per_gpu_bytes,
                    "budget_bytes": r.budget_bytes,
                    "usable_bytes": r.usable_bytes,
                    "kv_bytes": r.kv_bytes,
                    "kv_pool_bytes": r.kv_pool_bytes,
                },
                "speed": None
                if s is None
                else {
                    "per_user_tokens_per_s": round(s.per_user_tokens_per_s, 2),
                    "ttft_s": None if s.ttft_s is None else round(s.ttft_s, 3),
                },
                "goals": {
                    "min_tokens_per_s": req.min_tokens_per_s or None,
                    "max_ttft_s": req.max_ttft_s,
                },
                "misses": [
                    {
                        "kind": m.kind,
                        "value": m.value if m.unit != "bytes" else int(m.value),
                        "limit": m.limit if m.unit != "bytes" else int(m.limit),
                        "unit": m.unit,
                        "by": m.by if m.unit != "bytes" else int(m.by),
                        "share": None if m.share is None else round(m.share, 4),
                        "text": miss_text(r, m),
                    }
                    for m in r.misses
                ],
                "fixes": [
                    {
                        "change": f.change,
                        "fields": dict(f.fields),
                        "max_users": f.max_users,
                        "detail": f.detail,
                    }
                    for f in r.fixes
                ],
            }
        )
    failed = sum(not r.passed for r in results)
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": failed == 0,
        "summary": {"deployments": len(results), "passed": len(results) - failed, "failed": failed},
        "deployments": docs,
    }


def check_junit(results: list[CheckResult]) -> str:
    """JUnit XML: one test suite per plan file, one test case per deployment; a failure carries
    the misses in its message and the whole report in its text."""
    import xml.etree.ElementTree as ET

    failed = sum(not r.passed for r in results)
    root = ET.Element(
        "testsuites", name="vramcalc check", tests=str(len(results)), failures=str(failed), errors="0"
    )
    for source in dict.fromkeys(r.planned.source for r in results):
        cases = [r for r in results if r.planned.source == source]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=source,
            tests=str(len(cases)),
            failures=str(sum(not r.passed for r in cases)),
            errors="0",
            skipped="0",
        )
        for r in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=source,
                name=r.planned.name,
                file=source,
                line=str(r.planned.line or 1),
            )
            body = "\n".join([check_setup(r), *check_lines(r)])
            if r.passed:
                ET.SubElement(case, "system-out").text = body
            else:
                failure = ET.SubElement(
                    case, "failure", type="capacity", message="; ".join(miss_text(r, m) for m in r.misses)
                )
                failure.text = body
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _gh_data(text: str) -> str:
    """Escape a GitHub workflow-command message (actions/toolkit command.ts escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    """Escape a workflow-command property value (actions/toolkit command.ts escapeProperty)."""
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def check_github(results: list[CheckResult]) -> str:
    """GitHub Actions workflow commands: an ::error annotation at the file and line of each failing
    deployment (its misses and fixes as the message), plain log lines for the ones that pass."""
    out: list[str] = []
    for r in results:
        p = r.planned
        if r.passed:
            out.append(f"PASS {p.name} ({_where(r)})")
            continue
        title = f"vramcalc: {p.name} does not pass"
        message = "\n".join([check_setup(r), *check_lines(r)])
        out.append(
            f"::error file={_gh_property(p.source)},line={p.line or 1},title={_gh_property(title)}::{_gh_data(message)}"
        )
    out.append(check_summary(results))
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def check_markdown(results: list[CheckResult]) -> str:
    """A pull-request comment: a table of every deployment, then each failure with its fixes."""
    failed = [r for r in results if not r.passed]
    n = len(results)
    head = f"all {n} pass" if not failed else f"{len(failed)} of {n} fail"
    lines = [
        f"### vramcalc check: {head}",
        "",
        "| | Deployment | GPUs | Users x ctx | Per GPU GiB | Budget GiB | tok/s/user | TTFT s | Plan |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        p, s = r.planned, r.speed
        mark = "✅" if r.passed else "❌"
        gpus = f"{p.count} x {p.gpu.id}{'' if p.layout == 'single' else ' ' + p.layout}"
        tps = "-" if s is None else f"{s.per_user_tokens_per_s:.1f}"
        ttft = "-" if s is None or s.ttft_s is None else f"{s.ttft_s:.2f}"
        lines.append(
            f"| {mark} | {_md_cell(p.name)} | {gpus} | {p.request.users} x {p.request.ctx_tokens:,} | "
            f"{gib(r.per_gpu_bytes):.2f} | {gib(r.budget_bytes):.2f} | {tps} | {ttft} | `{_where(r)}` |"
        )
    for r in failed:
        lines += ["", f"**{_md_cell(r.planned.name)}** (`{_where(r)}`) does not pass: {check_setup(r)}", ""]
        lines += [f"- {miss_text(r, m)}" for m in r.misses]
        lines.append(f"- {_serves_text(r)}")
        if r.fixes:
            lines += ["", "Smallest changes that pass (any one):", ""]
            lines += [f"- `{f.change}`: {f.detail}" for f in r.fixes]
    lines += ["", check_summary(results)]
    return "\n".join(lines) + "\n"


def _shell_command(c: Command) -> str:
    """Environment, the program, then one flag (with its value) per line, joined with backslashes."""
    import shlex

    lines = [f"{k}={shlex.quote(v)}" for k, v in c.env] + [shlex.join(c.program)]
    rest = list(c.args)
    while rest:
        take = 2 if len(rest) > 1 and not rest[1].startswith("-") else 1
        lines.append(shlex.join(rest[:take]))
        rest = rest[take:]
    return " \\\n  ".join(lines)


def launch_text(launches: list[Launch]) -> str:
    """Shell text for `plan emit`: a comment naming each deployment, its notes, files and commands."""
    out: list[str] = []
    for la in launches:
        p = la.planned
        where = f"{p.source}:{p.line}" if p.line else p.source
        out.append(
            f"# {p.name} ({where}): {la.engine}, {p.request.users} users x {p.request.ctx_tokens:,} tokens"
        )
        out += [f"# {n}" for n in la.notes]
        for name, text in la.files:
            out += [f"cat > {name} <<'EOF'", text.rstrip("\n"), "EOF"]
        out += [_shell_command(c) for c in la.commands]
        out.append("")
    return "\n".join(out)
