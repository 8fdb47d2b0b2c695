"""Formatting shared by every command's renderer: JSON text, GiB figures, yes/NO marks."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from vramcalc.specs import CONTROL_CHARACTERS
from vramcalc.units import gib

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Table

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


# Control characters and line separators (specs.CONTROL_CHARACTERS): what can end a line (and so
# start a workflow command), move a terminal's cursor, or make XML invalid.
_CONTROL = CONTROL_CHARACTERS
# What XML 1.0 allows: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
# Compiled on first use (only JUnit output needs it; compiling its ranges takes ~5 ms).
_NOT_XML = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def plain(text: str) -> str:
    """User text (a name, a file path) on one line: control characters shown as escapes (\\x0a),
    so no name can start a new line of output (a CI log would read it as a workflow command)."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def xml_text(text: str) -> str:
    """Text XML 1.0 can hold: the characters it forbids (most control characters, lone
    surrogates, U+FFFE/U+FFFF) dropped."""
    return re.sub(_NOT_XML, "", text)


def _md_cell(text: str) -> str:
    """Text for a Markdown table cell or line: on one line, `|` escaped (GFM splits cells on it,
    even inside code spans)."""
    return plain(text).replace("|", "\\|")


def md_code(text: str) -> str:
    """A Markdown code span of `text` that no backtick inside it can close early."""
    body = _md_cell(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


class Fit:
    """A table that gives way on a narrow console instead of cutting numbers: first its headers take
    a line per word and its `words` columns wrap, then its `drop` columns go (in that order), with a
    note saying which; every other cell keeps its whole width."""

    def __init__(self, table: Table, words: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> None:
        self.table, self.words, self.drop = table, words, drop

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.measure import Measurement
        from rich.text import Text

        table = self.table
        unbounded = options.update_width(10_000)  # a table's measure is capped at the width given

        def too_wide() -> bool:
            # minimum: the wrapping columns at their longest word, every other at its widest cell
            return Measurement.get(console, unbounded, table).minimum > options.max_width

        for column in table.columns:
            column.no_wrap = str(column.header) not in self.words
            if not column.no_wrap:
                column.overflow = "fold"
        dropped: list[str] = []
        if too_wide():
            for column in table.columns:
                column.header = str(column.header).replace(" ", "\n")
            for name in self.drop:
                if not too_wide():
                    break
                index = next(
                    (i for i, c in enumerate(table.columns) if str(c.header) == name.replace(" ", "\n")), None
                )
                if index is not None:
                    table.columns.pop(index)
                    dropped.append(name)
        yield table
        if dropped:
            shown = ", ".join(dropped)
            yield Text(
                f"(left out for the terminal's width: {shown}; a wider one or --format json shows them)",
                style="dim",
            )


def users_chart(title: str, users: list[int], bars: list[list[int]], lines: list[list[int]]) -> list[str]:
    """A mermaid `xychart-beta` (GitHub renders it in comments and Markdown files): memory per GPU in
    GiB against users as bars, each usable memory as a line; values as given, rounded to 0.01 GiB."""
    if not users:
        return []
    top = max(max(s) for s in bars + lines)
    out = [
        "```mermaid",
        "xychart-beta",
        f'    title "{plain(title).replace(chr(34), chr(39))}"',
        f'    x-axis "users" [{", ".join(str(u) for u in users)}]',
        f'    y-axis "GiB per GPU" 0 --> {gib(top) * 1.1:.0f}',
    ]
    out += [f"    bar [{', '.join(_g(b) for b in s)}]" for s in bars]
    out += [f"    line [{', '.join(_g(b) for b in s)}]" for s in lines]
    return [*out, "```"]
