"""The typer CLI: parse options, load the catalog, call the core once, render, exit 0/1/2."""

from __future__ import annotations

import enum
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

# vramcalc uses no pydantic plugins; looking them up scans every installed distribution's
# entry points (~25 ms of importlib.metadata on each run). Measured by scripts/bench_startup.py.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from vramcalc import __version__
from vramcalc.errors import VramcalcError

if TYPE_CHECKING:
    from vramcalc.catalog import Catalog

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

_debug = False

ENGINES = ("vllm", "sglang", "tgi", "transformers", "llama.cpp", "ollama")
GGUF_ENGINES = ("llama.cpp", "ollama")


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


def _catalog(dirs: list[Path] | None) -> Catalog:
    from vramcalc.catalog import Catalog

    return Catalog.from_environment(dirs or [])


def _out(text: str) -> None:
    sys.stdout.write(text)


def _print(renderable: object) -> None:
    from rich.console import Console

    Console(highlight=False).print(renderable)


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
    model: Annotated[
        str, typer.Argument(help="Catalog id or alias, e.g. gemma-2-27b or google/gemma-2-27b-it.")
    ],
    bits: Annotated[
        int | None,
        typer.Option(
            help="Weight width; picks the conventional format for the engine (4 -> int4 g128 / Q4_K_M)."
        ),
    ] = None,
    quant: Annotated[
        str | None, typer.Option(help="Exact weight format, e.g. awq-int4, fp8, nf4, Q4_K_M, Q8_0.")
    ] = None,
    ctx: Annotated[int, typer.Option(help="Context tokens per user (prompt + output).")] = 4096,
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
        str | None, typer.Option(help="Catalog GPU id to check the fit against (exit 1 if it does not fit).")
    ] = None,
    engine: Annotated[str, typer.Option(help=f"Serving engine: {', '.join(ENGINES)}.")] = "vllm",
    allow_long_ctx: Annotated[
        bool, typer.Option("--allow-long-ctx", help="Allow --ctx above the model's max_position_embeddings.")
    ] = False,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    json_out: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show every term's formula and source.")] = False,
    catalog: CatalogOpt = None,
) -> None:
    """Estimate GPU memory for MODEL at --ctx tokens per user and --users concurrent users."""
    from vramcalc.core.estimate import Workload
    from vramcalc.core.estimate import estimate as run_estimate
    from vramcalc.core.formats import format_for_bits, resolve_format, resolve_kv_dtype
    from vramcalc.errors import SpecError

    if engine not in ENGINES:
        import difflib

        close = difflib.get_close_matches(engine, ENGINES, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SpecError(f"unknown --engine {engine!r}{hint} (known: {', '.join(ENGINES)})")
    if bits is not None and quant is not None:
        raise SpecError("give --bits or --quant, not both")
    cat = _catalog(catalog)
    spec = cat.models.get(model)
    gpu_spec = cat.gpus.get(gpu) if gpu else None
    gguf = engine in GGUF_ENGINES
    if quant is not None:
        fmt = resolve_format(quant)
    elif bits is not None:
        fmt = format_for_bits(bits, gguf)
    else:
        fmt = resolve_format(_native_format(spec.native_weight_format, spec.torch_dtype, gguf))
    kv = resolve_kv_dtype(_auto_kv(spec.torch_dtype, gguf) if kv_dtype == "auto" else kv_dtype)
    work = Workload(
        ctx_tokens=ctx,
        users=users,
        fill=fill,
        workers=workers,
        shared_prefix_tokens=shared_prefix,
        allow_long_ctx=allow_long_ctx,
    )
    result = run_estimate(spec, work, fmt, kv, gpu_spec, engine)

    from vramcalc import render

    fmt_name = OutputFormat.json if json_out else output
    if fmt_name is OutputFormat.json:
        _out(render.to_json(render.estimate_dict(result)))
    elif fmt_name is OutputFormat.markdown:
        _out(render.estimate_markdown(result, explain))
    elif fmt_name is OutputFormat.csv:
        _out(render.estimate_csv(result))
    else:
        _print(render.estimate_table(result, explain))
    if result.gpu is not None and not result.gpu.fits:
        raise typer.Exit(1)


def _native_format(native: str | None, dtype: str | None, gguf: bool) -> str:
    # Source: Ollama's library tags default to Q4_K_M; PyTorch engines load the checkpoint as shipped.
    if gguf:
        return "Q4_K_M"
    return native or ("fp16" if dtype == "float16" else "bf16")


def _auto_kv(dtype: str | None, gguf: bool) -> str:
    # Source: vLLM kv_cache_dtype "auto" = model dtype; llama.cpp -ctk/-ctv default f16.
    if gguf or dtype == "float16":
        return "fp16"
    return "bf16"


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
    model: Annotated[str, typer.Argument(help="Catalog id or alias.")],
    json_out: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Show one model's architecture, computed counts and sources."""
    from vramcalc import render

    spec = _catalog(catalog).models.get(model)
    data = render.model_detail(spec)
    if json_out:
        _out(render.to_json(data))
    else:
        _print(render.detail_table(spec.name, data))


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
        _fail(str(exc), exc.exit_code)
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
