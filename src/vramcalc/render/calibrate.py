"""Show a CalibrationReport for `calibrate`: an engine's startup log against our estimate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramcalc.core.estimate import SCHEMA_VERSION
from vramcalc.render.common import Fit

if TYPE_CHECKING:
    from rich.console import RenderableType

    from vramcalc.core.benchmark import RunCheck
    from vramcalc.core.calibrate import CalibrationReport, CalibrationRow


# Our figure keys in words, for the first column of the calibration table.
_FIGURE_NAMES = {
    "cuda_total_bytes": "GPU total",
    "requested_bytes": "budget (util x total)",
    "weights_bytes_per_gpu": "weights",
    "activation_peak_bytes": "activation peak",
    "non_torch_bytes": "non-torch",
    "cuda_graph_bytes": "CUDA graphs",
    "kv_budget_bytes": "KV plan before warmup",
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
    parts: list[RenderableType] = [
        Text(calibration_headline(report), style="bold"),
        Fit(table, words=("Figure", "Engine's words"), drop=("Engine's words",)),
    ]
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


def bench_dict(tool: str, path: str, checks: tuple[RunCheck, ...]) -> dict[str, Any]:
    """`bench --json`: every run, its load as assessed, and each figure theirs vs ours."""
    runs = []
    for c in checks:
        d = c.deployment
        runs.append(
            {
                "run": c.run,
                "users": d.users if d else None,
                "prompt_tokens": d.prompt_tokens if d else None,
                "output_tokens": d.output if d else None,
                "arrival": d.arrival if d else None,
                "figures": [
                    {
                        "figure": f.figure,
                        "unit": f.unit,
                        "measured": f.measured,
                        "ours": round(f.ours, 6),
                        "rel_error": round(f.rel_error, 4),
                    }
                    for f in c.figures
                ],
                "note": c.note or None,
            }
        )
    return {"schema_version": SCHEMA_VERSION, "tool": tool, "file": path, "runs": runs}


_BENCH_FIGURES = {
    "decode_tokens_per_s": "decode, one sequence",
    "prompt_tokens_per_s": "prompt processing",
    "median_tpot_s": "median TPOT",
    "median_itl_s": "median ITL",
    "median_ttft_s": "median TTFT",
    "output_tokens_per_s": "output throughput",
    "request_per_s": "request throughput",
}


def bench_table(tool: str, path: str, checks: tuple[RunCheck, ...], saved: str = "") -> RenderableType:
    """Run, figure, measured, ours, error; notes for runs not compared; what --save wrote."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{tool}: {path} against vramcalc's speed model", title_justify="left")
    for col in ("run", "load", "figure", "measured", "ours", "error"):
        table.add_column(col, justify="right" if col in ("measured", "ours", "error") else "left")
    notes: list[str] = []
    for c in checks:
        d = c.deployment
        load = "" if d is None else f"{d.users} x {d.prompt_tokens:,}/{d.output:,} ({d.arrival})"
        for f in c.figures:
            unit = " s" if f.unit == "s" else ""
            table.add_row(
                Text(c.run),
                load,
                _BENCH_FIGURES.get(f.figure, f.figure),
                f"{f.measured:,.4g}{unit}",
                f"{f.ours:,.4g}{unit}",
                f"{f.rel_error:+.1%}",
            )
        if c.note:
            notes.append(f"{c.run}: {c.note}")
    if saved:
        notes.append(saved)
    return Group(table, *(Text(n) for n in notes))
