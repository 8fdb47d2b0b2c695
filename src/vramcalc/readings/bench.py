"""Read a benchmark's output file (vLLM, SGLang, llama-bench, Ollama), recognised by its content."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from vramcalc import files
from vramcalc.errors import SpecError
from vramcalc.readings.common import (
    EXPECTED,
    BenchmarkReading,
    BenchmarkRun,
    check_count,
    invalid_json,
    loads,
    not_a_benchmark,
)
from vramcalc.readings.llamabench import TOOL as LLAMA_BENCH
from vramcalc.readings.llamabench import (
    has_markdown_table,
    is_llamabench_result,
    llamabench_run,
    read_markdown,
)
from vramcalc.readings.ollama import TOOL as OLLAMA
from vramcalc.readings.ollama import has_summary, read_summaries
from vramcalc.readings.serving import (
    has_result_block,
    is_serving_result,
    read_result_blocks,
    serving_run,
    serving_tool,
)

# vLLM's --save-result --save-detailed JSON keeps every request's generated text and inter-token
# latencies: about 25 KB per 1,000-token request, so 64 MiB holds ~2,500 requests. The size is
# checked before reading and at most this much is ever read; the arrays are parsed, never kept.
MAX_BENCHMARK_BYTES = 32 * 2**20


def read_benchmark(path: Path) -> BenchmarkReading:
    """The runs a benchmark output file holds, or a one-line SpecError naming the file and the fix."""
    data = files.read_bytes(path, MAX_BENCHMARK_BYTES, "benchmark output", SpecError)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{path}: UTF-16 text (PowerShell's > writes it); save the output as UTF-8")
    if b"\x00" in data:
        raise SpecError(f"{path}: binary (it holds NUL bytes); not a benchmark output: {EXPECTED}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (bad byte at offset {exc.start:,}); {EXPECTED}") from None
    return parse_benchmark(text, str(path))


def parse_benchmark(text: str, source: str) -> BenchmarkReading:
    """Recognise the format from the text itself, never the file name: JSON (one value, or one object
    a line), else the printed result block, the llama-bench table or the Ollama summary."""
    body = text.strip()
    if not body:
        raise SpecError(f"{source}: the file is empty; {EXPECTED}")
    if body[0] in "[{":
        return _from_json(text, source)
    # Split on \n only: str.splitlines also splits on \x1c, \x85, \u2028 ...
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    tool, runs = _from_text(lines, source)
    if not runs:  # a header or summary line with nothing after it
        raise not_a_benchmark(source)
    return BenchmarkReading(tool, source, tuple(runs))


def _from_text(lines: list[str], source: str) -> tuple[str, list[BenchmarkRun]]:
    if has_result_block(lines):
        return read_result_blocks(lines, source)
    if has_markdown_table(lines):
        return LLAMA_BENCH, read_markdown(lines, source)
    if has_summary(lines):
        return OLLAMA, read_summaries(lines, source)
    raise not_a_benchmark(source)


def _tool_of(d: Mapping[str, object]) -> str | None:
    if is_serving_result(d):
        return serving_tool(d)
    return LLAMA_BENCH if is_llamabench_result(d) else None


def _run(tool: str, d: Mapping[str, object], where: str) -> BenchmarkRun:
    return llamabench_run(d, where) if tool == LLAMA_BENCH else serving_run(d, where)


def _from_json(text: str, source: str) -> BenchmarkReading:
    try:
        value = loads(text, source)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            return _from_json_lines(text, source)
        raise invalid_json(f"{source}:{exc.lineno}", exc, text) from None
    if isinstance(value, dict):
        tool = _tool_of(value)
        if tool is None:
            raise not_a_benchmark(source)
        return BenchmarkReading(tool, source, (_run(tool, value, source),))
    if not isinstance(value, list) or not value:
        raise not_a_benchmark(source)
    # llama-bench -o json: an array of result objects.
    if not isinstance(value[0], dict) or _tool_of(value[0]) != LLAMA_BENCH:
        raise not_a_benchmark(source)
    check_count(len(value), source)
    runs = []
    for i, item in enumerate(value, 1):
        where = f"{source}: row {i}"
        if not isinstance(item, dict) or not is_llamabench_result(item):
            raise SpecError(f"{where} is not a llama-bench result (no avg_ts, n_prompt, n_gen); {EXPECTED}")
        runs.append(llamabench_run(item, where))
    return BenchmarkReading(LLAMA_BENCH, source, tuple(runs))


def _from_json_lines(text: str, source: str) -> BenchmarkReading:
    """SGLang --output-file and vLLM --append-result (a run a line), llama-bench -o jsonl (a test a line)."""
    tool: str | None = None
    runs = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            value = loads(line, where)
        except json.JSONDecodeError as exc:
            raise invalid_json(where, exc, line) from None
        this = _tool_of(value) if isinstance(value, dict) else None
        if this is None or not isinstance(value, dict):
            raise not_a_benchmark(where)
        if tool is not None and this != tool:
            raise SpecError(
                f"{where}: a {this} result after {tool} results; keep one tool's results per file"
            )
        tool = this
        runs.append(_run(this, value, where))
        check_count(len(runs), source)
    if tool is None:  # pragma: no cover - "Extra data" means at least two values
        raise not_a_benchmark(source)
    return BenchmarkReading(tool, source, tuple(runs))
