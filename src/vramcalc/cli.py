"""The typer CLI: parse options, load the catalog, call the core once, render, exit 0/1/2."""

from __future__ import annotations

import enum
import os
import re
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

# vramcalc uses no pydantic plugins; looking them up scans every installed distribution's
# entry points (~25 ms of importlib.metadata on each run). Measured by scripts/bench_startup.py.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from vramcalc import __version__
from vramcalc.errors import SpecError, VramcalcError

if TYPE_CHECKING:
    from vramcalc.catalog import Catalog
    from vramcalc.importers import ResolvedModel

app = typer.Typer(
    name="vramcalc",
    help="Size GPU memory for self-hosted LLM inference: weights, KV cache, buffers, reserve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
models_app = typer.Typer(help="List and show catalog models.", no_args_is_help=True)
gpus_app = typer.Typer(help="List and show catalog GPUs.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(gpus_app, name="gpus")
schema_app = typer.Typer(help="Print JSON Schemas (for editors and CI).", no_args_is_help=True)
plan_app = typer.Typer(help="Work with plan files: launch settings.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
app.add_typer(plan_app, name="plan")

_debug = False


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    csv = "csv"


CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--catalog",
        help="Extra catalog directory with models/ and gpus/ (repeatable; also $VRAMCALC_CATALOG_PATH).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
OnlineOpt = Annotated[
    bool,
    typer.Option(
        "--online",
        help="Fetch an org/name Hugging Face id missing from the local cache (config and safetensors "
        "headers only; needs the [hf] extra).",
    ),
]
MODEL_HELP = (
    "Catalog id or alias (gemma-2-27b, google/gemma-2-27b-it), a model directory, config.json or "
    ".gguf file, or a Hugging Face org/name in the local cache."
)


def _catalog(dirs: list[Path] | None) -> Catalog:
    from vramcalc.catalog import Catalog

    return Catalog.from_environment(dirs or [])


def _out(text: str) -> None:
    sys.stdout.write(text)


def _resolve(model: str, cat: Catalog, online: bool) -> ResolvedModel:
    """MODEL through the one resolver (catalog, local files, HF cache); its warnings to stderr."""
    from vramcalc.importers import resolve_model

    resolved = resolve_model(model, cat, online=online)
    for warning in resolved.warnings:
        sys.stderr.write(f"vramcalc: warning: {warning}\n")
    return resolved


def _print(renderable: object) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped or redirected: keep tables whole instead of 80-column wrapping
    console.print(renderable)


def _show_version(value: bool) -> None:
    if value:
        _out(f"vramcalc {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command()
def estimate(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    bits: Annotated[
        int | None,
        typer.Option(
            help="Weight width; picks the conventional format for the engine (4 -> int4 g128 / Q4_K_M)."
        ),
    ] = None,
    quant: Annotated[
        str | None, typer.Option(help="Exact weight format, e.g. awq-int4, fp8, nf4, Q4_K_M, Q8_0.")
    ] = None,
    ctx: Annotated[
        int, typer.Option(help="Context tokens per user (prompt + output); vLLM max_model_len.")
    ] = 4096,
    users: Annotated[int, typer.Option(help="Concurrent users (sequences in flight).")] = 1,
    fill: Annotated[float, typer.Option(help="Average share of --ctx in use; 1.0 = worst case.")] = 1.0,
    shared_prefix: Annotated[
        int,
        typer.Option("--shared-prefix", help="Tokens of a common system prompt held once (prefix caching)."),
    ] = 0,
    workers: Annotated[
        int, typer.Option(help="Processes that each load the model (e.g. gunicorn workers).")
    ] = 1,
    kv_dtype: Annotated[
        str, typer.Option("--kv-dtype", help="KV cache dtype: auto, bf16, fp16, fp8, q8_0, q4_0.")
    ] = "auto",
    gpu: Annotated[
        str | None,
        typer.Option(help="Catalog GPU id: fit check (exit 1 if not) and the engine's own figures."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Serving engine NAME[@VERSION]: vllm, sglang, tgi, transformers, llama.cpp, ollama "
            "(default vllm; llama.cpp for a .gguf file)."
        ),
    ] = None,
    gpu_util: Annotated[
        float | None,
        typer.Option("--gpu-util", help="vLLM gpu_memory_utilization / SGLang mem_fraction_static."),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(
            "--max-num-seqs",
            help="Sequences at once: vLLM/SGLang running cap; llama.cpp -np / OLLAMA_NUM_PARALLEL slots.",
        ),
    ] = None,
    max_num_batched_tokens: Annotated[
        int | None, typer.Option("--max-num-batched-tokens", help="vLLM/SGLang prefill chunk tokens.")
    ] = None,
    ubatch: Annotated[int | None, typer.Option(help="llama.cpp/Ollama physical batch (-ub).")] = None,
    flash_attn: Annotated[
        bool | None,
        typer.Option(
            "--flash-attn/--no-flash-attn", help="Flash attention (llama.cpp, Ollama, transformers)."
        ),
    ] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs (weights and KV heads split).")] = 1,
    prompt_tokens: Annotated[
        int | None,
        typer.Option(
            "--prompt-tokens",
            help="Prompt length inside --ctx (transformers); default --ctx less the output.",
        ),
    ] = None,
    cpu_offload_gb: Annotated[
        float | None,
        typer.Option(
            "--cpu-offload-gb", help="vLLM: GiB of weights kept in host memory, copied over PCIe every step."
        ),
    ] = None,
    allow_long_ctx: Annotated[
        bool, typer.Option("--allow-long-ctx", help="Allow --ctx above the model's max_position_embeddings.")
    ] = False,
    output_tokens: Annotated[
        int | None,
        typer.Option(
            "--output-tokens",
            help="Output tokens per request, inside --ctx (default 512, at most half of --ctx): how long a "
            "request holds its KV blocks (queue wait).",
        ),
    ] = None,
    host_bandwidth: Annotated[
        float | None,
        typer.Option(
            "--host-bandwidth",
            help="Host memory bandwidth GB/s for layers offloaded to the CPU (default 50: dual-channel DDR5).",
        ),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    json_out: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show every term's formula and source.")] = False,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
) -> None:
    """Estimate GPU memory for MODEL at --ctx tokens per user and --users concurrent users."""
    from vramcalc import render
    from vramcalc.core.assess import REFERENCE_GPUS, LayoutKind, Request, report_on_gpu, report_on_tiers
    from vramcalc.core.engines.base import EngineSettings
    from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS

    cat = _catalog(catalog)
    resolved = _resolve(model, cat, online)
    gpu_spec = cat.gpus.get(gpu) if gpu else None
    settings = EngineSettings(
        gpu_util, max_num_seqs, max_num_batched_tokens, ubatch, flash_attn, 1, prompt_tokens, cpu_offload_gb
    )
    if bits is not None and quant is not None:
        raise SpecError("give --bits or --quant, not both")
    ask = Request(
        model=resolved.spec,
        users=users,
        ctx_tokens=ctx,
        engine=engine or resolved.default_engine,
        bits=bits,
        quant=quant,
        kv_dtype=kv_dtype,
        fill=fill,
        shared_prefix_tokens=shared_prefix,
        headroom=0.0,  # estimate asks whether it fits the card; plans and recommend keep headroom
        min_tokens_per_s=0.0,
        workers=workers,
        output_tokens=output_tokens,
        host_bandwidth_gbs=HOST_MEMORY_BANDWIDTH_GBS if host_bandwidth is None else host_bandwidth,
        settings=settings,
        stored=resolved.stored,
        allow_long_ctx=allow_long_ctx,
    )
    layout: LayoutKind = "tensor-parallel" if tp > 1 else "single"
    if gpu_spec is not None:
        report = report_on_gpu(ask.on(gpu_spec, tp, layout))
    else:
        cards = tuple((label, cat.gpus.get(card_id)) for label, card_id in REFERENCE_GPUS)
        report = report_on_tiers(ask.on(cards[0][1], tp, layout), cards)
    fmt_name = OutputFormat.json if json_out else output
    if fmt_name is OutputFormat.json:
        _out(render.to_json(render.estimate_dict(report)))
    elif fmt_name is OutputFormat.markdown:
        _out(render.estimate_markdown(report, explain))
    elif fmt_name is OutputFormat.csv:
        _out(render.estimate_csv(report))
    else:
        _print(render.estimate_table(report, explain))
    if report.assessment is not None and not report.assessment.passes:
        raise typer.Exit(1)


class RecommendFormat(enum.StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
def recommend(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Catalog model, model directory, config.json, .gguf or cached HF id; "
            "default: project file, else Gemma-2-27B."
        ),
    ] = None,
    users: Annotated[
        str | None,
        typer.Option(help="Concurrent users to serve: 10, a list 5,10,20 or a range 10-20 (default 10)."),
    ] = None,
    bits: Annotated[int | None, typer.Option(help="Weight width (4 -> int4 g128 / Q4_K_M).")] = None,
    quant: Annotated[str | None, typer.Option(help="Exact weight format.")] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per user (default 4096).")] = None,
    gpu: Annotated[
        list[str] | None,
        typer.Option(
            "--gpu", help="Only these catalog GPUs (repeatable); one card: the cheapest way to make it work."
        ),
    ] = None,
    have: Annotated[
        list[str] | None,
        typer.Option("--have", help="GPUs already owned, ID[xN] (repeatable): they cost nothing."),
    ] = None,
    vendor: Annotated[str | None, typer.Option(help="Only this vendor: nvidia, amd, apple, intel.")] = None,
    form_factor: Annotated[
        str | None,
        typer.Option("--form-factor", help="Only this kind: consumer, workstation, datacenter, unified."),
    ] = None,
    max_price: Annotated[
        float | None, typer.Option("--max-price", help="Only cards at or below this list price, USD.")
    ] = None,
    optimize: Annotated[
        str, typer.Option(help="What the pick minimises or maximises: cost, speed or gpus.")
    ] = "cost",
    per_tier: Annotated[int, typer.Option("--per-tier", help="Options shown per tier (default 3).")] = 3,
    engine: Annotated[
        str | None,
        typer.Option(help="Serving engine NAME[@VERSION] (default vllm; llama.cpp for a .gguf file)."),
    ] = None,
    kv_dtype: Annotated[str | None, typer.Option("--kv-dtype", help="KV cache dtype (default auto).")] = None,
    fill: Annotated[
        float | None, typer.Option(help="Average share of the context in use (default 1.0).")
    ] = None,
    shared_prefix: Annotated[
        int | None, typer.Option("--shared-prefix", help="Shared prompt tokens.")
    ] = None,
    headroom: Annotated[
        float | None, typer.Option(help="Share of GPU memory kept free (default 0.10).")
    ] = None,
    max_gpus: Annotated[
        int | None, typer.Option("--max-gpus", help="Most GPUs in one deployment (default 8).")
    ] = None,
    min_speed: Annotated[
        float | None,
        typer.Option("--min-speed", help="Slowest acceptable decode, tokens/s per user (default 10)."),
    ] = None,
    output_tokens: Annotated[
        int | None,
        typer.Option("--output-tokens", help="Output tokens per request, inside --ctx (default 512)."),
    ] = None,
    host_bandwidth: Annotated[
        float | None,
        typer.Option("--host-bandwidth", help="Host memory GB/s for layers offloaded to RAM (default 50)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Project file (default ./vramcalc.toml or ./.vramcalc.yaml)."),
    ] = None,
    output: Annotated[
        RecommendFormat, typer.Option("--format", help="Output format.")
    ] = RecommendFormat.table,
    json_out: JsonOpt = False,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
) -> None:
    """Recommend GPUs that serve --users users, ranked by --optimize (cheapest first by default)."""
    from vramcalc import render
    from vramcalc.config import find_project_file, load_project_defaults
    from vramcalc.core.recommend import Request, filters_from, parse_users, recommend_counts
    from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS

    path = find_project_file(Path.cwd(), config)
    project = load_project_defaults(path) if path else None

    def pick(flag: object, key: str, default: object) -> Any:
        value = getattr(project, key, None) if project else None
        return flag if flag is not None else value if value is not None else default

    chosen_model = pick(model, "model", None)
    defaulted = chosen_model is None
    cat = _catalog(catalog)
    quant_value = pick(quant, "quant", None)
    counts = parse_users(str(pick(users, "users", 10)))
    if per_tier < 1:
        raise VramcalcError(f"--per-tier must be a positive integer, got {per_tier}")
    named = tuple(cat.gpus.get(g).id for g in gpu or ())
    owned = []
    for item in have or ():
        gid, _, n = item.rpartition("x") if re.fullmatch(r".+x\d+", item) else (item, "", "1")
        owned.append((cat.gpus.get(gid).id, int(n)))
    filters = filters_from(named, vendor, form_factor, max_price, tuple(owned))
    resolved = _resolve(chosen_model or "gemma-2-27b", cat, online)
    req = Request(
        model=resolved.spec,
        stored=resolved.stored,
        users=counts[0],
        ctx_tokens=pick(ctx, "ctx", 4096),
        engine=pick(engine, "engine", resolved.default_engine),
        # A concrete file is sized as it is stored unless a width or format is asked for.
        bits=None if quant_value else pick(bits, "bits", None if resolved.stored else 4),
        quant=quant_value,
        kv_dtype=pick(kv_dtype, "kv_dtype", "auto"),
        fill=pick(fill, "fill", 1.0),
        shared_prefix_tokens=pick(shared_prefix, "shared_prefix", 0),
        headroom=pick(headroom, "headroom", 0.10),
        max_gpus=pick(max_gpus, "max_gpus", 8),
        min_tokens_per_s=pick(min_speed, "min_speed", 10.0),
        output_tokens=output_tokens,
        host_bandwidth_gbs=HOST_MEMORY_BANDWIDTH_GBS if host_bandwidth is None else host_bandwidth,
    )
    results = recommend_counts(
        req, list(cat.gpus.all().values()), counts, objective=optimize, filters=filters
    )
    fmt_name = RecommendFormat.json if json_out else output
    if fmt_name is RecommendFormat.json:
        _out(render.to_json(render.recommendations_dict(results, defaulted, per_tier)))
    elif fmt_name is RecommendFormat.markdown:
        _out(render.recommendation_markdown(results, defaulted, per_tier))
    else:
        _print(render.recommendation_table(results, defaulted, per_tier))
    if any(r.choice is None for r in results):
        raise typer.Exit(1)


@models_app.command("list")
def models_list(json_out: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List every catalog model with its size and KV bytes per token."""
    from vramcalc import render

    models = list(_catalog(catalog).models.all().values())
    if json_out:
        _out(render.to_json([render.model_summary(m) for m in models]))
    else:
        _print(render.models_table(models))


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    json_out: JsonOpt = False,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
) -> None:
    """Show one model's architecture, computed counts and sources."""
    from vramcalc import render

    spec = _resolve(model, _catalog(catalog), online).spec
    data = render.model_detail(spec)
    if json_out:
        _out(render.to_json(data))
    else:
        _print(render.detail_table(spec.name, data))


@models_app.command("import")
def models_import(
    model: Annotated[
        str, typer.Argument(help="A model directory, config.json, .gguf file or cached HF org/name.")
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Entry to write, e.g. models/NAME.yaml (NAME becomes its id)."),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    online: OnlineOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Write a catalog entry (with source:) for a local model file, to review and commit."""
    from vramcalc.catalog import write_model_entry
    from vramcalc.importers import catalog_entry

    resolved = _resolve(model, _catalog(catalog), online)
    spec = catalog_entry(resolved, output.stem)
    header = (
        f"{spec.name}: imported by `vramcalc models import` from {resolved.origin}; "
        "review every field against the model's config before committing."
    )
    write_model_entry(output, spec, header, force)
    sys.stderr.write(f"vramcalc: wrote {output} (id {spec.id}); review it, then commit it\n")


@gpus_app.command("list")
def gpus_list(json_out: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List every catalog GPU with usable memory, bandwidth and compute."""
    from vramcalc import render

    gpus = list(_catalog(catalog).gpus.all().values())
    if json_out:
        _out(render.to_json([render.gpu_summary(g) for g in gpus]))
    else:
        _print(render.gpus_table(gpus))


@gpus_app.command("show")
def gpus_show(
    gpu: Annotated[str, typer.Argument(help="Catalog id or alias.")],
    json_out: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Show one GPU's specs and sources."""
    from vramcalc import render

    spec = _catalog(catalog).gpus.get(gpu)
    data = render.gpu_detail(spec)
    if json_out:
        _out(render.to_json(data))
    else:
        _print(render.detail_table(spec.name, data))


@app.command()
def calibrate(
    logfile: Annotated[
        Path, typer.Argument(help="A vLLM, llama.cpp or Ollama startup log (text, up to 5 MB).")
    ],
    gpu: Annotated[
        str | None, typer.Option(help="Catalog GPU id; overrides the GPU the log names or implies.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Catalog model, model directory, config.json, .gguf or cached HF id, for logs "
            "that do not name it."
        ),
    ] = None,
    json_out: JsonOpt = False,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
) -> None:
    """Compare an engine's startup log with our estimate at the same settings, figure by figure."""
    from vramcalc import render
    from vramcalc.core import calibrate as cal
    from vramcalc.core.scenario import run
    from vramcalc.errors import UnknownModelError
    from vramcalc.logs import parse_log, read_log_file

    facts = parse_log(read_log_file(logfile), source=str(logfile))
    cat = _catalog(catalog)
    resolved = _resolve(model, cat, online) if model else None
    spec = resolved.spec if resolved else None
    for name in [] if model or not facts.model else cal.model_candidates(facts.model):
        try:
            spec = cat.models.get(name)
            break
        except UnknownModelError:
            continue
    gpu_spec, gpu_note = (cat.gpus.get(gpu), "") if gpu else cal.match_gpu(facts, cat.gpus.all().values())
    cal.check_complete(facts, spec is not None, gpu_spec is not None, None if model else facts.model)
    assert spec is not None and gpu_spec is not None
    plan = cal.plan(facts, spec)
    result = run(
        spec,
        plan.workload,
        engine=plan.engine,
        gpu=gpu_spec,
        quant=plan.quant,
        kv_dtype=plan.kv_dtype,
        settings=plan.settings,
        stored=resolved.stored if resolved else None,
    )
    report = cal.compare(facts, result, plan, notes=[gpu_note])
    if json_out:
        _out(render.to_json(render.calibration_dict(report)))
    else:
        _print(render.calibration_table(report))


class CheckFormat(enum.StrEnum):
    text = "text"
    json = "json"
    junit = "junit"
    github = "github"
    markdown = "markdown"


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file next to `path`, then rename: a reader never sees half a report."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise VramcalcError(f"--output {path}: cannot write there ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise VramcalcError(f"--output {path}: cannot write ({exc.strerror})") from exc


@app.command()
def check(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH", help="Plan files, directories (every *.yaml/*.yml below) or glob patterns."
        ),
    ],
    output_format: Annotated[CheckFormat, typer.Option("--format", help="Report format.")] = CheckFormat.text,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Write the report to FILE instead of stdout, once the run completes."),
    ] = None,
    catalog: CatalogOpt = None,
) -> None:
    """Check capacity plans: does every deployment fit its GPUs and meet its goals?

    Exit 0 when every deployment fits with its headroom and meets its goals, 1 when any does not
    (each failure says by how much and the smallest changes that pass), 2 when any input is invalid
    (then nothing is reported)."""
    from vramcalc import plans, render
    from vramcalc.core.check import check_all

    results = check_all(plans.load_plans(paths, _catalog(catalog)))
    report = {
        CheckFormat.text: render.check_text,
        CheckFormat.json: lambda rs: render.to_json(render.check_dict(rs)),
        CheckFormat.junit: render.check_junit,
        CheckFormat.github: render.check_github,
        CheckFormat.markdown: render.check_markdown,
    }[output_format](results)
    if output is None:
        _out(report)
    else:
        _write_atomically(output, report)
        sys.stderr.write(f"vramcalc: wrote {output}: {render.check_summary(results)}\n")
    if not all(r.passed for r in results):
        raise typer.Exit(1)


@schema_app.command("plan")
def schema_plan() -> None:
    """Print the JSON Schema of plan files (for yaml-language-server and other editors)."""
    from vramcalc import plans, render

    _out(render.to_json(plans.plan_schema()))


class EmitEngine(enum.StrEnum):
    vllm = "vllm"
    sglang = "sglang"
    llamacpp = "llama.cpp"
    ollama = "ollama"


@plan_app.command("emit")
def plan_emit(
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="A plan file (or a directory of them).")],
    engine: Annotated[
        EmitEngine | None,
        typer.Option(
            help="The engine to launch; it must be the one the plan was checked with (default: it)."
        ),
    ] = None,
    deployment: Annotated[str | None, typer.Option(help="Only the deployment with this name.")] = None,
    catalog: CatalogOpt = None,
) -> None:
    """Print the launch command or environment for each deployment, with the settings it was checked with."""
    from vramcalc import plans, render
    from vramcalc.core import emit
    from vramcalc.core.check import check_all

    chosen = emit.select(plans.load_plans([plan], _catalog(catalog)), engine, deployment)
    _out(render.launch_text([emit.launch(p) for p in chosen]))
    for r in check_all(chosen):
        if not r.passed:
            sys.stderr.write(
                f"vramcalc: warning: {r.planned.name} does not pass: {render.miss_text(r, r.misses[0])}\n"
            )


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"vramcalc: error: {message}\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one boundary where errors become a line on stderr and exit 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="vramcalc", standalone_mode=False)
    except VramcalcError as exc:
        if _debug:
            traceback.print_exc()
        *first, last = str(exc).splitlines() or [""]  # several bad inputs: one line each
        for line in first:
            sys.stderr.write(f"vramcalc: error: {line}\n")
        _fail(last, exc.exit_code)
    except BrokenPipeError:
        raise SystemExit(0) from None
    except Exception as exc:  # noqa: BLE001 - the one boundary that must never show a traceback
        if _debug:
            traceback.print_exc()
        # typer raises click's exception types (vendored in typer >= 0.26): match them by shape.
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__.startswith("NoArgsIsHelp") and ctx is not None:
            sys.stdout.write(ctx.get_help() + "\n")
            raise SystemExit(0) from None
        if type(exc).__name__ == "Abort":
            _fail("aborted")
        format_message = getattr(exc, "format_message", None)
        if callable(format_message) and hasattr(exc, "exit_code"):
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            _fail(" ".join(str(format_message()).split()) + hint)
        _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)")
    raise SystemExit(code if isinstance(code, int) else 0)
