"""Plan files: the deployments a team keeps next to its code, validated and resolved against the catalog."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from vramcalc.catalog import Catalog, _line_of, read_yaml_mapping, validate_spec
from vramcalc.core.assess import Request
from vramcalc.core.check import Planned
from vramcalc.core.engines import resolve_engine
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.formats import resolve_format
from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS
from vramcalc.errors import PlanError, VramcalcError

if TYPE_CHECKING:
    from vramcalc.importers import ResolvedModel

# A plan is a few KB; anything far larger is not one (and is refused before it is read).
MAX_PLAN_FILE_BYTES = 1_000_000
PLAN_SUFFIXES = (".yaml", ".yml")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Layout = Literal["single", "tensor-parallel", "pipeline-parallel", "replicas"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineOptions(_Strict):
    """Engine settings; each one left out takes the engine's own default."""

    gpu_util: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="vLLM --gpu-memory-utilization / SGLang --mem-fraction-static (share of the GPU).",
    )
    max_num_seqs: int | None = Field(
        default=None,
        gt=0,
        description="vLLM --max-num-seqs / SGLang --max-running-requests / llama.cpp -np / "
        "OLLAMA_NUM_PARALLEL: sequences at once; more users wait.",
    )
    max_num_batched_tokens: int | None = Field(
        default=None, gt=0, description="vLLM --max-num-batched-tokens / SGLang --chunked-prefill-size."
    )
    ubatch: int | None = Field(default=None, gt=0, description="llama.cpp -ub / Ollama num_batch.")
    flash_attn: bool | None = Field(
        default=None, description="Flash attention: llama.cpp -fa, OLLAMA_FLASH_ATTENTION, transformers."
    )
    cpu_offload_gb: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="vLLM --cpu-offload-gb: GiB of weights kept in host memory, copied over PCIe every step.",
    )
    prompt_tokens: int | None = Field(
        default=None, gt=0, description="transformers only: prompt tokens inside ctx (default: ctx)."
    )


class Goals(_Strict):
    """Service goals, judged with the speed model at the planned load (each replica's share of users)."""

    min_tokens_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Slowest acceptable decode speed per user, tokens/s, with `users` users.",
    )
    max_ttft_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest acceptable time to first token, seconds, for a prompt of `ctx` tokens.",
    )


class Deployment(_Strict):
    """One deployment: a model served by an engine on GPUs to a number of concurrent users."""

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=120,
        description="Name in reports and test cases (default: 'MODEL on GPU', e.g. 'gemma-2-27b on rtx-4090').",
    )
    model: str = Field(
        min_length=1, description="Catalog model id or alias (`vramcalc models list`), e.g. gemma-2-27b."
    )
    quant: str | None = Field(
        default=None,
        description=(
            "Exact weight format: bf16, fp16, fp8, awq-int4, gptq-int4, gptq-int8, nf4, mxfp4-moe, or GGUF "
            "Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, IQ4_XS (default: the checkpoint's own; Q4_K_M on "
            "llama.cpp/Ollama). Give quant or bits, not both."
        ),
    )
    bits: Literal[3, 4, 5, 6, 8, 16] | None = Field(
        default=None,
        description="Weight width; the engine's conventional format (4: awq-int4 on vLLM, Q4_K_M on llama.cpp).",
    )
    kv_dtype: Literal["auto", "bf16", "fp16", "fp8", "q8_0", "q4_0"] = Field(
        default="auto", description="KV cache dtype; auto is the model's dtype (f16 on llama.cpp/Ollama)."
    )
    engine: str = Field(
        default="vllm",
        # For editors; the validator below gives the error (with the closest name and known versions).
        json_schema_extra={"pattern": r"^(vllm|sglang|tgi|transformers|llama\.cpp|ollama)(@[0-9][0-9.]*)?$"},
        description="Serving engine NAME[@VERSION]: vllm, sglang, tgi, transformers, llama.cpp, ollama.",
    )
    settings: EngineOptions = Field(
        default_factory=EngineOptions, description="Engine settings (the engine's defaults where left out)."
    )
    ctx: int = Field(gt=0, description="Context tokens per user, prompt + output (vLLM --max-model-len).")
    users: int = Field(gt=0, description="Concurrent users (sequences in flight) the deployment must serve.")
    fill: float = Field(
        default=1.0, gt=0, le=1, description="Average share of ctx in use; 1.0 is the worst case."
    )
    shared_prefix: int = Field(
        default=0, ge=0, description="Tokens of a common system prompt held once (prefix caching)."
    )
    workers: int = Field(default=1, gt=0, description="Processes that each load the model.")
    output_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Output tokens per request, inside ctx (default 512, at most half of ctx): how long "
        "a request holds its KV cache, which sets the queue wait.",
    )
    host_bandwidth_gbs: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Host memory bandwidth, GB/s, for layers llama.cpp/Ollama keep in RAM (default 50).",
    )
    gpu: str = Field(
        min_length=1, description="Catalog GPU id or alias (`vramcalc gpus list`), e.g. rtx-4090."
    )
    gpu_count: int = Field(default=1, ge=1, le=64, description="GPUs in the deployment.")
    layout: Layout | None = Field(
        default=None,
        validate_default=True,
        description=(
            "How the GPUs share the work: single (one GPU), tensor-parallel (weights and KV heads split), "
            "pipeline-parallel (layers split), replicas (each GPU its own copy serving its share of users). "
            "Default single; required when gpu_count > 1."
        ),
    )
    headroom: float = Field(
        default=0.10, ge=0, lt=1, description="Share of each GPU's usable memory kept free (0.10 = 10%)."
    )
    goals: Goals = Field(default_factory=Goals, description="Service goals (none by default).")

    @field_validator("quant")
    @classmethod
    def _known_format(cls, quant: str | None) -> str | None:
        if quant is not None:
            try:
                resolve_format(quant)
            except VramcalcError as exc:
                raise ValueError(str(exc)) from exc
        return quant

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str) -> str:
        try:
            resolve_engine(engine)
        except VramcalcError as exc:
            raise ValueError(str(exc)) from exc
        return engine

    @field_validator("bits")
    @classmethod
    def _one_width(cls, bits: int | None, info: ValidationInfo) -> int | None:
        if bits is not None and info.data.get("quant") is not None:
            raise ValueError("give quant or bits, not both (remove one)")
        return bits

    @field_validator("layout")
    @classmethod
    def _layout_matches_count(cls, layout: Layout | None, info: ValidationInfo) -> Layout | None:
        count = info.data.get("gpu_count", 1)
        if count == 1 and layout not in (None, "single"):
            raise ValueError(f"{layout} needs gpu_count of 2 or more (or use layout: single)")
        if count > 1 and layout in (None, "single"):
            raise ValueError(
                f"gpu_count {count} needs layout: tensor-parallel, pipeline-parallel or replicas"
            )
        return layout


class Plan(_Strict):
    """A vramcalc capacity plan: the deployments `vramcalc check` verifies and `vramcalc plan emit` launches."""

    deployments: tuple[Deployment, ...] = Field(
        min_length=1, description="The deployments in this file, each checked on its own."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Plan:
        names = [d.name for d in self.deployments if d.name]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique in a file: {', '.join(dupes)} repeats")
        return self


def plan_schema() -> dict[str, object]:
    """The JSON Schema of a plan file, for editors (yaml-language-server) and CI."""
    return {"$schema": SCHEMA_DIALECT, **Plan.model_json_schema()}


def plan_paths(args: Sequence[str]) -> list[Path]:
    """Files, directories (every *.yaml / *.yml below them, hidden ones skipped) and glob patterns,
    in the order given, each file once."""
    found: list[Path] = []
    errors: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in PLAN_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                errors.append(f"{arg}: no plan files (*.yaml, *.yml) in this directory")
            found += files
        elif path.is_file():
            found.append(path)
        elif any(c in arg for c in "*?["):
            # glob.glob, not Path.glob: a pattern may be absolute.
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if Path(m).is_file())  # noqa: PTH207
            if not matches:
                errors.append(f"{arg}: no file matches this pattern")
            found += matches
        else:
            errors.append(f"{arg}: no such file or directory")
    if errors:
        raise PlanError(errors)
    return list(dict.fromkeys(found))


def read_plan(path: Path) -> Plan:
    """One plan file, validated; errors name the file, line and field."""
    data = read_yaml_mapping(
        path, max_bytes=MAX_PLAN_FILE_BYTES, what="plan file", expected="plan fields (deployments: [...])"
    )
    return validate_spec(Plan, data, path)


def resolve_model(catalog: Catalog, name: str, plan_dir: Path) -> ResolvedModel:
    """A plan's model through the one resolver every command uses (catalog ids and aliases, local
    config.json / safetensors / GGUF files, the Hugging Face cache); a relative local path is taken
    relative to the plan file."""
    from vramcalc.importers import resolve_model as resolve

    local = plan_dir / name
    if name.startswith(".") and local.exists():
        name = str(local)
    return resolve(name, catalog)


def default_name(d: Deployment) -> str:
    return d.name or (f"{d.model} on {d.gpu}" if d.gpu_count == 1 else f"{d.model} on {d.gpu_count}x {d.gpu}")


def _planned(path: Path, index: int, d: Deployment, catalog: Catalog) -> Planned:
    line = _line_of(path, ("deployments", index))

    def where(field: str) -> str:
        return f"{path}:{_line_of(path, ('deployments', index, field)) or line}: deployments.{index}.{field}"

    try:
        resolved = resolve_model(catalog, d.model, path.parent)
        model = resolved.spec
    except VramcalcError as exc:
        raise PlanError([f"{where('model')}: {exc}"]) from exc
    try:
        gpu = catalog.gpus.get(d.gpu)
    except VramcalcError as exc:
        raise PlanError([f"{where('gpu')}: {exc}"]) from exc
    profile, _ = resolve_engine(d.engine)  # valid: the schema checked it
    if d.layout == "tensor-parallel" and "tp" not in profile.settings:
        raise PlanError(
            [
                f"{where('layout')}: {profile.name} has no tensor parallelism; use layout: pipeline-parallel "
                "(layers split over the GPUs) or replicas"
            ]
        )
    if d.ctx > model.max_position_embeddings:
        raise PlanError(
            [
                f"{where('ctx')}: {d.ctx:,} tokens exceed {model.id}'s max_position_embeddings "
                f"({model.max_position_embeddings:,}); lower ctx"
            ]
        )
    if d.output_tokens is not None and d.output_tokens >= d.ctx:
        raise PlanError(
            [
                f"{where('output_tokens')}: {d.output_tokens:,} must be below ctx {d.ctx:,} (ctx holds prompt + output)"
            ]
        )
    s = d.settings
    request = Request(
        model=model,
        users=d.users,
        ctx_tokens=d.ctx,
        engine=d.engine,
        bits=d.bits,
        quant=d.quant,
        kv_dtype=d.kv_dtype,
        fill=d.fill,
        shared_prefix_tokens=d.shared_prefix,
        headroom=d.headroom,
        min_tokens_per_s=d.goals.min_tokens_per_s or 0.0,
        max_ttft_s=d.goals.max_ttft_s,
        workers=d.workers,
        output_tokens=d.output_tokens,
        host_bandwidth_gbs=d.host_bandwidth_gbs or HOST_MEMORY_BANDWIDTH_GBS,
        stored=resolved.stored,
        settings=EngineSettings(
            s.gpu_util,
            s.max_num_seqs,
            s.max_num_batched_tokens,
            s.ubatch,
            s.flash_attn,
            1,
            s.prompt_tokens,
            s.cpu_offload_gb,
        ),
    )
    return Planned(
        name=default_name(d),
        source=path.as_posix(),
        line=line,
        request=request,
        gpu=gpu,
        count=d.gpu_count,
        layout=d.layout or "single",
    )


def load_plans(args: Iterable[str], catalog: Catalog) -> list[Planned]:
    """Every deployment in the files that `args` name, resolved against the catalog. All problems
    are collected, one line each, and raised together: nothing is checked when any input is bad."""
    planned: list[Planned] = []
    errors: list[str] = []
    for path in plan_paths(list(args)):
        try:
            plan = read_plan(path)
        except PlanError as exc:
            errors += exc.messages
            continue
        except VramcalcError as exc:
            errors.append(str(exc))
            continue
        for i, d in enumerate(plan.deployments):
            try:
                planned.append(_planned(path, i, d, catalog))
            except PlanError as exc:
                errors += exc.messages
    if errors:
        raise PlanError(errors)
    return planned
