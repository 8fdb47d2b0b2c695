"""Saved readings of a running deployment, recognised from their text: /metrics pages (vLLM, SGLang,
llama-server) and nvidia-smi outputs; a directory holds a series of them, `-` is standard input."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from vramcalc import files
from vramcalc.errors import SpecError
from vramcalc.readings.metrics import MetricsSnapshot, looks_like_metrics, parse_metrics
from vramcalc.readings.smi import MAX_SMI_BYTES, SmiReading, parse_smi

# Files a directory of snapshots contributes: saved pages and outputs (not notes or YAML).
SNAPSHOT_SUFFIXES = frozenset({"", ".txt", ".prom", ".metrics", ".csv", ".log", ".out"})


def read_snapshots(args: list[str], stdin: TextIO) -> tuple[list[MetricsSnapshot], list[SmiReading]]:
    """The /metrics pages and the nvidia-smi readings the arguments name, in order."""
    paths: list[str] = []
    for arg in args:
        p = Path(arg)
        if arg != "-" and p.is_dir():
            paths += sorted(
                str(q) for q in p.iterdir() if q.is_file() and q.suffix.lower() in SNAPSHOT_SUFFIXES
            )
        else:
            paths.append(arg)
    pages: list[MetricsSnapshot] = []
    readings: list[SmiReading] = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        text = stdin.read(MAX_SMI_BYTES) if path == "-" else _text(Path(path))
        if not text.strip():
            raise SpecError(f"{source}: the file is empty; expected a /metrics page or nvidia-smi output")
        if looks_like_metrics(text) or text.lstrip().startswith("<"):
            pages.append(parse_metrics(text, source))
            continue
        try:
            readings.append(parse_smi(text, source))
        except SpecError:
            raise SpecError(
                f"{source}: neither a /metrics page of vLLM, SGLang or llama-server nor nvidia-smi output"
            ) from None
    return pages, readings


def _text(path: Path) -> str:
    data = files.read_bytes(path, MAX_SMI_BYTES, "reading", SpecError)
    if b"\x00" in data:
        raise SpecError(f"{path}: binary (it holds NUL bytes); expected a /metrics page or nvidia-smi output")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (bad byte at offset {exc.start:,})") from None
