"""Read the timing summary `ollama run MODEL --verbose` prints after each reply."""

from __future__ import annotations

from vramcalc.limits import MAX_CTX_TOKENS
from vramcalc.readings.common import BenchmarkRun, Fields, check_count, to_number

TOOL = "ollama --verbose"

# Source: ollama api/types.go Metrics.Summary (and cmd/tui/chat/render.go metricsSummaryLines):
# each line is printed only when its figure is > 0, in this order, label padded to 22 columns:
#   "total duration:       %v", "load duration:        %v", "prompt eval count:    %d token(s)",
#   "prompt eval duration: %s", "prompt eval rate:     %.2f tokens/s", "eval count:           %d token(s)",
#   "eval duration:        %s", "eval rate:            %.2f tokens/s"
# The durations are Go time.Duration strings ("1.234s", "56.7ms"); they are not read.
_ORDER = (
    "total duration",
    "load duration",
    "prompt eval count",
    "prompt eval duration",
    "prompt eval rate",
    "eval count",
    "eval duration",
    "eval rate",
)
_INDEX = {label: i for i, label in enumerate(_ORDER)}
_FIGURES = ("prompt eval count", "prompt eval rate", "eval count", "eval rate")


def _summary_line(line: str) -> tuple[str, str] | None:
    """('eval rate', '45.67 tokens/s') for a summary line, else None."""
    label, colon, value = line.strip().partition(":")
    return (label, value.strip()) if colon and label in _INDEX else None


def has_summary(lines: list[str]) -> bool:
    return any((m := _summary_line(line)) is not None and m[0] in _FIGURES for line in lines)


def read_summaries(lines: list[str], source: str) -> list[BenchmarkRun]:
    """One run per summary: a label at or before the previous one's place in the order starts the next
    (several replies in one file); the reply text between summaries is skipped."""
    blocks: list[tuple[dict[str, object], dict[str, str]]] = []
    last = len(_ORDER)
    for n, line in enumerate(lines, 1):
        found = _summary_line(line)
        if found is None:
            continue
        label, value = found
        if _INDEX[label] <= last:
            blocks.append(({}, {}))
            check_count(len(blocks), source)
        last = _INDEX[label]
        values, where = blocks[-1]
        if label in _FIGURES:
            # "26 token(s)", "1234.56 tokens/s": the number is the first word.
            words = value.split(maxsplit=1)
            values[label] = to_number(words[0]) if words else value
            where[label] = f"{source}:{n}"
    runs = []
    for i, (values, where) in enumerate(blocks, 1):
        f = Fields(values, f"{source}", where)
        prompt = f.count("prompt eval count", maximum=MAX_CTX_TOKENS)
        output = f.count("eval count", maximum=MAX_CTX_TOKENS)
        label = " ".join(
            [f"#{i}"]
            + ([f"in{prompt}"] if prompt is not None else [])
            + ([f"out{output}"] if output is not None else [])
        )
        runs.append(
            BenchmarkRun(
                label=label,
                concurrency=1,
                prompt_tokens=prompt,
                output_tokens=output,
                completed=1,
                decode_tokens_per_s=f.number("eval rate"),
                prompt_tokens_per_s=f.number("prompt eval rate"),
            )
        )
    return runs
