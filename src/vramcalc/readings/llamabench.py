"""Read llama-bench results: `-o json` (an array), `-o jsonl` (an object a line) and `-o md` (the table)."""

from __future__ import annotations

from collections.abc import Mapping

from vramcalc.errors import SpecError
from vramcalc.limits import MAX_CTX_TOKENS
from vramcalc.logs.common import is_int
from vramcalc.logs.llamacpp import gguf_ftype_name
from vramcalc.readings.common import MAX_TEXT_CHARS, BenchmarkRun, Fields, cells, check_count, to_number

TOOL = "llama-bench"

# Source: tools/llama-bench/llama-bench.cpp (examples/llama-bench/ before 2025): test::get_fields
# names every key (build_commit, build_number, cpu_info, gpu_info, backends, model_filename,
# model_type, model_size, model_n_params, n_batch, n_ubatch, n_threads, ..., type_k, type_v,
# n_gpu_layers, ..., flash_attn, ..., n_prompt, n_gen, n_depth, test_time, avg_ns, stddev_ns,
# avg_ts, stddev_ts); json_printer / jsonl_printer add samples_ns and samples_ts.
# test::get_ts: every sample is (n_prompt + n_gen) tokens / its time, so the avg_ts of a
# "pp512+tg128" test mixes prompt and generation: such a row is kept with both rates None.
_MARKERS = ("avg_ts", "n_prompt", "n_gen")
# markdown_printer::get_field_display_name: the table's column names for the keys we read.
_COLUMNS = {
    "model": "model_type",
    "ngl": "n_gpu_layers",
    "fa": "flash_attn",
    "n_batch": "n_batch",
    "n_ubatch": "n_ubatch",
    "test": "test",
    "t/s": "avg_ts",
}


def is_llamabench_result(d: Mapping[str, object]) -> bool:
    return all(k in d for k in _MARKERS)


def test_label(n_prompt: int, n_gen: int, n_depth: int) -> str:
    """markdown_printer::print_test's 'test' cell: pp512, tg128, pp512+tg128, then ' @ d4096'."""
    if n_prompt > 0 and n_gen == 0:
        label = f"pp{n_prompt}"
    elif n_gen > 0 and n_prompt == 0:
        label = f"tg{n_gen}"
    else:
        label = f"pp{n_prompt}+tg{n_gen}"
    return f"{label} @ d{n_depth}" if n_depth > 0 else label


def _parse_test(cell: str) -> tuple[int, int, int] | None:
    """'pp512', 'tg 128' (older builds), 'pp512+tg128', 'tg128 @ d4096' -> (n_prompt, n_gen, n_depth)."""
    head, at, tail = cell.partition("@")
    depth = 0
    if at:
        tail = tail.strip()
        if not (tail.startswith("d") and is_int(tail[1:])):
            return None
        depth = int(tail[1:])
    parts = head.replace(" ", "").split("+")
    if len(parts) > 2:
        return None
    n = {"pp": 0, "tg": 0}
    for part in parts:
        if part[:2] not in n or not is_int(part[2:]):
            return None
        n[part[:2]] = int(part[2:])
    return n["pp"], n["tg"], depth


def _quant(model_type: str | None) -> str | None:
    """llama_model_desc prints '<arch> <size> <ftype>' ('llama 8B Q4_K - Medium'): the ftype, by
    vramcalc's name ('Q4_K_M'); None when there is no third part."""
    if model_type is None:
        return None
    parts = model_type.split(" ", 2)
    return gguf_ftype_name(parts[2]) if len(parts) == 3 and parts[2].strip() else None


def llamabench_run(
    d: Mapping[str, object], where: str, lines: Mapping[str, str] | None = None
) -> BenchmarkRun:
    f = Fields(d, where, lines)
    n_prompt = f.count("n_prompt", maximum=MAX_CTX_TOKENS)
    n_gen = f.count("n_gen", maximum=MAX_CTX_TOKENS)
    if n_prompt is None or n_gen is None:
        raise f.bad("n_prompt" if n_prompt is None else "n_gen", "a whole number >= 0")
    depth = f.count("n_depth", maximum=MAX_CTX_TOKENS) or 0
    rate = f.number("avg_ts")
    if rate is None:
        raise f.bad("avg_ts", "a finite number >= 0")
    commit, number = f.text("build_commit"), f.count("build_number")
    build = f.text("build")  # the markdown footer, as printed
    if build is None and commit is not None:
        build = f"{commit} ({number})" if number is not None else commit
    model_type = f.text("model_type")
    return BenchmarkRun(
        label=test_label(n_prompt, n_gen, depth),
        model=f.text("model_filename"),
        concurrency=1,
        prompt_tokens=n_prompt,
        output_tokens=n_gen,
        decode_tokens_per_s=rate if n_gen > 0 and n_prompt == 0 else None,
        prompt_tokens_per_s=rate if n_prompt > 0 and n_gen == 0 else None,
        depth_tokens=depth,
        gpu_name=f.text("gpu_info"),
        quant=_quant(model_type),
        model_type=model_type,
        flash_attn=f.flag("flash_attn"),
        n_gpu_layers=f.count("n_gpu_layers", minimum=-1),
        n_batch=f.count("n_batch", minimum=1),
        n_ubatch=f.count("n_ubatch", minimum=1),
        build=build,
    )


# ---------------------------------------------------------------------------------------------
# -o md


def _is_header(row: list[str] | None) -> bool:
    return row is not None and all(c in row for c in ("model", "test", "t/s"))


def has_markdown_table(lines: list[str]) -> bool:
    return any("t/s" in line and _is_header(cells(line)) for line in lines)


def read_markdown(lines: list[str], source: str) -> list[BenchmarkRun]:
    """One run per table row; a 'build: <commit> (<number>)' line after a table applies to its rows.

    Source: llama-bench.cpp markdown_printer: print_header writes the column names and a '---:'
    rule, print_test one row per test (t/s as '%.2f ± %.2f'), print_footer '\\nbuild: %s (%d)'.
    """
    rows: list[tuple[dict[str, object], str, dict[str, str]]] = []
    pending: list[dict[str, object]] = []
    header: list[str] | None = None
    for n, line in enumerate(lines, 1):
        row = cells(line)
        if "t/s" in line and _is_header(row):
            header, pending = row, []
            continue
        if line.strip().startswith("build: "):
            build = line.strip().removeprefix("build: ").strip()[:MAX_TEXT_CHARS]
            for earlier in pending:
                earlier["build"] = build
            pending = []
            continue
        if row is None:
            header = None  # any other line ends the table (its build line may follow)
            continue
        if header is None or all(set(c) <= set("-:") for c in row):
            continue  # the '---:' rule, or a table of something else
        if len(row) != len(header):
            raise SpecError(
                f"{source}:{n}: a table row of {len(row)} cells under a header of {len(header)}; "
                "paste the table as llama-bench printed it"
            )
        values: dict[str, object] = {}
        for name, cell in zip(header, row, strict=True):
            key = _COLUMNS.get(name)
            if key == "test":
                test = _parse_test(cell)
                if test is None:
                    raise SpecError(
                        f"{source}:{n}: test {cell[:80]!r} is not a llama-bench test (pp512, tg128, "
                        "pp512+tg128, optionally ' @ d4096')"
                    )
                values["n_prompt"], values["n_gen"], values["n_depth"] = test
            elif key == "avg_ts":
                values[key] = to_number(cell.partition("±")[0])
            elif key == "model_type":
                values[key] = cell
            elif key is not None:
                values[key] = to_number(cell)
        rows.append((values, f"{source}:{n}", {k: f"{source}:{n}" for k in values}))
        check_count(len(rows), source)
        pending.append(values)
    return [llamabench_run(values, where, at) for values, where, at in rows]
