"""The typer CLI: parse options, load the catalog, call the core once, render, exit 0/1/2."""

from __future__ import annotations

import copy
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
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


ESTIMATE_FORMATS = ("table", "json", "markdown", "csv")
RECOMMEND_FORMATS = ("table", "json", "markdown")
CATALOG_FORMATS = ("table", "json")
CHECK_FORMATS = ("text", "json", "junit", "github", "markdown")
EMIT_FORMATS = ("text", "json")


CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--catalog",
        metavar="DIR",
        help="Extra catalog directory with models/ and gpus/ (repeatable; also $VRAMCALC_CATALOG_PATH).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
CalibrationOpt = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        metavar="FILE",
        help="A calibration profile (calibrate LOG --save FILE): its measured terms replace the engine's "
        "defaults on its GPU.",
    ),
]
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


def _measured(path: Path, *, engine: str, model: str, gpu: str | None = None) -> Any:
    """The profile at `path`, checked against the engine and model (and GPU) it is used for."""
    from vramcalc.profiles import check_matches, read_profile

    measured = read_profile(path)
    check_matches(measured, path, engine=engine, model=model, gpu=gpu)
    return measured


def _out(text: str) -> None:
    sys.stdout.write(text)


class _Command(typer.core.TyperCommand):
    """A command whose help a person reads: arguments as NAME, no `<type>` or `{name}` placeholders,
    and value errors in words instead of the validator's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument):
                name = (param.metavar or param.name or "ARG").upper()
                param.metavar = name
                many = "..." if param.nargs != 1 else ""
                usage = f"{name}{many}" if param.required else f"[{name}]{many}"
                param.display_type_rich = _no_type  # type: ignore[method-assign]
                param._usage_display_name = functools.partial(str, usage)  # type: ignore[method-assign]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            exc.message = _readable(exc)
            raise


def _no_type(ctx: object) -> None:
    return None


def _readable(exc: typer.BadParameter) -> str:
    """`'abc' is not a whole number` for the validator's `Input should be a valid integer, ...`."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if not callable(errors):
        return exc.message
    first = errors()[0] if errors() else {}
    value, kind = first.get("input"), str(first.get("type", ""))
    words = {"int": "a whole number", "float": "a number", "bool": "true or false"}
    for key, what in words.items():
        if kind.startswith(key):
            return f"{value!r} is not {what}"
    return exc.message


def _choices(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _set_debug(value: bool) -> None:
    global _debug
    _debug = _debug or value


DebugOpt = Annotated[
    bool, typer.Option("--debug", callback=_set_debug, is_eager=True, help="Show tracebacks on errors.")
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--output",
        metavar="FILE",
        help="Write the result to FILE instead of stdout (atomically, once the run completes).",
    ),
]


def _format_opt(choices: tuple[str, ...]) -> Any:
    return typer.Option(
        "--format", metavar="FORMAT", help=f"Output format: {_choices(choices)} (default {choices[0]})."
    )


def _pick_format(given: str | None, json_out: bool, choices: tuple[str, ...]) -> str:
    """The one format asked for: --json is --format json; both naming different formats is an error."""
    if given is not None and given not in choices:
        raise VramcalcError(f"unknown format {given!r}; choose {_choices(choices)}")
    if json_out and given not in (None, "json"):
        raise VramcalcError(f"--json and --format {given} ask for different formats; give one of them")
    return "json" if json_out else given or choices[0]


def _text(renderable: object) -> str:
    """A rich renderable as the text `_print` shows when stdout is not a terminal."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    width = None if "COLUMNS" in os.environ else 120
    Console(file=buf, width=width, highlight=False, color_system=None, force_terminal=False).print(renderable)
    return buf.getvalue()


def _emit(result: object, output: Path | None, note: str = "") -> None:
    """The result (text, text in pieces, or a rich renderable) to stdout, or written atomically
    to --output FILE."""
    if output is None:
        if isinstance(result, str):
            _out(result)
        elif isinstance(result, Iterator):
            for piece in result:
                _out(piece)
        else:
            _print(result)
        return
    if isinstance(result, str | Iterator):
        _write_atomically(output, result)
    else:
        _write_atomically(output, _text(result))
    sys.stderr.write(f"vramcalc: wrote {output}{': ' + note if note else ''}\n")


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


# Items below which a run ends before a progress bar helps (check: deployments; recommend: cards).
PROGRESS_AT_LEAST = 50


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def _tracker(fmt_name: str) -> Callable[[Sequence[Any], str], Iterable[Any]] | None:
    """A transient progress bar on stderr for long work, only when a person watches a terminal
    (stdout and stderr both ttys) and asked for a human format; None when piped or redirected,
    and for JSON, CSV, JUnit and GitHub output, which a program reads."""
    if fmt_name not in ("text", "table", "markdown") or not (_isatty(sys.stdout) and _isatty(sys.stderr)):
        return None

    def track(items: Sequence[Any], what: str) -> Iterable[Any]:
        if len(items) < PROGRESS_AT_LEAST:
            return items
        from rich.console import Console
        from rich.progress import track as rich_track

        return rich_track(items, description=what, transient=True, console=Console(stderr=True))

    return track


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


@app.command(cls=_Command)
def estimate(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    bits: Annotated[
        int | None,
        typer.Option(
            metavar="BITS",
            help="Weight width; picks the conventional format for the engine (4 -> int4 g128 / Q4_K_M).",
        ),
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(metavar="FORMAT", help="Exact weight format, e.g. awq-int4, fp8, nf4, Q4_K_M, Q8_0."),
    ] = None,
    ctx: Annotated[
        int,
        typer.Option(metavar="TOKENS", help="Context tokens per user (prompt + output); vLLM max_model_len."),
    ] = 4096,
    users: Annotated[int, typer.Option(metavar="USERS", help="Concurrent users (sequences in flight).")] = 1,
    fill: Annotated[
        float, typer.Option(metavar="SHARE", help="Average share of --ctx in use; 1.0 = worst case.")
    ] = 1.0,
    shared_prefix: Annotated[
        int,
        typer.Option(
            "--shared-prefix",
            metavar="TOKENS",
            help="Tokens of a common system prompt held once (prefix caching).",
        ),
    ] = 0,
    workers: Annotated[
        int, typer.Option(metavar="N", help="Processes that each load the model (e.g. gunicorn workers).")
    ] = 1,
    kv_dtype: Annotated[
        str,
        typer.Option(
            "--kv-dtype", metavar="DTYPE", help="KV cache dtype: auto, bf16, fp16, fp8, q8_0, q4_0."
        ),
    ] = "auto",
    gpu: Annotated[
        str | None,
        typer.Option(
            metavar="GPU", help="Catalog GPU id: fit check (exit 1 if not) and the engine's own figures."
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            metavar="NAME[@VERSION]",
            help="Serving engine NAME[@VERSION]: vllm, sglang, tgi, transformers, llama.cpp, ollama "
            "(default vllm; llama.cpp for a .gguf file).",
        ),
    ] = None,
    gpu_util: Annotated[
        float | None,
        typer.Option(
            "--gpu-util", metavar="SHARE", help="vLLM gpu_memory_utilization / SGLang mem_fraction_static."
        ),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(
            "--max-num-seqs",
            metavar="N",
            help="Sequences at once: vLLM/SGLang running cap; llama.cpp -np / OLLAMA_NUM_PARALLEL slots.",
        ),
    ] = None,
    max_num_batched_tokens: Annotated[
        int | None,
        typer.Option("--max-num-batched-tokens", metavar="TOKENS", help="vLLM/SGLang prefill chunk tokens."),
    ] = None,
    ubatch: Annotated[
        int | None, typer.Option(metavar="TOKENS", help="llama.cpp/Ollama physical batch (-ub).")
    ] = None,
    flash_attn: Annotated[
        bool | None,
        typer.Option(
            "--flash-attn/--no-flash-attn", help="Flash attention (llama.cpp, Ollama, transformers)."
        ),
    ] = None,
    tp: Annotated[
        int, typer.Option(metavar="N", help="Tensor-parallel GPUs (weights and KV heads split).")
    ] = 1,
    pp: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="GPUs the layers are split over (llama.cpp/Ollama -sm layer; pipeline parallel).",
        ),
    ] = 1,
    prompt_tokens: Annotated[
        int | None,
        typer.Option(
            "--prompt-tokens",
            metavar="TOKENS",
            help="Prompt tokens per request, inside --ctx (default --ctx less the output): sets the first "
            "token time and the prefill share of each step.",
        ),
    ] = None,
    cpu_offload_gb: Annotated[
        float | None,
        typer.Option(
            "--cpu-offload-gb",
            metavar="GIB",
            help="vLLM: GiB of weights kept in host memory, copied over PCIe every step.",
        ),
    ] = None,
    enforce_eager: Annotated[
        bool | None,
        typer.Option(
            "--enforce-eager", help="vLLM --enforce-eager / SGLang --disable-cuda-graph (slower steps)."
        ),
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            "--sampler",
            metavar="PATH",
            help="vLLM profile's sampler path: flashinfer, pytorch or v2 (the V2 model runner's logits-only "
            "profile; default: unknown, figures show a range and size on the larger).",
        ),
    ] = None,
    mxfp4_backend: Annotated[
        str | None,
        typer.Option(
            "--mxfp4-backend",
            metavar="KERNEL",
            help="vLLM MXFP4 MoE kernel (gpt-oss): marlin, triton or flashinfer (default: what the GPU "
            "allows; where that is unknown, figures show both as a range and size on the larger).",
        ),
    ] = None,
    nccl_nvls: Annotated[
        bool | None,
        typer.Option(
            "--nccl-nvls/--no-nccl-nvls",
            help="vLLM on an NVSwitch board at --tp 3+: NCCL's NVLS buffers on (NCCL's default) or off "
            "(NCCL_NVLS_ENABLE=0); default: unknown, figures show both as a range and size with them.",
        ),
    ] = None,
    gpu_p2p: Annotated[
        bool | None,
        typer.Option(
            "--gpu-p2p/--no-gpu-p2p",
            help="vLLM at --tp 2+: the GPUs reach each other peer to peer (NVLink, PCIe P2P) or not "
            "(GeForce cards, GPUs in separate pods or nodes): NCCL keeps its ring buffers on the GPU only "
            "with P2P; default: GeForce no, other cards yes, figures show both as a range.",
        ),
    ] = None,
    mmproj: Annotated[
        bool | None,
        typer.Option(
            "--mmproj",
            help="llama.cpp: also load the vision projector (llama-server --mmproj FILE; a text GGUF has "
            "no vision tower).",
        ),
    ] = None,
    n_cpu_moe: Annotated[
        int | None,
        typer.Option(
            "--n-cpu-moe",
            metavar="N",
            help="llama.cpp, MoE models: keep the routed experts of the first N layers in RAM, computed by "
            "the CPU (llama-server --n-cpu-moe N; N >= the layer count is --cpu-moe).",
        ),
    ] = None,
    ngl: Annotated[
        int | None,
        typer.Option(
            "--ngl",
            metavar="N",
            help="llama.cpp -ngl: layers on the GPU, the output layer counted (default: --fit's choice, or "
            "every layer before --fit).",
        ),
    ] = None,
    allow_long_ctx: Annotated[
        bool, typer.Option("--allow-long-ctx", help="Allow --ctx above the model's max_position_embeddings.")
    ] = False,
    output_tokens: Annotated[
        int | None,
        typer.Option(
            "--output-tokens",
            metavar="TOKENS",
            help="Output tokens per request, inside --ctx (default 512, at most half of --ctx): how long a "
            "request holds its KV blocks (queue wait).",
        ),
    ] = None,
    host_bandwidth: Annotated[
        float | None,
        typer.Option(
            "--host-bandwidth",
            metavar="GBS",
            help="Host memory bandwidth GB/s for layers offloaded to the CPU (default 50: dual-channel DDR5).",
        ),
    ] = None,
    calibration: CalibrationOpt = None,
    fmt: Annotated[str | None, _format_opt(ESTIMATE_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show every term's formula and source.")] = False,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Estimate GPU memory for MODEL at --ctx tokens per user and --users concurrent users."""
    from vramcalc import render
    from vramcalc.core.assess import REFERENCE_GPUS, LayoutKind, Request, report_on_gpu, report_on_tiers
    from vramcalc.core.engines.base import EngineSettings
    from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS

    fmt_name = _pick_format(fmt, json_out, ESTIMATE_FORMATS)
    cat = _catalog(catalog)
    resolved = _resolve(model, cat, online)
    gpu_spec = cat.gpus.get(gpu) if gpu else None
    settings = EngineSettings(
        gpu_util,
        max_num_seqs,
        max_num_batched_tokens,
        ubatch,
        flash_attn,
        1,
        prompt_tokens,
        cpu_offload_gb,
        enforce_eager,
        mmproj,
        None
        if calibration is None
        else _measured(
            calibration,
            engine=engine or resolved.default_engine,
            model=resolved.spec.id,
            gpu=gpu_spec.id if gpu_spec else None,
        ),
    )
    settings = replace(
        settings,
        sampler=sampler.lower() if sampler else sampler,
        mxfp4_backend=mxfp4_backend.lower() if mxfp4_backend else mxfp4_backend,
        nccl_nvls=nccl_nvls,
        gpu_p2p=gpu_p2p,
        n_cpu_moe=n_cpu_moe,
        n_gpu_layers=ngl,
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
    if tp > 1 and pp > 1:
        raise SpecError(
            "give --tp or --pp, not both (tensor and pipeline parallel together are not modelled)"
        )
    layout: LayoutKind = "tensor-parallel" if tp > 1 else "pipeline-parallel" if pp > 1 else "single"
    count = max(tp, pp)
    if gpu_spec is not None:
        report = report_on_gpu(ask.on(gpu_spec, count, layout))
    else:
        cards = tuple((label, cat.gpus.get(card_id)) for label, card_id in REFERENCE_GPUS)
        report = report_on_tiers(ask.on(cards[0][1], count, layout), cards)
    if fmt_name == "json":
        _emit(render.to_json(render.estimate_dict(report)), output)
    elif fmt_name == "markdown":
        _emit(render.estimate_markdown(report, explain), output)
    elif fmt_name == "csv":
        _emit(render.estimate_csv(report), output)
    else:
        _emit(render.estimate_table(report, explain), output)
    if report.assessment is not None and not report.assessment.passes:
        raise typer.Exit(1)


@app.command(cls=_Command)
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
        typer.Option(
            metavar="USERS",
            help="Concurrent users to serve: 10, a list 5,10,20 or a range 10-20 (default 10).",
        ),
    ] = None,
    bits: Annotated[
        int | None, typer.Option(metavar="BITS", help="Weight width (4 -> int4 g128 / Q4_K_M).")
    ] = None,
    quant: Annotated[str | None, typer.Option(metavar="FORMAT", help="Exact weight format.")] = None,
    ctx: Annotated[
        int | None, typer.Option(metavar="TOKENS", help="Context tokens per user (default 4096).")
    ] = None,
    gpu: Annotated[
        list[str] | None,
        typer.Option(
            "--gpu",
            metavar="GPU",
            help="Only these catalog GPUs (repeatable); one card: the cheapest way to make it work.",
        ),
    ] = None,
    have: Annotated[
        list[str] | None,
        typer.Option(
            "--have", metavar="GPU[xN]", help="GPUs already owned, ID[xN] (repeatable): they cost nothing."
        ),
    ] = None,
    vendor: Annotated[
        str | None, typer.Option(metavar="VENDOR", help="Only this vendor: nvidia, amd, apple, intel.")
    ] = None,
    form_factor: Annotated[
        str | None,
        typer.Option(
            "--form-factor",
            metavar="KIND",
            help="Only this kind: consumer, workstation, datacenter, unified.",
        ),
    ] = None,
    max_price: Annotated[
        float | None,
        typer.Option("--max-price", metavar="USD", help="Only cards at or below this list price, USD."),
    ] = None,
    optimize: Annotated[
        str,
        typer.Option(metavar="OBJECTIVE", help="What the pick minimises or maximises: cost, speed or gpus."),
    ] = "cost",
    per_tier: Annotated[
        int, typer.Option("--per-tier", metavar="N", help="Options shown per tier (default 3).")
    ] = 3,
    engine: Annotated[
        str | None,
        typer.Option(
            metavar="NAME[@VERSION]",
            help="Serving engine NAME[@VERSION] (default vllm; llama.cpp for a .gguf file).",
        ),
    ] = None,
    kv_dtype: Annotated[
        str | None, typer.Option("--kv-dtype", metavar="DTYPE", help="KV cache dtype (default auto).")
    ] = None,
    fill: Annotated[
        float | None, typer.Option(metavar="SHARE", help="Average share of the context in use (default 1.0).")
    ] = None,
    shared_prefix: Annotated[
        int | None, typer.Option("--shared-prefix", metavar="TOKENS", help="Shared prompt tokens.")
    ] = None,
    headroom: Annotated[
        float | None, typer.Option(metavar="SHARE", help="Share of GPU memory kept free (default 0.10).")
    ] = None,
    max_gpus: Annotated[
        int | None, typer.Option("--max-gpus", metavar="N", help="Most GPUs in one deployment (default 8).")
    ] = None,
    min_speed: Annotated[
        float | None,
        typer.Option(
            "--min-speed",
            metavar="TOKENS_PER_S",
            help="Slowest acceptable decode, tokens/s per user (default 10).",
        ),
    ] = None,
    output_tokens: Annotated[
        int | None,
        typer.Option(
            "--output-tokens", metavar="TOKENS", help="Output tokens per request, inside --ctx (default 512)."
        ),
    ] = None,
    prompt_tokens: Annotated[
        int | None,
        typer.Option(
            "--prompt-tokens",
            metavar="TOKENS",
            help="Prompt tokens per request, inside --ctx (default --ctx less the output).",
        ),
    ] = None,
    host_bandwidth: Annotated[
        float | None,
        typer.Option(
            "--host-bandwidth",
            metavar="GBS",
            help="Host memory GB/s for layers offloaded to RAM (default 50).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", metavar="FILE", help="Project file (default ./vramcalc.toml or ./.vramcalc.yaml)."
        ),
    ] = None,
    allow_long_ctx: Annotated[
        bool, typer.Option("--allow-long-ctx", help="Allow --ctx above the model's max_position_embeddings.")
    ] = False,
    calibration: CalibrationOpt = None,
    fmt: Annotated[str | None, _format_opt(RECOMMEND_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Recommend GPUs that serve --users users, ranked by --optimize (cheapest first by default)."""
    from vramcalc import render
    from vramcalc.config import find_project_file, load_project_defaults
    from vramcalc.core.engines.base import EngineSettings
    from vramcalc.core.recommend import Request, filters_from, parse_users, recommend_counts
    from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS

    fmt_name = _pick_format(fmt, json_out, RECOMMEND_FORMATS)
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
    chosen_engine = pick(engine, "engine", resolved.default_engine)
    measured = (
        None if calibration is None else _measured(calibration, engine=chosen_engine, model=resolved.spec.id)
    )
    req = Request(
        model=resolved.spec,
        stored=resolved.stored,
        users=counts[0],
        ctx_tokens=pick(ctx, "ctx", 4096),
        engine=chosen_engine,
        settings=EngineSettings(measured=measured),
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
        prompt_tokens=prompt_tokens,
        host_bandwidth_gbs=HOST_MEMORY_BANDWIDTH_GBS if host_bandwidth is None else host_bandwidth,
        allow_long_ctx=allow_long_ctx,
    )
    results = recommend_counts(
        req,
        list(cat.gpus.all().values()),
        counts,
        objective=optimize,
        filters=filters,
        track=_tracker(fmt_name),
    )
    if fmt_name == "json":
        _emit(render.to_json(render.recommendations_dict(results, defaulted, per_tier)), output)
    elif fmt_name == "markdown":
        _emit(render.recommendation_markdown(results, defaulted, per_tier), output)
    else:
        _emit(render.recommendation_table(results, defaulted, per_tier), output)
    if any(r.choice is None for r in results):
        raise typer.Exit(1)


@models_app.command("list", cls=_Command)
def models_list(
    fmt: Annotated[str | None, _format_opt(CATALOG_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List every catalog model with its size and KV bytes per token."""
    from vramcalc import render

    fmt_name = _pick_format(fmt, json_out, CATALOG_FORMATS)
    models = list(_catalog(catalog).models.all().values())
    if fmt_name == "json":
        _emit(render.to_json([render.model_summary(m) for m in models]), output)
    else:
        _emit(render.models_table(models), output)


@models_app.command("show", cls=_Command)
def models_show(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    fmt: Annotated[str | None, _format_opt(CATALOG_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show one model's architecture, computed counts and sources."""
    from vramcalc import render

    fmt_name = _pick_format(fmt, json_out, CATALOG_FORMATS)
    spec = _resolve(model, _catalog(catalog), online).spec
    data = render.model_detail(spec)
    _emit(render.to_json(data) if fmt_name == "json" else render.detail_table(spec.name, data), output)


@models_app.command("import", cls=_Command)
def models_import(
    model: Annotated[
        str, typer.Argument(help="A model directory, config.json, .gguf file or cached HF org/name.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Entry to write, e.g. models/NAME.yaml (NAME becomes its id; the directory is created).",
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    online: OnlineOpt = False,
    catalog: CatalogOpt = None,
    debug: DebugOpt = False,
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
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VramcalcError(f"--output {output}: cannot create {output.parent} ({exc.strerror})") from exc
    write_model_entry(output, spec, header, force)
    sys.stderr.write(f"vramcalc: wrote {output} (id {spec.id}); review it, then commit it\n")


@gpus_app.command("list", cls=_Command)
def gpus_list(
    fmt: Annotated[str | None, _format_opt(CATALOG_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List every catalog GPU with usable memory, bandwidth and compute."""
    from vramcalc import render

    fmt_name = _pick_format(fmt, json_out, CATALOG_FORMATS)
    gpus = list(_catalog(catalog).gpus.all().values())
    if fmt_name == "json":
        _emit(render.to_json([render.gpu_summary(g) for g in gpus]), output)
    else:
        _emit(render.gpus_table(gpus), output)


@gpus_app.command("show", cls=_Command)
def gpus_show(
    gpu: Annotated[str, typer.Argument(help="Catalog id or alias.")],
    fmt: Annotated[str | None, _format_opt(CATALOG_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show one GPU's specs and sources."""
    from vramcalc import render

    fmt_name = _pick_format(fmt, json_out, CATALOG_FORMATS)
    spec = _catalog(catalog).gpus.get(gpu)
    data = render.gpu_detail(spec)
    _emit(render.to_json(data) if fmt_name == "json" else render.detail_table(spec.name, data), output)


@app.command(cls=_Command)
def calibrate(
    logfile: Annotated[
        Path, typer.Argument(help="A vLLM, llama.cpp or Ollama startup log (text, up to 5 MB).")
    ],
    gpu: Annotated[
        str | None,
        typer.Option(metavar="GPU", help="Catalog GPU id; overrides the GPU the log names or implies."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Catalog model, model directory, config.json, .gguf or cached HF id, for logs "
            "that do not name it.",
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            metavar="FILE",
            help="Write what the log measured as a calibration profile (vLLM logs) for --calibration.",
        ),
    ] = None,
    tp: Annotated[
        int | None,
        typer.Option(metavar="N", help="Tensor-parallel size, for vLLM logs whose config line is cut off."),
    ] = None,
    quantization: Annotated[
        str | None,
        typer.Option(
            metavar="METHOD",
            help="vLLM --quantization (fp8, awq, ...), or the GGUF type (Q8_0, Q4_K_M, ...) of a llama.cpp "
            "or Ollama log, that the log does not print.",
        ),
    ] = None,
    ctx: Annotated[
        int | None,
        typer.Option(
            "--ctx",
            metavar="TOKENS",
            help="Context the engine allocated (vLLM max_model_len, llama.cpp n_ctx, Ollama num_ctx x "
            "parallel), for logs that do not print it.",
        ),
    ] = None,
    n_cpu_moe: Annotated[
        int | None,
        typer.Option(
            "--n-cpu-moe",
            metavar="N",
            help="llama.cpp -ot/--n-cpu-moe: the first N layers' routed experts were kept in RAM, for logs "
            "that do not print the overridden tensors.",
        ),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option("--max-num-seqs", metavar="N", help="vLLM --max-num-seqs the log does not print."),
    ] = None,
    max_num_batched_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-num-batched-tokens",
            metavar="N",
            help="vLLM --max-num-batched-tokens the log does not print.",
        ),
    ] = None,
    gpu_util: Annotated[
        float | None,
        typer.Option(
            "--gpu-util", metavar="SHARE", help="vLLM gpu_memory_utilization the log does not print."
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(metavar="VERSION", help="Engine version, for logs that do not print it."),
    ] = None,
    calibration: CalibrationOpt = None,
    fmt: Annotated[str | None, _format_opt(CATALOG_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare an engine's startup log with our estimate at the same settings, figure by figure.

    Exit 0 when every figure we model agrees within the log's print rounding, 1 when one does not."""
    from vramcalc import render
    from vramcalc.core import calibrate as cal
    from vramcalc.core.scenario import run
    from vramcalc.errors import UnknownModelError
    from vramcalc.logs import parse_log, read_log_file

    fmt_name = _pick_format(fmt, json_out, CATALOG_FORMATS)
    facts = cal.with_given(
        parse_log(read_log_file(logfile), source=str(logfile)),
        tp=tp,
        quantization=quantization,
        version=version,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        gpu_util=gpu_util,
        ctx=ctx,
        n_cpu_moe=n_cpu_moe,
    )
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
    settings = plan.settings
    if calibration is not None:
        settings = replace(
            settings, measured=_measured(calibration, engine=facts.engine, model=spec.id, gpu=gpu_spec.id)
        )
    result = run(
        spec,
        plan.workload,
        engine=plan.engine,
        gpu=gpu_spec,
        quant=plan.quant,
        kv_dtype=plan.kv_dtype,
        settings=settings,
        stored=resolved.stored if resolved else None,
    )
    report = cal.compare(facts, result, plan, notes=[gpu_note])
    if save is not None:
        from vramcalc.profiles import profile_text

        text = profile_text(cal.measured_profile(report, result, logfile.name))
        _write_atomically(save, text)
        sys.stderr.write(f"vramcalc: wrote {save}: calibration profile for {spec.id} on {gpu_spec.id}\n")
    if fmt_name == "json":
        _emit(render.to_json(render.calibration_dict(report)), output)
    else:
        _emit(render.calibration_table(report), output)
    if not all(r.agrees for r in report.rows if r.ours is not None):
        raise typer.Exit(1)


@app.command(cls=_Command)
def bench(
    file: Annotated[
        Path,
        typer.Argument(
            help="vLLM bench serve --save-result JSON, SGLang bench_serving JSONL or printout, "
            "llama-bench -o json|jsonl|md, or ollama run --verbose text."
        ),
    ],
    model: Annotated[
        str, typer.Option(metavar="MODEL", help="The model the benchmark ran (catalog id, file).")
    ],
    gpu: Annotated[str, typer.Option(metavar="GPU", help="Catalog GPU id the benchmark ran on.")],
    engine: Annotated[
        str | None,
        typer.Option(metavar="NAME[@VERSION]", help="Engine (default: the benchmark tool's engine)."),
    ] = None,
    bits: Annotated[int | None, typer.Option(metavar="BITS", help="Weight width the server ran.")] = None,
    quant: Annotated[
        str | None,
        typer.Option(metavar="FORMAT", help="Exact weight format (llama-bench: read from the file)."),
    ] = None,
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", metavar="DTYPE", help="KV cache dtype.")] = "auto",
    tp: Annotated[int, typer.Option(metavar="N", help="Tensor-parallel GPUs.")] = 1,
    enforce_eager: Annotated[
        bool | None, typer.Option("--enforce-eager", help="The server ran without CUDA graphs.")
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            metavar="FILE",
            help="Write the measured speed over ours (decode, prompt) as a calibration profile for "
            "--calibration.",
        ),
    ] = None,
    calibration: CalibrationOpt = None,
    fmt: Annotated[str | None, _format_opt(CATALOG_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare a benchmark's printed speed figures with ours at the same load, run by run.

    With --save FILE, the benchmark's decode and prompt speed over ours become a calibration
    profile that estimate, check and recommend apply on the same GPU, engine and weight format."""
    from vramcalc import render
    from vramcalc.core.assess import Deployment, LayoutKind
    from vramcalc.core.benchmark import check_runs
    from vramcalc.core.engines.base import EngineSettings
    from vramcalc.readings import read_benchmark

    fmt_name = _pick_format(fmt, json_out, CATALOG_FORMATS)
    reading = read_benchmark(file)
    cat = _catalog(catalog)
    resolved = _resolve(model, cat, online)
    tool_engine = {"vllm bench serve": "vllm", "sglang bench_serving": "sglang", "llama-bench": "llama.cpp",
                   "ollama --verbose": "ollama"}  # fmt: skip
    chosen = engine or tool_engine.get(reading.tool, resolved.default_engine)
    if bits is not None and quant is not None:
        raise SpecError("give --bits or --quant, not both")
    file_quant = next((r.quant for r in reading.runs if r.quant), None)
    layout: LayoutKind = "tensor-parallel" if tp > 1 else "single"
    gpu_spec = cat.gpus.get(gpu)
    base = Deployment(
        model=resolved.spec,
        gpu=gpu_spec,
        users=1,
        count=tp,
        layout=layout,
        engine=chosen,
        bits=bits if quant is None and file_quant is None else None,
        quant=quant or (None if bits is not None else file_quant),
        kv_dtype=kv_dtype,
        settings=EngineSettings(
            enforce_eager=enforce_eager,
            measured=None
            if calibration is None
            else _measured(calibration, engine=chosen, model=resolved.spec.id, gpu=gpu_spec.id),
        ),
        stored=resolved.stored,
    )
    checks = check_runs(reading.runs, base)
    saved = ""
    if save is not None:
        from vramcalc.core.benchmark import speed_profile
        from vramcalc.profiles import profile_text

        measured = speed_profile(checks, base, file.name)
        _write_atomically(save, profile_text(measured))
        saved = (
            f"Saved {save}: speed terms for {measured.engine} on {measured.gpu} ({measured.weights_format}); "
            "use it with --calibration."
        )
    if fmt_name == "json":
        _emit(render.to_json(render.bench_dict(reading.tool, str(file), checks)), output)
    else:
        _emit(render.bench_table(reading.tool, str(file), checks, saved), output)


DIAGNOSE_FORMATS = ("text", "json")


def _size_mib(text: str) -> float:
    """'33GB', '33 GiB', '33000MiB', '33.5' (GiB) -> MiB. Monitors print GiB as "GB" (Task Manager,
    nvidia-smi's MiB), so GB is read as GiB and MB as MiB."""
    import math
    import re

    m = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(gib|gb|g|mib|mb|m)?\s*", text.lower())
    if m is None:
        raise SpecError(f"--used {text!r}: give a size like 33GB, 33.5GiB or 33000MiB")
    value = float(m.group(1)) * (1 if (m.group(2) or "gib").startswith("m") else 1024)
    if not math.isfinite(value) or value <= 0 or value > 16 * 1024 * 1024:
        raise SpecError(f"--used {text!r}: a positive size up to 16 TiB")
    return value


@app.command(cls=_Command)
def diagnose(
    readings: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="READING",
            help="nvidia-smi output files (`-` for stdin): the table, --query-gpu CSV or --query-compute-apps CSV.",
        ),
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(metavar="GPU", help="Catalog GPU id (default: the name nvidia-smi prints).")
    ] = None,
    used: Annotated[
        str | None,
        typer.Option(metavar="SIZE", help="A bare reading, e.g. 33GB from Task Manager (GB is read as GiB)."),
    ] = None,
    header: Annotated[
        str | None,
        typer.Option(
            metavar="FIELDS",
            help="The --query-gpu fields of CSV taken with noheader, e.g. 'timestamp, memory.used, memory.total'.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(metavar="MODEL", help="The deployment's model, to compare with its assessment."),
    ] = None,
    engine: Annotated[str | None, typer.Option(metavar="NAME[@VERSION]", help="Engine it runs on.")] = None,
    bits: Annotated[int | None, typer.Option(metavar="BITS", help="Weight width.")] = None,
    quant: Annotated[str | None, typer.Option(metavar="FORMAT", help="Exact weight format.")] = None,
    ctx: Annotated[int, typer.Option(metavar="TOKENS", help="Context tokens per user.")] = 4096,
    users: Annotated[int, typer.Option(metavar="N", help="Concurrent users when the reading was taken.")] = 1,
    workers: Annotated[int, typer.Option(metavar="N", help="Processes that each load the model.")] = 1,
    tokens_per_s: Annotated[
        float | None,
        typer.Option(
            "--tokens-per-s", metavar="RATE", help="Decode tokens/s per user you see (offload check)."
        ),
    ] = None,
    fmt: Annotated[str | None, _format_opt(DIAGNOSE_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Explain a GPU memory reading: nvidia-smi output, or a bare figure (--gpu rtx-4090 --used 33GB).

    Each finding names the figures it came from and the fix: above_physical_limit,
    duplicate_model_copies, growing_memory, near_full, offload_cliff. With --model (and the
    estimate's flags) the reading is held against the deployment's assessment. Exit 0 when
    nothing is wrong, 1 when a finding is a problem, 2 for bad input."""
    import math

    from vramcalc import render
    from vramcalc.core.assess import Deployment, assess
    from vramcalc.core.diagnose import card_of
    from vramcalc.core.diagnose import diagnose as explain
    from vramcalc.readings.smi import parse_smi, read_smi

    fmt_name = _pick_format(fmt, json_out, DIAGNOSE_FORMATS)
    parsed = []
    for item in readings or []:
        if item == "-":
            parsed.append(parse_smi(sys.stdin.read(64 * 1024 * 1024), "<stdin>", header))
        else:
            parsed.append(read_smi(item, header))
    used_mib = _size_mib(used) if used is not None else None
    if not parsed and used_mib is None:
        raise SpecError("give nvidia-smi output (a file, or - for stdin) or a bare reading with --used SIZE")
    if tokens_per_s is not None and not (math.isfinite(tokens_per_s) and tokens_per_s > 0):
        raise SpecError(f"--tokens-per-s must be a positive number, got {tokens_per_s}")
    cat = _catalog(catalog)
    gpu_spec = cat.gpus.get(gpu) if gpu else None
    if gpu_spec is None:
        gpu_spec = card_of([s for r in parsed for s in r.samples], list(cat.gpus.all().values()))
    assessment = None
    if model is not None:
        if gpu_spec is None:
            raise SpecError("--model needs the card: pass --gpu (the reading does not name a catalog GPU)")
        resolved = _resolve(model, cat, online)
        if bits is not None and quant is not None:
            raise SpecError("give --bits or --quant, not both")
        assessment = assess(
            Deployment(
                model=resolved.spec,
                gpu=gpu_spec,
                users=users,
                ctx_tokens=ctx,
                engine=engine or resolved.default_engine,
                bits=bits if quant is None else None,
                quant=quant,
                workers=workers,
                stored=resolved.stored,
            )
        )
    result = explain(
        parsed, used_mib=used_mib, gpu=gpu_spec, assessment=assessment, tokens_per_s=tokens_per_s
    )
    if fmt_name == "json":
        _emit(render.to_json(render.diagnose_dict(result)), output)
    else:
        _emit(render.diagnose_text(result), output)
    if result.problems:
        raise typer.Exit(1)


@app.command(cls=_Command)
def observe(
    snapshots: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="SNAPSHOT",
            help="Saved /metrics pages (vLLM, SGLang, llama.cpp) or nvidia-smi outputs; a directory reads every "
            "file in it.",
        ),
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", metavar="FILE", help="A plan file holding the deployment.")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", metavar="NAME", help="The deployment's name in --plan.")
    ] = None,
    model: Annotated[str, typer.Option(metavar="MODEL", help="The deployment's model.")] = "",
    gpu: Annotated[str, typer.Option(metavar="GPU", help="Catalog GPU id the server runs on.")] = "",
    engine: Annotated[
        str | None, typer.Option(metavar="NAME[@VERSION]", help="Engine (default: the page's).")
    ] = None,
    bits: Annotated[int | None, typer.Option(metavar="BITS", help="Weight width.")] = None,
    quant: Annotated[str | None, typer.Option(metavar="FORMAT", help="Exact weight format.")] = None,
    ctx: Annotated[int, typer.Option(metavar="TOKENS", help="Context per request (max_model_len).")] = 4096,
    users: Annotated[int, typer.Option(metavar="N", help="Users when the page does not say.")] = 1,
    tp: Annotated[int, typer.Option(metavar="N", help="Tensor-parallel GPUs.")] = 1,
    gpu_util: Annotated[
        float | None, typer.Option("--gpu-util", metavar="SHARE", help="gpu_memory_utilization.")
    ] = None,
    max_num_seqs: Annotated[
        int | None, typer.Option("--max-num-seqs", metavar="N", help="max_num_seqs.")
    ] = None,
    calibration: CalibrationOpt = None,
    url: Annotated[
        str | None, typer.Option(metavar="URL", help="Fetch /metrics live (5 s timeout, same host only).")
    ] = None,
    write_profile: Annotated[
        Path | None,
        typer.Option(
            "--write-profile",
            metavar="FILE",
            help="Store the measured KV pool as a calibration profile (vLLM).",
        ),
    ] = None,
    fmt: Annotated[str | None, _format_opt(DIAGNOSE_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    online: OnlineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Hold /metrics snapshots of a running server against the assessment of the same deployment.

    Observed vs planned: KV capacity, requests running and waiting, TTFT and TPOT medians; findings
    a planner acts on. Exit 0 when the server agrees with the plan within its tolerances, 1 when a
    figure breaches it (for cron or CI), 2 for bad input."""
    from vramcalc.core.assess import Deployment, LayoutKind
    from vramcalc.core.engines.base import EngineSettings
    from vramcalc.core.observe import observe as hold
    from vramcalc.readings.metrics import fetch_metrics, parse_metrics

    fmt_name = _pick_format(fmt, json_out, DIAGNOSE_FORMATS)
    from vramcalc.readings.snapshots import read_snapshots

    pages, readings = read_snapshots([str(p) for p in snapshots or []], sys.stdin)
    if url is not None:
        pages.append(parse_metrics(fetch_metrics(url), url))
    if not pages and not readings:
        raise SpecError(
            "give saved /metrics pages or nvidia-smi outputs (SNAPSHOT...) or --url http://host:port/metrics"
        )
    cat = _catalog(catalog)
    if plan is not None:
        from vramcalc.plans import deployment_named

        _observed(hold(pages, deployment_named(plan, deployment, cat), readings), fmt_name, output,
                  write_profile, pages)  # fmt: skip
        return
    if not model or not gpu:
        raise SpecError(
            "observe needs the deployment: --plan FILE --deployment NAME, or --model MODEL --gpu GPU"
        )
    if bits is not None and quant is not None:
        raise SpecError("give --bits or --quant, not both")
    resolved = _resolve(model, cat, online)
    gpu_spec = cat.gpus.get(gpu)
    chosen = engine or (pages[-1].engine if pages else resolved.default_engine)
    layout: LayoutKind = "tensor-parallel" if tp > 1 else "single"
    d = Deployment(
        model=resolved.spec,
        gpu=gpu_spec,
        users=users,
        ctx_tokens=ctx,
        count=tp,
        layout=layout,
        engine=chosen,
        bits=bits if quant is None else None,
        quant=quant,
        settings=EngineSettings(
            gpu_util=gpu_util,
            max_num_seqs=max_num_seqs,
            measured=None
            if calibration is None
            else _measured(calibration, engine=chosen, model=resolved.spec.id, gpu=gpu_spec.id),
        ),
        stored=resolved.stored,
    )
    _observed(hold(pages, d, readings), fmt_name, output, write_profile, pages)


def _observed(
    result: Any, fmt_name: str, output: Path | None, write_profile: Path | None, pages: list[Any]
) -> None:
    from vramcalc import render

    if write_profile is not None:
        from vramcalc.core.observe import kv_profile
        from vramcalc.profiles import profile_text

        if not pages:
            raise SpecError("--write-profile: needs a vLLM /metrics page")
        _write_atomically(
            write_profile, profile_text(kv_profile(result, pages[-1].source.rsplit("/", 1)[-1]))
        )
    if fmt_name == "json":
        _emit(render.to_json(render.observe_dict(result)), output)
    else:
        _emit(render.observe_text(result), output)
    if result.problems:
        raise typer.Exit(1)


def _write_atomically(path: Path, text: str | Iterator[str]) -> None:
    """Write to a temporary file next to `path`, then rename: a reader never sees half a report."""
    import contextlib
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise VramcalcError(f"--output {path}: cannot write there ({exc.strerror})") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report gets the usual mode, as `>` would
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.writelines([text] if isinstance(text, str) else text)
        Path(tmp).replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise VramcalcError(f"--output {path}: cannot write ({exc.strerror})") from exc


@app.command(cls=_Command)
def check(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH", help="Plan files, directories (every *.yaml/*.yml below) or glob patterns."
        ),
    ],
    fmt: Annotated[str | None, _format_opt(CHECK_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Check capacity plans: does every deployment fit its GPUs and meet its goals?

    Exit 0 when every deployment fits with its headroom and meets its goals, 1 when any does not
    (each failure says by how much and the smallest changes that pass), 2 when any input is invalid
    (then nothing is reported)."""
    from vramcalc import plans, render
    from vramcalc.core.check import check_all, users_curve

    fmt_name = _pick_format(fmt, json_out, CHECK_FORMATS)
    skipped: list[str] = []
    planned = plans.load_plans(paths, _catalog(catalog), skipped)
    track = _tracker(fmt_name)
    results = check_all(track(planned, "checking deployments") if track else planned)
    for note in skipped:
        sys.stderr.write(f"vramcalc: {note}\n")
    report: str | Iterator[str]
    if fmt_name == "markdown":
        report = render.check_markdown(results, [users_curve(r.planned) for r in results])
    else:
        writers: dict[str, Callable[[list[Any]], str | Iterator[str]]] = {
            "text": render.check_text,
            "json": render.check_json,
            "junit": render.check_junit,
            "github": render.check_github,
        }
        report = writers[fmt_name](results)
    _emit(report, output, render.check_summary(results))
    if not all(r.passed for r in results):
        raise typer.Exit(1)


@schema_app.command("plan", cls=_Command)
def schema_plan(
    fmt: Annotated[str | None, _format_opt(("json",))] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print the JSON Schema of plan files (for yaml-language-server and other editors)."""
    from vramcalc import plans, render

    _pick_format(fmt, json_out, ("json",))
    _emit(render.to_json(plans.plan_schema()), output)


EMIT_ENGINES = ("vllm", "sglang", "llama.cpp", "ollama")


@plan_app.command("emit", cls=_Command)
def plan_emit(
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="A plan file (or a directory of them).")],
    engine: Annotated[
        str | None,
        typer.Option(
            metavar="ENGINE",
            help="The engine to launch: vllm, sglang, llama.cpp or ollama; it must be the one the plan "
            "was checked with (default: it).",
        ),
    ] = None,
    deployment: Annotated[
        str | None, typer.Option(metavar="NAME", help="Only the deployment with this name.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Print the launch even for a deployment that fails its check.")
    ] = False,
    fmt: Annotated[str | None, _format_opt(EMIT_FORMATS)] = None,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    catalog: CatalogOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print the launch command or environment for each deployment, with the settings it was checked with.

    Exit 0 when every chosen deployment passes its check; 1, printing nothing but the failures, when
    any does not (--force prints the launch anyway); 2 on bad input."""
    from vramcalc import plans, render
    from vramcalc.core import emit
    from vramcalc.core.check import check

    fmt_name = _pick_format(fmt, json_out, EMIT_FORMATS)
    if engine is not None and engine not in EMIT_ENGINES:
        raise VramcalcError(f"unknown engine {engine!r} for --engine; choose {_choices(EMIT_ENGINES)}")
    chosen = emit.select(plans.load_plans([plan], _catalog(catalog)), engine, deployment)
    failed = [r for r in map(check, chosen) if not r.passed]
    for r in failed:
        kind = "warning" if force else "error"
        sys.stderr.write(
            f"vramcalc: {kind}: {r.planned.name} does not pass its check: {render.miss_text(r, r.misses[0])}"
            + ("" if force else "; fix the plan (vramcalc check shows the changes that pass) or pass --force")
            + "\n"
        )
    if failed and not force:
        raise typer.Exit(1)
    launches = [emit.launch(p) for p in chosen]
    shown = (
        render.to_json(render.launch_dict(launches)) if fmt_name == "json" else render.launch_text(launches)
    )
    _emit(shown, output)


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"vramcalc: error: {message}\n")
    raise SystemExit(code)


# Digits an integer option may have: every bound in vramcalc.limits is far below 10^18.
_MAX_OPTION_INT = 10**18


def _checked_number(value: Any) -> str | None:
    """Why an option's value is refused (NaN, an infinity, an integer of 19 or more digits), or None."""
    import math

    for item in value if isinstance(value, list | tuple) else (value,):
        if isinstance(item, float) and not math.isfinite(item):
            return f"{item} is not a finite number"
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _MAX_OPTION_INT:
            return f"an integer of {len(str(abs(item))) if abs(item) < 10**4000 else 'thousands of'} digits is out of range"
    return None


def _guard_numbers(command: Any) -> None:
    """Make every option and argument of every command refuse NaN, infinities and integers of 19 or
    more digits once parsed, before any command sees them (the parser reads 'nan', 'inf' and
    400-digit integers as valid)."""
    for param in getattr(command, "params", ()):
        parse = param.process_value

        def checked(ctx: Any, value: Any, parse: Any = parse, param: Any = param) -> Any:
            parsed = parse(ctx, value)
            why = _checked_number(parsed)
            if why is not None:
                raise typer.BadParameter(why, ctx=ctx, param=param)
            return parsed

        param.process_value = checked
    for sub in getattr(command, "commands", {}).values():
        _guard_numbers(sub)


def _discard_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's last flush of what could not
    be written cannot fail again (and turn the exit status into 120)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's captured stdout)
        pass


class _WriteFailed(BaseException):
    """Writing the output failed (a closed pipe, a full disk). A BaseException, so that no handler
    between the write and main() (typer's own exits 1 on a closed pipe) takes it for another error."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class _Stdout:
    """sys.stdout while a command runs: the same stream, but a failed write raises _WriteFailed."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            try:
                return int(self._stream.write(text))
            except UnicodeEncodeError:  # a file name that is not valid UTF-8, on a strict stream
                encoding = getattr(self._stream, "encoding", None) or "utf-8"
                return int(self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding)))
        except OSError as exc:
            raise _WriteFailed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _WriteFailed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# A closed pipe ends the process as SIGPIPE would (the shell's 128 + 13 = 141), without a message:
# `vramcalc check plans/ | head -1` is not an error worth a line, and it must not read as success.
CLOSED_PIPE_EXIT = 128 + 13


def _internal_error(exc: BaseException) -> NoReturn:
    """The last net: an exception no reader or validator turned into a VramcalcError. Every one is
    a bug; the test suite fails whenever this fires (tests/conftest.py)."""
    _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)")


_built: dict[tuple[int, str | None], Any] = {}


def _command(args: list[str] | None = None) -> Any:
    """The click command tree with its numbers guarded, holding only the invoked command when the
    first word names one (typer builds every parameter of every command it is given: ~20 ms for
    the whole tree on each run); the whole tree for `--help`, no command or an unknown word (its
    "no such command" lists them all). Built once per process and name."""
    words = [a for a in (sys.argv[1:] if args is None else args) if not a.startswith("-")]
    name = words[0] if words else None
    commands = [c for c in app.registered_commands if (c.name or c.callback.__name__) == name]  # type: ignore[union-attr]
    groups = [g for g in app.registered_groups if g.name == name]
    if not (commands or groups):
        name = None
    key = (id(app), name)
    if key not in _built:
        tree = app
        if name is not None:
            tree = copy.copy(app)
            tree.registered_commands, tree.registered_groups = commands, groups
        command = typer.main.get_command(tree)
        _guard_numbers(command)
        _built[key] = command
    return _built[key]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one boundary where errors become a line on stderr and exit 2."""
    stdout = sys.stdout
    try:
        command = _command(argv)
        sys.stdout = _Stdout(stdout)
        try:
            code = command.main(args=argv, prog_name="vramcalc", standalone_mode=False)
            sys.stdout.flush()  # a closed pipe or a full disk shows here, inside the boundary
        finally:
            sys.stdout = stdout
    except _WriteFailed as failed:
        _discard_stdout()
        if isinstance(failed.error, BrokenPipeError):
            raise SystemExit(CLOSED_PIPE_EXIT) from None
        _fail(f"cannot write output: {failed.error.strerror or failed.error}")
    except VramcalcError as exc:
        if _debug:
            traceback.print_exc()
        *first, last = str(exc).splitlines() or [""]  # several bad inputs: one line each
        for line in first:
            sys.stderr.write(f"vramcalc: error: {line}\n")
        _fail(last, exc.exit_code)
    except BrokenPipeError:  # stderr (or a stream we did not wrap) closed: nothing left to say
        _discard_stdout()
        raise SystemExit(CLOSED_PIPE_EXIT) from None
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
        _internal_error(exc)
    raise SystemExit(code if isinstance(code, int) else 0)
