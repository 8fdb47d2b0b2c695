"""Shared parts of the benchmark readers: the BenchmarkReading/BenchmarkRun values and the field checks."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from vramcalc import files
from vramcalc.errors import SpecError
from vramcalc.limits import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS, MAX_LOG_LINE_CHARS

# The formats read_benchmark recognises, in the words of every "not a benchmark output" error.
EXPECTED = (
    "expected vLLM bench serve --save-result JSON, SGLang bench_serving JSONL, "
    "llama-bench -o json|jsonl|md or ollama --verbose text"
)
# A model name, path, GPU name or build is at most this long (real ones are under 200 characters;
# llama-bench's gpu_info joins every GPU's name with ", ").
MAX_TEXT_CHARS = 1_024
# Results one file may hold: a llama-bench sweep or an SGLang/vLLM request-rate sweep has tens to
# thousands; the bound keeps a 64 MiB file of one-line "results" from becoming millions of values.
MAX_RUNS = 100_000
# A number printed as text is at most this long ("1234567.89", "-0.00", "inf"): a longer token is not one.
_MAX_NUMBER_CHARS = 40


@dataclass(frozen=True, slots=True)
class BenchmarkRun:
    """One result: a vLLM/SGLang run (one line or file), a llama-bench row, an Ollama reply.

    Every figure is None when the tool does not print it. Times are seconds, rates per second.
    """

    label: str  # "pp512", "tg128 @ d4096", "c16 in1024 out128", "#1 in26 out290"
    model: str | None = None  # as printed: vLLM model_id, llama-bench model_filename, a Namespace model=
    concurrency: int | None = None  # max_concurrency (closed loop); 1 for llama-bench and Ollama
    request_rate_per_s: float | None = None  # Poisson/gamma arrival rate; None when 'inf' (all at once)
    # per request: round(total_input_tokens / completed) for vLLM and SGLang; llama-bench n_prompt
    prompt_tokens: int | None = None
    # per request: round(total_output_tokens / completed); llama-bench n_gen
    output_tokens: int | None = None
    completed: int | None = None  # requests that succeeded (1 for an Ollama reply; None for llama-bench)
    output_tokens_per_s: float | None = None  # all requests together (vLLM/SGLang output_throughput)
    request_per_s: float | None = None  # completed requests per second (request_throughput)
    median_ttft_s: float | None = None  # time to first token (the tools print ms)
    median_tpot_s: float | None = None  # time per output token after the first
    median_itl_s: float | None = None  # inter-token latency
    decode_tokens_per_s: float | None = None  # one sequence: llama-bench tg avg_ts, Ollama eval rate
    prompt_tokens_per_s: float | None = None  # llama-bench pp avg_ts, Ollama prompt eval rate
    depth_tokens: int | None = None  # llama-bench n_depth: tokens already in the KV cache ("@ d4096")
    gpu_name: str | None = None  # llama-bench gpu_info
    quant: str | None = None  # vramcalc's name for the weights' type: "Q4_K - Medium" -> "Q4_K_M"
    model_type: str | None = None  # llama-bench model_type as printed: "llama 8B Q4_K - Medium"
    flash_attn: bool | None = None  # None: not printed, or llama-bench's -1 (auto)
    n_gpu_layers: int | None = None  # as printed (-1: llama-bench's default, every layer)
    n_batch: int | None = None
    n_ubatch: int | None = None
    build: str | None = None  # llama-bench "build_commit (build_number)", e.g. "8cf427ff (5163)"


@dataclass(frozen=True, slots=True)
class BenchmarkReading:
    """What a benchmark output file says: which tool wrote it and one BenchmarkRun per result."""

    tool: str  # "vllm bench serve" | "sglang bench_serving" | "llama-bench" | "ollama --verbose"
    path: str  # the file it came from (for messages)
    runs: tuple[BenchmarkRun, ...]


def not_a_benchmark(source: str) -> SpecError:
    return SpecError(f"{source}: not a benchmark output: {EXPECTED}")


def check_count(n_runs: int, source: str) -> None:
    """Refuse a file once it holds more than MAX_RUNS results."""
    if n_runs > MAX_RUNS:
        raise SpecError(f"{source}: more than {MAX_RUNS:,} results; split the file")


# ---------------------------------------------------------------------------------------------
# JSON


class _BigInt(ValueError):
    """A JSON integer with more digits than any real benchmark figure."""


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _BigInt(f"an integer with {digits:,} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(text)


def loads(text: str, where: str) -> object:
    """JSON in which NaN and Infinity stay floats (SGLang writes request_rate Infinity; a NaN figure
    is refused later, by the field that holds it); integers of at most 20 digits.

    Raises json.JSONDecodeError for text that is not JSON (the caller words it: one object, or JSON
    lines); SpecError for a huge integer or nesting too deep to parse.
    """
    try:
        return json.loads(text, parse_int=_json_int, parse_constant=float)
    except _BigInt as exc:
        raise SpecError(f"{where}: {exc}; not a benchmark output") from None
    except RecursionError:
        raise SpecError(
            f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels; not a benchmark output"
        ) from None


def invalid_json(where: str, exc: json.JSONDecodeError, text: str) -> SpecError:
    """'WHERE: not valid JSON (...)', saying so when the text stops mid-value (a run cut short):
    the error is at its very end, or a string never closes."""
    cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
    return SpecError(f"{where}: not valid JSON ({exc.msg}{' - cut short?' if cut else ''}); {EXPECTED}")


# ---------------------------------------------------------------------------------------------
# Text


def to_number(text: str) -> object:
    """'26' -> 26, '45.67' -> 45.67, 'nan' -> nan (refused later, by name); anything else stays text."""
    t = text.strip()
    if 0 < len(t) <= _MAX_NUMBER_CHARS and "_" not in t:
        body = t[1:] if t[:1] in "+-" else t
        if body.isascii() and body.isdigit():
            return int(t)
        try:
            return float(t)
        except ValueError:
            pass
    return t


def cells(line: str) -> list[str] | None:
    """The cells of a markdown table row ('| a | b |' -> ['a', 'b']), or None for any other line
    (also one longer than any table row: llama-bench's are a few hundred characters)."""
    s = line.strip()
    if not 2 <= len(s) <= MAX_LOG_LINE_CHARS or not s.startswith("|") or not s.endswith("|"):
        return None
    return [c.strip() for c in s[1:-1].split("|")]


# ---------------------------------------------------------------------------------------------
# Checks


class Fields:
    """One result's values (a JSON object, a printed block, a table row), checked one key at a time.

    Every error starts with `where` (FILE, FILE:LINE, FILE: row N), or with FILE:LINE of the key
    itself when `lines` knows it, and names the key as the tool writes it.
    """

    def __init__(
        self, values: Mapping[str, object], where: str, lines: Mapping[str, str] | None = None
    ) -> None:
        self.values = values
        self.where = where
        self.lines = lines or {}

    def at(self, key: str) -> str:
        return self.lines.get(key, self.where)

    def bad(self, key: str, want: str) -> SpecError:
        return SpecError(f"{self.at(key)}: {key} must be {want}, got {files.short(self.values.get(key), 80)}")

    def get(self, key: str) -> object:
        return self.values.get(key)

    def number(self, key: str) -> float | None:
        """A finite number >= 0; None when absent or null. (-0.0, which SGLang prints, becomes 0.0.)"""
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.bad(key, "a finite number >= 0")
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise self.bad(key, "a finite number >= 0")
        return number + 0.0

    def count(self, key: str, minimum: int = 0, maximum: int | None = None, why: str = "") -> int | None:
        """A whole number >= `minimum` (and <= `maximum`); None when absent or null."""
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.bad(key, f"a whole number >= {minimum}{why}")
        if maximum is not None and value > maximum:
            raise SpecError(
                f"{self.at(key)}: {key} is {value:,}, more than {maximum:,}; not a real benchmark figure"
            )
        return value

    def rate(self, key: str) -> float | None:
        """A request rate > 0 per second; None for 'inf' (vLLM's string) or Infinity (SGLang's float)."""
        value = self.values.get(key)
        if value is None or value == "inf" or value == math.inf:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.bad(key, "a finite number > 0 or inf")
        if not math.isfinite(value) or value <= 0:
            raise self.bad(key, "a finite number > 0 or inf")
        return float(value)

    def text(self, key: str) -> str | None:
        """A name as printed (None when absent or empty); no control characters, at most 1,024 characters."""
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.bad(key, "text")
        if len(value) > MAX_TEXT_CHARS:
            raise SpecError(
                f"{self.at(key)}: {key} is {len(value):,} characters long (at most {MAX_TEXT_CHARS:,}); "
                f"not a name: {files.short(value, 80)}"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise SpecError(f"{self.at(key)}: {key} holds control characters: {files.short(value, 80)}")
        return value

    def flag(self, key: str) -> bool | None:
        """llama-bench flash_attn: true/false (older builds), 1/0, or -1 for auto (None)."""
        value = self.values.get(key)
        if value is None or value == -1 or value == "auto":
            return None
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return value == 1
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
            return value.lower() in ("true", "on")
        raise self.bad(key, "0, 1, -1 (auto), true or false")


def per_request(fields: Fields, total_key: str, completed: int, maximum: int) -> int | None:
    """Mean tokens per request: round(total / completed), refused above `maximum` (a context bound)."""
    total = fields.count(total_key)
    if total is None:
        return None
    mean = round(total / completed)
    if mean > maximum:
        raise SpecError(
            f"{fields.at(total_key)}: {total_key} / completed = {total:,} / {completed:,} = {mean:,} tokens "
            f"per request, more than {maximum:,}; not a real benchmark"
        )
    return mean


def ms_to_s(ms: float | None) -> float | None:
    # Source: vllm/benchmarks/serve.py calculate_metrics and sglang bench_serving.py calculate_metrics
    # store every latency as seconds * 1000 under *_ms keys.
    return None if ms is None else ms / 1000


def serving_label(concurrency: int | None, rate: float | None, prompt: int | None, output: int | None) -> str:
    """'c16 in1024 out128', 'rate4 in1024 out128', 'burst in1024 out128' (no limit at all)."""
    parts = []
    if concurrency is not None:
        parts.append(f"c{concurrency}")
    if rate is not None:
        parts.append(f"rate{rate:g}")
    if not parts:
        parts.append("burst")
    if prompt is not None:
        parts.append(f"in{prompt}")
    if output is not None:
        parts.append(f"out{output}")
    return " ".join(parts)
