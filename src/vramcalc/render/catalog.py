"""Show catalog specs for `models` and `gpus`: summaries, details and rich tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from vramcalc.core.kv import kv_bytes_per_token
from vramcalc.core.tensors import param_counts
from vramcalc.render.common import Fit
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import fmt_count, gib

if TYPE_CHECKING:
    from rich.console import RenderableType


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
    return Fit(table, words=("id", "attention"), drop=("attention", "active"))


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
    return Fit(table, words=("id", "tier"), drop=("tier",))


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
