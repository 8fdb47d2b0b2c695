"""Formatting shared by every command's renderer: JSON text, GiB figures, yes/NO marks."""

from __future__ import annotations

import json

from vramcalc.units import gib

BAR_WIDTH = 24


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _g(n_bytes: int) -> str:
    return f"{gib(n_bytes):.2f}"


def _mark(fits: bool) -> str:
    return "yes" if fits else "NO"


def _figure_text(value: int | float | bool, unit: str) -> str:
    if unit == "bytes" and isinstance(value, int):
        return f"{value / 2**30:,.2f} GiB"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if unit == "x":
        return f"{value:g}x"
    return f"{value:,} {unit}".strip()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")
