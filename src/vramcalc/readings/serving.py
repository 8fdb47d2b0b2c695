"""Read vLLM `bench serve` and SGLang `bench_serving` results: their JSON/JSONL files and printed result block."""

from __future__ import annotations

from collections.abc import Mapping

from vramcalc.errors import SpecError
from vramcalc.limits import MAX_CTX_TOKENS, MAX_USERS
from vramcalc.readings.common import (
    BenchmarkRun,
    Fields,
    check_count,
    ms_to_s,
    per_request,
    serving_label,
    to_number,
)

VLLM = "vllm bench serve"
SGLANG = "sglang bench_serving"

# Source: vllm/benchmarks/serve.py main_async (result_json: date, endpoint_type, backend, label,
# model_id, tokenizer_id, num_prompts, request_rate ("inf" when unlimited), burstiness,
# max_concurrency, then benchmark()'s result: duration, completed, failed, total_input_tokens,
# total_output_tokens, request_throughput, output_throughput, ..., mean/median/std/pN_{ttft,tpot,itl}_ms;
# the per-request input_lens, output_lens, ttfts, itls, generated_texts, errors only with
# --save-detailed), and benchmarks/benchmark_serving.py main (the same keys, before `vllm bench`).
# Source: python/sglang/bench_serving.py benchmark() (result: backend, dataset_name, request_rate
# (a float, Infinity when unlimited), max_concurrency, sharegpt_output_len, random_input_len,
# random_output_len, random_range_ratio, duration, completed, total_input_tokens,
# total_output_tokens, total_output_tokens_retokenized, request_throughput, input_throughput,
# output_throughput, ..., median_{ttft,tpot,itl}_ms, concurrency (measured, not the limit),
# accept_length), one json.dumps line appended per run to --output-file.
_SGLANG_KEYS = (
    "total_output_tokens_retokenized",
    "dataset_name",
    "sharegpt_output_len",
    "random_range_ratio",
)


def is_serving_result(d: Mapping[str, object]) -> bool:
    return "request_throughput" in d and "completed" in d


def serving_tool(d: Mapping[str, object]) -> str:
    return SGLANG if any(k in d for k in _SGLANG_KEYS) else VLLM


def serving_run(d: Mapping[str, object], where: str, lines: Mapping[str, str] | None = None) -> BenchmarkRun:
    """One run from the result's keys; per-request arrays (input_lens, itls, ...) are not looked at."""
    f = Fields(d, where, lines)
    completed = f.count(
        "completed", minimum=1, why=" (every request failed: fix the server or the flags, rerun)"
    )
    if completed is None:
        raise f.bad("completed", "a whole number >= 1")
    concurrency = f.count("max_concurrency", minimum=1, maximum=MAX_USERS)
    rate = f.rate("request_rate")
    prompt = per_request(f, "total_input_tokens", completed, MAX_CTX_TOKENS)
    output = per_request(f, "total_output_tokens", completed, MAX_CTX_TOKENS)
    return BenchmarkRun(
        label=serving_label(concurrency, rate, prompt, output),
        model=f.text("model_id"),
        concurrency=concurrency,
        request_rate_per_s=rate,
        prompt_tokens=prompt,
        output_tokens=output,
        completed=completed,
        output_tokens_per_s=f.number("output_throughput"),
        request_per_s=f.number("request_throughput"),
        median_ttft_s=ms_to_s(f.number("median_ttft_ms")),
        median_tpot_s=ms_to_s(f.number("median_tpot_ms")),
        median_itl_s=ms_to_s(f.number("median_itl_ms")),
    )


# ---------------------------------------------------------------------------------------------
# The printed result block

# Source: vllm/benchmarks/serve.py benchmark() and sglang bench_serving.py benchmark(): the block
# opens with "{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="), prints each figure
# as "{:<40} {:<10}".format(label, value) and closes with "=" * 50.
_TITLE = " Serving Benchmark Result "
_LABELS = {
    "Backend:": "backend",  # SGLang only
    "Successful requests:": "completed",
    "Maximum request concurrency:": "max_concurrency",  # vLLM, printed only when set
    "Max request concurrency:": "max_concurrency",  # SGLang: "not set" when unset
    "Request rate configured (RPS):": "request_rate",  # vLLM, printed only when not inf
    "Traffic request rate:": "request_rate",  # SGLang: "inf" when unlimited
    "Total input tokens:": "total_input_tokens",
    "Total generated tokens:": "total_output_tokens",
    "Request throughput (req/s):": "request_throughput",
    "Output token throughput (tok/s):": "output_throughput",
    "Median TTFT (ms):": "median_ttft_ms",
    "Median TPOT (ms):": "median_tpot_ms",
    "Median ITL (ms):": "median_itl_ms",
}
_SGLANG_LABELS = ("Backend:", "Max request concurrency:", "Traffic request rate:")


def _is_title(line: str) -> bool:
    return _TITLE in line and line.strip().startswith("=")


def has_result_block(lines: list[str]) -> bool:
    return any(_is_title(line) for line in lines)


def _namespace_model(line: str) -> str | None:
    """model='...' from the argparse Namespace both tools print first (vLLM: Namespace(...),
    SGLang: benchmark_args=Namespace(...)); None when absent or model=None."""
    for opener in (" model='", "(model='"):
        at = line.find(opener)
        if at >= 0:
            start = at + len(opener)
            end = line.find("'", start)
            return (line[start:end] or None) if end > start else None
    return None


def _is_rule(line: str) -> bool:
    """The closing "=" * 50 line."""
    s = line.strip()
    return len(s) >= 10 and s.strip("=") == ""


def read_result_blocks(lines: list[str], source: str) -> tuple[str, list[BenchmarkRun]]:
    """(tool, runs): one run per result block, in order; labels matched exactly, values as printed."""
    runs: list[BenchmarkRun] = []
    tools: list[str] = []
    model: str | None = None
    i = 0
    while i < len(lines):
        if "Namespace(" in lines[i]:
            model = _namespace_model(lines[i])
        if not _is_title(lines[i]):
            i += 1
            continue
        start = i + 1  # the title's line number
        values: dict[str, object] = {}
        where: dict[str, str] = {}
        sglang = False
        i += 1
        while i < len(lines) and not _is_rule(lines[i]) and not _is_title(lines[i]):
            label, colon, value = lines[i].partition(":")
            label = label.strip() + colon
            key = _LABELS.get(label)
            if key is not None and key not in values:
                text = value.strip()
                values[key] = None if text == "not set" else text if key == "backend" else to_number(text)
                where[key] = f"{source}:{i + 1}"
                sglang = sglang or label in _SGLANG_LABELS
            i += 1
        if "completed" not in values:
            raise SpecError(
                f"{source}:{start}: the result block has no 'Successful requests:' line; paste the whole "
                "block, from the ==== Serving Benchmark Result ==== line to the closing ===="
            )
        if model is not None:
            values["model_id"] = model
        runs.append(serving_run(values, f"{source}:{start}", where))
        check_count(len(runs), source)
        tools.append(SGLANG if sglang else VLLM)
    if len(set(tools)) > 1:
        raise SpecError(
            f"{source}: holds both vLLM and SGLang result blocks; keep one tool's results per file"
        )
    return tools[0], runs
