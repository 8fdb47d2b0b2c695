"""vramcalc.readings.read_benchmark: every format's figures by hand, detection by content, every refusal.

The fixtures in tests/fixtures/bench/ are laid out as the tools write them (README.md there names
the file and function of each): vllm/benchmarks/serve.py main_async + benchmark() and
benchmarks/benchmark_serving.py main; sglang python/sglang/bench_serving.py benchmark();
llama.cpp tools/llama-bench/llama-bench.cpp test::get_fields, json_printer, jsonl_printer,
markdown_printer; ollama api/types.go Metrics.Summary.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from vramcalc.errors import SpecError
from vramcalc.readings import MAX_BENCHMARK_BYTES, BenchmarkRun, parse_benchmark, read_benchmark

FIXTURES = ROOT / "tests" / "fixtures" / "bench"
NOT_A_BENCHMARK = (
    r"not a benchmark output: expected vLLM bench serve --save-result JSON, SGLang bench_serving JSONL, "
    r"llama-bench -o json\|jsonl\|md or ollama --verbose text"
)


def _fixture(name: str) -> dict[str, object]:
    data = json.loads((FIXTURES / name).read_text())
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _json(tmp_path: Path, value: object, name: str = "result.json") -> Path:
    return _write(tmp_path, name, json.dumps(value))


def _refused(path: Path, match: str) -> str:
    """The one-line SpecError reading `path` gives, checked against `match`."""
    with pytest.raises(SpecError, match=match) as info:
        read_benchmark(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def _vllm(**changes: object) -> dict[str, object]:
    """The vLLM fixture with some keys changed (None removes nothing: it writes null)."""
    return {**_fixture("vllm-bench-serve-c4.json"), **changes}


# --- vLLM ---------------------------------------------------------------------------------------


def test_vllm_bench_serve_save_result() -> None:
    """4 requests at --max-concurrency 4, request_rate "inf", duration 2.56 s:
    prompt tokens per request = total_input_tokens / completed = 4,096 / 4 = 1,024
    (input_lens 1,000 + 1,024 + 1,100 + 972); output = 512 / 4 = 128 (128 + 128 + 120 + 136);
    output_throughput = 512 / 2.56 = 200 tok/s; request_throughput = 4 / 2.56 = 1.5625 req/s;
    median_ttft_ms 152.5 -> 0.1525 s, median_tpot_ms 14.75 -> 0.01475 s, median_itl_ms 14.5 -> 0.0145 s."""
    reading = read_benchmark(FIXTURES / "vllm-bench-serve-c4.json")
    assert reading.tool == "vllm bench serve"
    assert reading.path == str(FIXTURES / "vllm-bench-serve-c4.json")
    (run,) = reading.runs
    figures = (
        run.output_tokens_per_s,
        run.request_per_s,
        run.median_ttft_s,
        run.median_tpot_s,
        run.median_itl_s,
    )
    assert figures == pytest.approx((200.0, 1.5625, 0.1525, 0.01475, 0.0145))
    assert run == BenchmarkRun(
        label="c4 in1024 out128",
        model="meta-llama/Llama-3.1-8B-Instruct",
        concurrency=4,
        request_rate_per_s=None,
        prompt_tokens=1024,
        output_tokens=128,
        completed=4,
        output_tokens_per_s=run.output_tokens_per_s,
        request_per_s=run.request_per_s,
        median_ttft_s=run.median_ttft_s,
        median_tpot_s=run.median_tpot_s,
        median_itl_s=run.median_itl_s,
    )  # and every other field None


def test_vllm_benchmark_serving_legacy() -> None:
    """benchmarks/benchmark_serving.py: request_rate 4.0, max_concurrency null, 3 requests in 3.2 s:
    prompt = 1,536 / 3 = 512, output = 768 / 3 = 256; 768 / 3.2 = 240 tok/s; 3 / 3.2 = 0.9375 req/s;
    median TTFT 84.2 ms = 0.0842 s. Its stray "request_goodput:" key is ignored."""
    reading = read_benchmark(FIXTURES / "vllm-benchmark-serving-legacy.json")
    assert reading.tool == "vllm bench serve"
    (run,) = reading.runs
    assert run.label == "rate4 in512 out256"
    assert run.model == "Qwen/Qwen2.5-7B-Instruct"
    assert (run.concurrency, run.request_rate_per_s, run.completed) == (None, 4.0, 3)
    assert (run.prompt_tokens, run.output_tokens) == (512, 256)
    assert run.output_tokens_per_s == pytest.approx(240.0)
    assert run.request_per_s == pytest.approx(0.9375)
    assert run.median_ttft_s == pytest.approx(0.0842)
    assert run.median_tpot_s == pytest.approx(0.0115)
    assert run.median_itl_s == pytest.approx(0.0114)
    assert run.decode_tokens_per_s is None and run.gpu_name is None and run.build is None


def test_vllm_append_result_is_one_run_a_line(tmp_path: Path) -> None:
    """--append-result appends each run's json.dump on a new line (serve.py main_async)."""
    first = _vllm()
    second = _vllm(max_concurrency=8, total_input_tokens=8192, completed=8, median_ttft_ms=1500.0)
    path = _write(tmp_path, "appended.json", json.dumps(first) + "\n" + json.dumps(second))
    reading = read_benchmark(path)
    assert reading.tool == "vllm bench serve"
    assert [r.label for r in reading.runs] == ["c4 in1024 out128", "c8 in1024 out64"]
    assert reading.runs[1].median_ttft_s == pytest.approx(1.5)  # 1,500 ms


def test_vllm_printed_result_block() -> None:
    """The console block: 'Successful requests: 4', 'Maximum request concurrency: 4', totals 4,096 and
    512 (per request 1,024 and 128); throughputs as printed with two decimals (1.5625 -> 1.56);
    the model from the Namespace(... model='...') line vLLM prints first."""
    reading = read_benchmark(FIXTURES / "vllm-bench-serve-stdout.txt")
    assert reading.tool == "vllm bench serve"
    (run,) = reading.runs
    assert run.label == "c4 in1024 out128"
    assert run.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (run.concurrency, run.request_rate_per_s, run.completed) == (4, None, 4)
    assert run.request_per_s == pytest.approx(1.56)
    assert run.output_tokens_per_s == pytest.approx(200.0)
    assert run.median_ttft_s == pytest.approx(0.1525)
    assert run.median_tpot_s == pytest.approx(0.01475)
    assert run.median_itl_s == pytest.approx(0.0145)


# --- SGLang -------------------------------------------------------------------------------------


def test_sglang_bench_serving_jsonl() -> None:
    """Two appended runs of 200 requests, 204,800 input and 51,200 output tokens each
    (per request 204,800 / 200 = 1,024 and 51,200 / 200 = 256):
    run 1, --request-rate 4, no concurrency limit, 51.2 s: 51,200 / 51.2 = 1,000 tok/s,
    200 / 51.2 = 3.90625 req/s, median TTFT 88.5 ms, TPOT 12.25 ms, ITL 11.75 ms;
    run 2, request_rate Infinity (-> None), --max-concurrency 16, 40 s: 1,280 tok/s, 5 req/s."""
    reading = read_benchmark(FIXTURES / "sglang-bench-serving.jsonl")
    assert reading.tool == "sglang bench_serving"
    one, two = reading.runs
    assert one.label == "rate4 in1024 out256"
    assert (one.concurrency, one.request_rate_per_s, one.completed) == (None, 4.0, 200)
    assert one.output_tokens_per_s == pytest.approx(1000.0)
    assert one.request_per_s == pytest.approx(3.90625)
    assert (one.median_ttft_s, one.median_tpot_s, one.median_itl_s) == pytest.approx(
        (0.0885, 0.01225, 0.01175)
    )
    assert two.label == "c16 in1024 out256"
    assert (two.concurrency, two.request_rate_per_s) == (16, None)
    assert two.output_tokens_per_s == pytest.approx(1280.0)
    assert two.request_per_s == pytest.approx(5.0)
    assert two.median_ttft_s == pytest.approx(0.21)
    assert one.model is None  # SGLang's result line has no model key


def test_sglang_printed_result_block() -> None:
    """'Traffic request rate: inf' -> None, 'Max request concurrency: 16', 'Backend:' marks SGLang;
    this version prints no TPOT lines, so median_tpot_s is None."""
    reading = read_benchmark(FIXTURES / "sglang-bench-serving-stdout.txt")
    assert reading.tool == "sglang bench_serving"
    (run,) = reading.runs
    assert run.label == "c16 in1024 out256"
    assert run.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (run.concurrency, run.request_rate_per_s, run.completed) == (16, None, 200)
    assert (run.output_tokens_per_s, run.request_per_s) == pytest.approx((1280.0, 5.0))
    assert (run.median_ttft_s, run.median_itl_s) == pytest.approx((0.21, 0.014))
    assert run.median_tpot_s is None


def test_sglang_max_concurrency_not_set_and_negative_zero(tmp_path: Path) -> None:
    """SGLang prints 'not set' for no limit and '-0.00' for a median TPOT rounded from below zero."""
    text = (FIXTURES / "sglang-bench-serving-stdout.txt").read_text()
    text = text.replace(
        "Max request concurrency:                 16", "Max request concurrency:                 not set"
    )
    text = text.replace(
        "Median ITL (ms):                         14.00", "Median ITL (ms):                         -0.00"
    )
    (run,) = read_benchmark(_write(tmp_path, "out.txt", text)).runs
    assert run.concurrency is None
    assert run.median_itl_s == 0.0
    assert run.label == "burst in1024 out256"


# --- llama-bench --------------------------------------------------------------------------------


def test_llama_bench_json() -> None:
    """Three tests: pp512 (avg_ts 7,285.68 t/s is a prompt rate), tg128 (119.92 t/s, a decode rate)
    and pp512+tg128, whose avg_ts is (512 + 128) tokens / time, neither: both rates None."""
    reading = read_benchmark(FIXTURES / "llama-bench.json")
    assert reading.tool == "llama-bench"
    pp, tg, pg = reading.runs
    assert [r.label for r in reading.runs] == ["pp512", "tg128", "pp512+tg128"]
    assert (pp.prompt_tokens, pp.output_tokens) == (512, 0)
    assert pp.prompt_tokens_per_s == pytest.approx(7285.676949)
    assert pp.decode_tokens_per_s is None
    assert tg.decode_tokens_per_s == pytest.approx(119.915244)
    assert tg.prompt_tokens_per_s is None
    assert (pg.prompt_tokens, pg.output_tokens, pg.prompt_tokens_per_s, pg.decode_tokens_per_s) == (
        512,
        128,
        None,
        None,
    )
    assert pp.model == "models/Qwen2.5-7B-Instruct-Q4_K_M.gguf"
    assert pp.model_type == "qwen2 7B Q4_K - Medium"
    assert pp.quant == "Q4_K_M"
    assert pp.gpu_name == "NVIDIA GeForce RTX 4080"
    assert (pp.flash_attn, pp.n_gpu_layers, pp.n_batch, pp.n_ubatch) == (True, 99, 2048, 512)
    assert pp.build == "8cf427ff (5163)"
    assert (pp.concurrency, pp.completed, pp.depth_tokens) == (1, None, 0)


def test_llama_bench_jsonl_matches_json() -> None:
    """-o jsonl prints the same objects, one a line: the same runs as the first two of -o json."""
    jsonl = read_benchmark(FIXTURES / "llama-bench.jsonl")
    assert jsonl.tool == "llama-bench"
    assert jsonl.runs == read_benchmark(FIXTURES / "llama-bench.json").runs[:2]


def test_llama_bench_markdown() -> None:
    """The table (after ggml_cuda_init lines from stderr) with its optional n_ubatch and fa columns,
    tests at depth 0 and 4096, t/s as 'avg ± stddev', and the 'build: 3f4fc97f (5371)' footer.
    The table names no file and no GPU."""
    reading = read_benchmark(FIXTURES / "llama-bench.md")
    assert reading.tool == "llama-bench"
    assert [r.label for r in reading.runs] == ["pp512", "tg128", "pp512 @ d4096", "tg128 @ d4096"]
    pp, tg, pp_deep, tg_deep = reading.runs
    assert pp.prompt_tokens_per_s == pytest.approx(11364.52)
    assert tg.decode_tokens_per_s == pytest.approx(155.27)
    assert (pp_deep.depth_tokens, tg_deep.depth_tokens) == (4096, 4096)
    assert pp_deep.prompt_tokens_per_s == pytest.approx(8971.08)
    assert tg_deep.decode_tokens_per_s == pytest.approx(139.40)
    assert (tg.model_type, tg.quant) == ("llama 8B Q4_K - Medium", "Q4_K_M")
    assert (tg.flash_attn, tg.n_gpu_layers, tg.n_ubatch, tg.n_batch) == (True, 99, 256, None)
    assert (tg.model, tg.gpu_name) == (None, None)
    assert {r.build for r in reading.runs} == {"3f4fc97f (5371)"}


def test_llama_bench_markdown_older_test_names(tmp_path: Path) -> None:
    """Older builds printed 'pp 512' / 'tg 128' and 'mostly Q4_0' (llama-bench README)."""
    table = (
        "| model                          |       size |     params | backend    | ngl | test       |              t/s |\n"
        "| ------------------------------ | ---------: | ---------: | ---------- | --: | ---------- | ---------------: |\n"
        "| llama 7B mostly Q4_0           |   3.56 GiB |     6.74 B | CUDA       |  -1 | pp 512     |  2368.80 ± 93.24 |\n"
        "| llama 7B mostly Q4_0           |   3.56 GiB |     6.74 B | CUDA       |  -1 | tg 128     |    131.42 ± 0.59 |\n"
    )
    pp, tg = read_benchmark(_write(tmp_path, "old.md", table)).runs
    assert (pp.label, pp.n_gpu_layers, tg.label, tg.quant, tg.build) == ("pp512", -1, "tg128", "Q4_0", None)
    assert (pp.prompt_tokens_per_s, tg.decode_tokens_per_s) == pytest.approx((2368.80, 131.42))


@pytest.mark.parametrize(
    ("value", "expected"), [(-1, None), (0, False), (1, True), (False, False), (True, True)]
)
def test_llama_bench_flash_attn_forms(tmp_path: Path, value: object, expected: bool | None) -> None:
    """flash_attn is a bool in older builds and an int (-1 auto, 0 off, 1 on) in newer ones."""
    rows = json.loads((FIXTURES / "llama-bench.json").read_text())
    rows[0]["flash_attn"] = value
    assert read_benchmark(_json(tmp_path, rows)).runs[0].flash_attn is expected


# --- Ollama -------------------------------------------------------------------------------------


def test_ollama_verbose() -> None:
    """Two replies, each a summary: 26 prompt tokens at 1,233.98 t/s (26 / 21.07 ms) and 34 generated
    at 45.61 t/s (34 / 745.512 ms); then 77 at 1,600.83 and 25 at 45.40. The reply text is skipped."""
    reading = read_benchmark(FIXTURES / "ollama-verbose.txt")
    assert reading.tool == "ollama --verbose"
    one, two = reading.runs
    assert one == BenchmarkRun(
        label="#1 in26 out34",
        concurrency=1,
        prompt_tokens=26,
        output_tokens=34,
        completed=1,
        decode_tokens_per_s=45.61,
        prompt_tokens_per_s=1233.98,
    )
    assert (two.label, two.prompt_tokens_per_s, two.decode_tokens_per_s) == ("#2 in77 out25", 1600.83, 45.40)


def test_ollama_summary_without_prompt_lines(tmp_path: Path) -> None:
    """Summary lines are printed only when > 0: a cached prompt leaves out the prompt eval lines, and
    the next 'total duration' still starts a new run."""
    text = (
        "total duration:       1.2s\neval count:           10 token(s)\neval duration:        200ms\n"
        "eval rate:            50.00 tokens/s\ntotal duration:       1.1s\neval count:           12 token(s)\n"
        "eval duration:        240ms\neval rate:            50.00 tokens/s\n"
    )
    one, two = read_benchmark(_write(tmp_path, "o.txt", text)).runs
    assert (one.label, one.prompt_tokens, one.prompt_tokens_per_s, one.decode_tokens_per_s) == (
        "#1 out10",
        None,
        None,
        50.0,
    )
    assert two.output_tokens == 12


# --- detection by content -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "tool"),
    [
        ("vllm-bench-serve-c4.json", "vllm bench serve"),
        ("sglang-bench-serving.jsonl", "sglang bench_serving"),
        ("sglang-bench-serving-stdout.txt", "sglang bench_serving"),
        ("llama-bench.json", "llama-bench"),
        ("llama-bench.jsonl", "llama-bench"),
        ("llama-bench.md", "llama-bench"),
        ("ollama-verbose.txt", "ollama --verbose"),
    ],
)
def test_format_is_detected_from_content_not_name(tmp_path: Path, fixture: str, tool: str) -> None:
    """Each fixture copied under a misleading name reads the same."""
    misleading = tmp_path / ("results.md" if fixture.endswith(".json") else "results.json")
    shutil.copy(FIXTURES / fixture, misleading)
    assert read_benchmark(misleading).tool == tool
    assert read_benchmark(misleading).runs == read_benchmark(FIXTURES / fixture).runs


def test_parse_benchmark_takes_text() -> None:
    reading = parse_benchmark((FIXTURES / "ollama-verbose.txt").read_text(), "pasted")
    assert (reading.path, len(reading.runs)) == ("pasted", 2)


# --- not a benchmark ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32}',  # config.json
        "{}",
        "[]",
        "[1, 2, 3]",
        '[{"model": "x"}]',
        '"just a string"',
        "Hello, this is a text file.\nWith two lines.\n",
        "| a | b |\n| - | - |\n| 1 | 2 |\n",  # a markdown table of something else
    ],
)
def test_other_files_are_not_benchmarks(tmp_path: Path, content: str) -> None:
    _refused(_write(tmp_path, "x.json", content), NOT_A_BENCHMARK)


def test_a_vramcalc_output_is_not_a_benchmark() -> None:
    golden = next(p for p in sorted((ROOT / "tests" / "golden").glob("*.json")))
    _refused(golden, NOT_A_BENCHMARK)
    _refused(ROOT / "examples" / "plan.schema.json", NOT_A_BENCHMARK)


@pytest.mark.parametrize("content", ["", "   \n\n\t\n"])
def test_an_empty_file(tmp_path: Path, content: str) -> None:
    _refused(_write(tmp_path, "empty.json", content), r"empty\.json: the file is empty; expected vLLM")


def test_a_truncated_json(tmp_path: Path) -> None:
    """A run killed mid-write: vLLM's JSON cut in half, llama-bench -o json without its ']'."""
    text = (FIXTURES / "vllm-bench-serve-c4.json").read_text()
    _refused(
        _write(tmp_path, "cut.json", text[: len(text) // 2]), r"cut\.json:1: not valid JSON \(.*cut short\?\)"
    )
    rows = (FIXTURES / "llama-bench.json").read_text().rstrip().removesuffix("]")
    _refused(_write(tmp_path, "rows.json", rows), r"rows\.json:\d+: not valid JSON \(.*cut short\?\)")


def test_a_truncated_jsonl_line(tmp_path: Path) -> None:
    first, second = (FIXTURES / "sglang-bench-serving.jsonl").read_text().splitlines()
    path = _write(tmp_path, "sg.jsonl", first + "\n" + second[:100])
    _refused(path, r"sg\.jsonl:2: not valid JSON \(.*cut short\?\)")


def test_one_tool_per_file(tmp_path: Path) -> None:
    vllm = json.dumps(_vllm())
    sglang = (FIXTURES / "sglang-bench-serving.jsonl").read_text().splitlines()[0]
    _refused(
        _write(tmp_path, "mix.jsonl", vllm + "\n" + sglang),
        r"mix\.jsonl:2: a sglang bench_serving result after vllm",
    )
    block = (FIXTURES / "vllm-bench-serve-stdout.txt").read_text()
    both = block + (FIXTURES / "sglang-bench-serving-stdout.txt").read_text()
    _refused(_write(tmp_path, "both.txt", both), "keep one tool's results per file")


# --- bad figures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("median_ttft_ms", float("nan"), "nan"),
        ("median_tpot_ms", float("inf"), "inf"),
        ("output_throughput", -1.5, "-1.5"),
        ("request_throughput", "fast", "'fast'"),
        ("median_itl_ms", [1, 2], r"\[1, 2\]"),
        ("median_ttft_ms", True, "True"),
    ],
)
def test_vllm_figure_must_be_finite_and_not_negative(
    tmp_path: Path, key: str, value: object, shown: str
) -> None:
    """Python's json.dump writes NaN and Infinity; they, negatives and non-numbers are refused by key."""
    path = _json(tmp_path, _vllm(**{key: value}))
    _refused(path, rf"result\.json: {key} must be a finite number >= 0, got {shown}$")


def test_zero_completed_requests(tmp_path: Path) -> None:
    message = _refused(
        _json(tmp_path, _vllm(completed=0)), r"completed must be a whole number >= 1 \(every request failed"
    )
    assert message.endswith("got 0")


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-4, "-4"), (2.5, "2.5"), ("many", "'many'")])
def test_concurrency_below_one(tmp_path: Path, value: object, shown: str) -> None:
    _refused(
        _json(tmp_path, _vllm(max_concurrency=value)),
        rf"max_concurrency must be a whole number >= 1, got {shown}$",
    )


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), (-2.0, "-2.0"), (float("nan"), "nan"), ("fast", "'fast'")]
)
def test_request_rate_must_be_positive_or_inf(tmp_path: Path, value: object, shown: str) -> None:
    _refused(
        _json(tmp_path, _vllm(request_rate=value)),
        rf"request_rate must be a finite number > 0 or inf, got {shown}$",
    )


def test_sglang_line_number_in_errors(tmp_path: Path) -> None:
    first, second = (FIXTURES / "sglang-bench-serving.jsonl").read_text().splitlines()
    bad = json.loads(second.replace("Infinity", "1e999"))
    bad["median_itl_ms"] = float("nan")
    path = _write(tmp_path, "sg.jsonl", first + "\n\n" + json.dumps(bad) + "\n")
    _refused(path, r"sg\.jsonl:3: median_itl_ms must be a finite number >= 0, got nan$")


def test_llama_bench_row_number_in_errors(tmp_path: Path) -> None:
    rows = json.loads((FIXTURES / "llama-bench.json").read_text())
    rows[1]["avg_ts"] = -5.0
    _refused(_json(tmp_path, rows), r"result\.json: row 2: avg_ts must be a finite number >= 0, got -5\.0$")
    rows[1] = {"avg_ts": 1.0}
    _refused(_json(tmp_path, rows), r"result\.json: row 2 is not a llama-bench result")


def test_llama_bench_markdown_line_in_errors(tmp_path: Path) -> None:
    lines = (FIXTURES / "llama-bench.md").read_text().splitlines()
    lines[7] = lines[7].replace("155.27 ± 0.21", "  nan ± nan  ")
    _refused(
        _write(tmp_path, "t.md", "\n".join(lines)), r"t\.md:8: avg_ts must be a finite number >= 0, got nan$"
    )
    lines[7] = lines[7].replace("tg128", "xx128")
    _refused(_write(tmp_path, "t.md", "\n".join(lines)), r"t\.md:8: test 'xx128' is not a llama-bench test")
    lines[7] = lines[7].replace("xx128", "tg128") + " extra |"
    _refused(
        _write(tmp_path, "t.md", "\n".join(lines)), r"t\.md:8: a table row of 10 cells under a header of 9"
    )


def test_ollama_line_in_errors(tmp_path: Path) -> None:
    text = (FIXTURES / "ollama-verbose.txt").read_text()
    _refused(
        _write(tmp_path, "o.txt", text.replace("45.40 tokens/s", "NaN tokens/s")),
        r"o\.txt:22: eval rate must be a finite number >= 0, got nan$",
    )
    _refused(
        _write(tmp_path, "o.txt", text.replace("34 token(s)", "lots token(s)")),
        r"o\.txt:9: eval count must be a whole number >= 0, got 'lots'$",
    )


def test_printed_block_line_in_errors(tmp_path: Path) -> None:
    text = (FIXTURES / "vllm-bench-serve-stdout.txt").read_text()
    bad = text.replace(
        "Median TTFT (ms):                        152.50", "Median TTFT (ms):                        -3.00"
    )
    _refused(
        _write(tmp_path, "v.txt", bad), r"v\.txt:25: median_ttft_ms must be a finite number >= 0, got -3\.0$"
    )
    no_count = text.replace("Successful requests:", "Successful:")
    _refused(
        _write(tmp_path, "v.txt", no_count), r"v\.txt:11: the result block has no 'Successful requests:' line"
    )


def test_per_request_tokens_are_bounded(tmp_path: Path) -> None:
    """total_input_tokens / completed above the context bound (2^27) is not a real run."""
    _refused(
        _json(tmp_path, _vllm(total_input_tokens=4 * 2**28)),
        r"total_input_tokens / completed = .* more than 134,217,728",
    )


# --- hostile files ------------------------------------------------------------------------------


def test_binary_bad_utf8_and_utf16(tmp_path: Path) -> None:
    _refused(_write(tmp_path, "b.bin", bytes(range(256)) * 4), r"b\.bin: binary \(it holds NUL bytes\)")
    _refused(
        _write(tmp_path, "u.txt", b"eval rate: \xff\xfe 45 tokens/s"),
        r"u\.txt: not UTF-8 text \(bad byte at offset 11\)",
    )
    _refused(_write(tmp_path, "w.txt", "eval rate: 1".encode("utf-16")), r"w\.txt: UTF-16 text")


def test_too_big_a_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(MAX_BENCHMARK_BYTES + 1)  # sparse: no disk used
    _refused(path, r"huge\.json: 33,554,433 bytes is too large for a benchmark output \(limit 32 MiB\)")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.json", r"cannot read the benchmark output \(no such file\)")
    _refused(tmp_path, r"is a directory, not a regular file")


def test_huge_integer_and_deep_nesting(tmp_path: Path) -> None:
    _refused(
        _write(tmp_path, "i.json", '{"completed": 1' + "0" * 5000 + "}"), r"an integer with 5,001 digits"
    )
    _refused(_write(tmp_path, "d.json", "[" * 100_000 + "]" * 100_000), r"d\.json: JSON nested deeper than")


def test_model_names_are_data(tmp_path: Path) -> None:
    """A long name is refused with an 80-character excerpt; control characters are refused, escaped."""
    message = _refused(_json(tmp_path, _vllm(model_id="m" * 5000)), r"model_id is 5,000 characters long")
    assert len(message) < 300
    message = _refused(_json(tmp_path, _vllm(model_id="evil\x1b[2J")), r"model_id holds control characters")
    assert "\x1b" not in message and r"\x1b" in message
    ok = read_benchmark(_json(tmp_path, _vllm(model_id="<b>{x}</b> 'quoted' [red]"))).runs[0]
    assert ok.model == "<b>{x}</b> 'quoted' [red]"  # kept as data, as printed


@pytest.mark.parametrize(
    "content",
    [
        "|" * 2_000_000,
        "| model | test | t/s |\n" + "|" * 1_000_000,
        ("=" * 20 + " Serving Benchmark Result " + "=" * 20 + "\n") * 50_000,
        "eval rate:" + " " * 1_000_000 + "x",
        ":" * 2_000_000,
        "{" * 1000 + "x",
    ],
)
def test_hostile_text_is_refused_cleanly(tmp_path: Path, content: str) -> None:
    """Large repetitive input: a one-line SpecError, never a traceback (no regex is used on text)."""
    with pytest.raises(SpecError) as info:
        read_benchmark(_write(tmp_path, "h.txt", content))
    assert "\n" not in str(info.value)


def test_results_per_file_are_bounded(tmp_path: Path) -> None:
    """100,001 one-line Ollama summaries: refused before they become 100,001 values."""
    path = _write(tmp_path, "many.txt", "eval rate:            1.00 tokens/s\n" * 100_001)
    _refused(path, r"many\.txt: more than 100,000 results; split the file")


# --- bench --save: the measured speed over ours as a calibration profile ------------------------


def test_bench_save_writes_speed_factors_that_reproduce_the_run(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """llama-bench.json (Llama-3.1-8B Q4_K_M, RTX 4090): the profile's decode factor is tg128's
    measured / ours and its prompt factor pp512's; run again with --calibration, ours equals the
    measured figures to the printed precision. Another model on the same GPU, engine and format
    takes the factors; another GPU does not (and says why)."""
    bench = str(ROOT / "tests/fixtures/bench/llama-bench.json")
    args = ("bench", bench, "--model", "llama-3.1-8b", "--gpu", "rtx-4090")
    before = json.loads(run_cli(*args, "--json").stdout)
    rows = {r["figure"]: r for run in before["runs"] for r in run["figures"]}
    profile = tmp_path / "speed.yaml"
    saved = run_cli(*args, "--save", str(profile))
    assert saved.exit_code == 0 and saved.stderr == ""
    assert "speed terms for llama.cpp on rtx-4090 (Q4_K_M); use it with --calibration" in " ".join(
        saved.stdout.split()
    )
    data = yaml.safe_load(profile.read_text())
    decode = rows["decode_tokens_per_s"]["measured"] / rows["decode_tokens_per_s"]["ours"]
    prompt = rows["prompt_tokens_per_s"]["measured"] / rows["prompt_tokens_per_s"]["ours"]
    assert data["decode_speed_factor"] == pytest.approx(decode, abs=1e-4)
    assert data["prefill_speed_factor"] == pytest.approx(prompt, abs=1e-4)
    after = json.loads(run_cli(*args, "--calibration", str(profile), "--json").stdout)
    for run in after["runs"]:
        for r in run["figures"]:
            assert r["ours"] == pytest.approx(r["measured"], rel=2e-4), r
    other = run_cli("estimate", "qwen3-8b", "--engine", "llama.cpp", "--bits", "4", "--gpu", "rtx-4090",
                    "--calibration", str(profile), "--json")  # fmt: skip
    reasons = json.loads(other.stdout)["assessment"]["reasons"]
    assert any(r.startswith("speed calibrated from llama-bench.json: decode x 0.") for r in reasons)
    assert json.loads(other.stdout)["assessment"]["speed_ranges"] == {}
    elsewhere = run_cli("estimate", "llama-3.1-8b", "--engine", "llama.cpp", "--bits", "4", "--gpu", "rtx-3090",
                        "--calibration", str(profile))  # fmt: skip
    assert (
        elsewhere.exit_code == 2 and "the profile's GPU is rtx-4090, this sizes rtx-3090" in elsewhere.stderr
    )


def test_bench_save_needs_a_figure_we_model(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A benchmark whose runs compare nothing (the deployment named, Llama-3.1-70B in bf16 on one
    RTX 4090, does not start) cannot calibrate: one line, exit 2, no file written."""
    legacy = str(ROOT / "tests/fixtures/bench/vllm-benchmark-serving-legacy.json")
    profile = tmp_path / "p.yaml"
    r = run_cli("bench", legacy, "--model", "llama-3.1-70b", "--gpu", "rtx-4090", "--save", str(profile))
    assert r.exit_code == 2 and "nothing to calibrate" in r.stderr and not profile.exists()


def test_bench_save_from_a_serving_benchmark(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A serving benchmark (examples/bench: Qwen3-8B on one H100 SXM, concurrency 8) prints TPOT
    and TTFT but no prompt rate: the profile holds the decode factor (ours / measured TPOT and ITL,
    geometric mean) and the server's time per request before the first token (measured TTFT - ours
    + the overhead ours holds). With it the run's TPOT and TTFT come back within 1%."""
    bench = str(ROOT / "examples/bench/vllm-qwen3-8b-h100-c8.txt")
    args = ("bench", bench, "--model", "qwen3-8b", "--gpu", "h100-sxm", "--quant", "bf16")
    profile = tmp_path / "speed.yaml"
    assert run_cli(*args, "--save", str(profile)).exit_code == 0
    data = yaml.safe_load(profile.read_text())
    assert "prefill_speed_factor" not in data and data["request_overhead_s"] > 0.0183
    after = json.loads(run_cli(*args, "--calibration", str(profile), "--json").stdout)
    rows = {r["figure"]: r for run in after["runs"] for r in run["figures"]}
    for figure in ("median_tpot_s", "median_itl_s", "median_ttft_s"):
        assert rows[figure]["ours"] == pytest.approx(rows[figure]["measured"], rel=0.01), figure
