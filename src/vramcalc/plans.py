"""Plan files: the deployments a team keeps next to its code, validated and resolved against the catalog."""

from __future__ import annotations

import collections
import fnmatch
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from vramcalc import files
from vramcalc import limits as lim
from vramcalc.catalog import Catalog, YamlNode, line_in, read_yaml_document, validate_spec
from vramcalc.core.assess import Request
from vramcalc.core.check import Planned
from vramcalc.core.engines import resolve_engine
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.formats import resolve_format
from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS
from vramcalc.errors import PlanError, SpecError, VramcalcError
from vramcalc.limits import MAX_PLAN_FILES, MAX_WALK_ENTRIES
from vramcalc.specs import one_line

if TYPE_CHECKING:
    from vramcalc.core.assess import Deployment as CoreDeployment
    from vramcalc.importers import ResolvedModel

# A plan is a few KB; anything far larger is not one (and is refused before it is read).
MAX_PLAN_FILE_BYTES = 1_000_000
PLAN_SUFFIXES = (".yaml", ".yml")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Layout = Literal["single", "tensor-parallel", "pipeline-parallel", "replicas"]


class _Strict(BaseModel):
    # No NaN or infinity in any float field (YAML .nan / .inf).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


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
        le=lim.MAX_USERS,
        description="vLLM --max-num-seqs / SGLang --max-running-requests / llama.cpp -np / "
        "OLLAMA_NUM_PARALLEL: sequences at once; more users wait.",
    )
    max_num_batched_tokens: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_CTX_TOKENS,
        description="vLLM --max-num-batched-tokens / SGLang --chunked-prefill-size.",
    )
    ubatch: int | None = Field(
        default=None, gt=0, le=lim.MAX_CTX_TOKENS, description="llama.cpp -ub / Ollama num_batch."
    )
    flash_attn: bool | None = Field(
        default=None, description="Flash attention: llama.cpp -fa, OLLAMA_FLASH_ATTENTION, transformers."
    )
    cpu_offload_gb: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GIB,
        allow_inf_nan=False,
        description="vLLM --cpu-offload-gb: GiB of weights kept in host memory, copied over PCIe every step.",
    )
    prompt_tokens: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_CTX_TOKENS,
        description="Same as the deployment's prompt_tokens (kept for plans written before it moved there).",
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="vLLM --enforce-eager / SGLang --disable-cuda-graph: no CUDA graphs, slower steps.",
    )
    sampler: Literal["flashinfer", "pytorch", "v2"] | None = Field(
        default=None,
        description="vLLM profile's sampler path (v2: the V2 model runner's logits-only profile); pins the "
        "regime (unset: sized on the larger, pytorch).",
    )
    mxfp4_backend: Literal["marlin", "triton", "flashinfer"] | None = Field(
        default=None,
        description="vLLM MXFP4 MoE kernel (gpt-oss); pins the regime (unset: sized on the larger layout).",
    )
    nccl_nvls: bool | None = Field(
        default=None,
        description="vLLM: NCCL's NVLS buffers on an NVSwitch board at tensor parallel 3+ (false: "
        "NCCL_NVLS_ENABLE=0); pins the regime (unset: sized with them, the default).",
    )
    gpu_p2p: bool | None = Field(
        default=None,
        description="vLLM at tensor parallel 2+: the GPUs reach each other peer to peer (NVLink, PCIe "
        "P2P); NCCL keeps its ring buffers on the GPU only then (unset: GeForce no, other cards yes, "
        "and the figures show both as a range).",
    )
    mmproj: bool | None = Field(
        default=None,
        description="llama.cpp --mmproj: load the vision projector file beside a text GGUF (vision models).",
    )
    n_gpu_layers: int | None = Field(
        default=None,
        ge=0,
        description="llama.cpp -ngl: layers on the GPU, the output layer counted (unset: --fit's choice).",
    )
    n_cpu_moe: int | None = Field(
        default=None,
        ge=1,
        description="llama.cpp --n-cpu-moe N (MoE models): the routed experts of the first N layers stay in "
        "RAM and the CPU multiplies them.",
    )


class Goals(_Strict):
    """Service goals, judged with the speed model at the planned load (each replica's share of users)."""

    min_tokens_per_s: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_TOKENS_PER_S,
        description="Slowest acceptable decode speed per user, tokens/s, with `users` users.",
    )
    max_ttft_s: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_SECONDS,
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
    ctx: int = Field(
        gt=0,
        le=lim.MAX_CTX_TOKENS,
        description="Context tokens per user, prompt + output (vLLM --max-model-len).",
    )
    users: int = Field(
        gt=0,
        le=lim.MAX_USERS,
        description="Concurrent users (sequences in flight) the deployment must serve.",
    )
    fill: float = Field(
        default=1.0, gt=0, le=1, description="Average share of ctx in use; 1.0 is the worst case."
    )
    shared_prefix: int = Field(
        default=0,
        ge=0,
        le=lim.MAX_CTX_TOKENS,
        description="Tokens of a common system prompt held once (prefix caching).",
    )
    workers: int = Field(
        default=1, gt=0, le=lim.MAX_WORKERS, description="Processes that each load the model."
    )
    output_tokens: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_CTX_TOKENS,
        description="Output tokens per request, inside ctx (default 512, at most half of ctx): how long "
        "a request holds its KV cache, which sets the queue wait.",
    )
    prompt_tokens: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_CTX_TOKENS,
        description="Prompt tokens per request, inside ctx (default: ctx less output_tokens): sets the "
        "time to first token and the prefill share of each step.",
    )
    host_bandwidth_gbs: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_BANDWIDTH_GBS,
        allow_inf_nan=False,
        description="Host memory bandwidth, GB/s, for layers llama.cpp/Ollama keep in RAM (default 50).",
    )
    calibration: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="A calibration profile (`vramcalc calibrate LOG --save FILE`), relative to this plan: "
        "its measured terms replace the engine's defaults (same engine, model and GPU).",
    )
    gpu: str = Field(
        min_length=1, description="Catalog GPU id or alias (`vramcalc gpus list`), e.g. rtx-4090."
    )
    gpu_count: int = Field(default=1, ge=1, le=lim.MAX_TP, description="GPUs in the deployment.")
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

    _one_line = field_validator("name")(one_line)

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
        counts = collections.Counter(d.name for d in self.deployments if d.name)  # one pass, not n^2
        dupes = sorted(n for n, k in counts.items() if k > 1)
        if dupes:
            shown = ", ".join(dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
            raise ValueError(f"deployment names must be unique in a file: {shown} repeats")
        return self


def plan_schema() -> dict[str, object]:
    """The JSON Schema of a plan file, for editors (yaml-language-server) and CI."""
    return {"$schema": SCHEMA_DIALECT, **Plan.model_json_schema()}


def _scan(folder: Path, budget: list[int]) -> list[os.DirEntry[str]]:
    """The entries of one directory (none when it cannot be read), counted against `budget`."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (OSError, ValueError):
        return []
    budget[0] -= len(entries)
    if budget[0] < 0:
        raise PlanError(
            [
                f"{folder}: more than {MAX_WALK_ENTRIES:,} directory entries below the PATHs; name the plans' folder"
            ]
        )
    return entries


def _is_dir(entry: os.DirEntry[str], follow: bool) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False


def _match(base: Path, parts: Sequence[str], budget: list[int]) -> Iterator[Path]:
    """Paths below `base` matching the pattern `parts` (glob rules: `*` and `?` stay inside one
    name and skip hidden ones, `**` is any number of directories). `**` never descends into a
    symlinked directory, so links that loop cannot make the walk endless."""
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        yield from _match(base, rest, budget)
        for entry in _scan(base, budget):
            if not entry.name.startswith(".") and _is_dir(entry, follow=False):
                yield from _match(Path(entry.path), parts, budget)
        return
    if not glob.has_magic(head):
        if files.kind(base / head) != "missing":
            yield from _match(base / head, rest, budget)
        return
    for entry in _scan(base, budget):
        if (entry.name.startswith(".") and not head.startswith(".")) or not fnmatch.fnmatchcase(
            entry.name, head
        ):
            continue
        if not rest or _is_dir(entry, follow=True):
            yield from _match(Path(entry.path), rest, budget)


def _expand(pattern: str, budget: list[int]) -> list[Path]:
    """The regular files a glob pattern names (recursive `**`, absolute or relative)."""
    path = Path(pattern)
    anchor = Path(path.anchor) if path.is_absolute() else Path()
    parts = path.parts[1:] if path.is_absolute() else path.parts
    return sorted(p for p in _match(anchor, parts, budget) if files.is_file(p))


def plan_paths(args: Sequence[str]) -> list[Path]:
    """Files, directories (every *.yaml / *.yml below them, hidden ones skipped) and glob patterns,
    in the order given, each file once. Symlinked directories are not followed while recursing, and
    at most MAX_PLAN_FILES files and MAX_WALK_ENTRIES directory entries are looked at."""
    found: list[Path] = []
    errors: list[str] = []
    budget = [MAX_WALK_ENTRIES]
    for arg in args:
        path = Path(arg)
        kind = files.kind(path)
        if kind == "dir":
            plans = [p for p in _expand(str(path / "**" / "*"), budget) if p.suffix in PLAN_SUFFIXES]
            if not plans:
                errors.append(f"{arg}: no plan files (*.yaml, *.yml) in this directory")
            found += plans
        elif kind == "file":
            found.append(path)
        elif kind == "special":
            errors.append(f"{arg}: not a regular file (a FIFO, device or socket); give a plan file")
        elif glob.has_magic(arg):
            matches = _expand(arg, budget)
            if not matches:
                errors.append(f"{arg}: no file matches this pattern")
            found += matches
        else:
            errors.append(f"{arg}: no such file or directory")
        if len(found) > MAX_PLAN_FILES:
            raise PlanError(
                [f"{arg}: the PATHs name more than {MAX_PLAN_FILES:,} files; check fewer at once"]
            )
    if errors:
        raise PlanError(errors)
    return list(dict.fromkeys(found))


def read_plan(path: Path) -> Plan:
    """One plan file, validated; errors name the file, line and field."""
    return validate_spec(Plan, _read(path)[0], path)


def _read(path: Path) -> tuple[dict[str, object], YamlNode]:
    """A plan file's mapping and node tree, from one read of the file."""
    return read_yaml_document(
        path, max_bytes=MAX_PLAN_FILE_BYTES, what="plan file", expected="plan fields (deployments: [...])"
    )


def resolve_model(catalog: Catalog, name: str, plan_dir: Path) -> ResolvedModel:
    """A plan's model through the one resolver every command uses (catalog ids and aliases, local
    config.json / safetensors / GGUF files, the Hugging Face cache); a relative local path is taken
    relative to the plan file."""
    from vramcalc.importers import resolve_model as resolve

    local = plan_dir / name
    if name.startswith(".") and files.kind(local) != "missing":
        name = str(local)
    return resolve(name, catalog)


def default_name(d: Deployment) -> str:
    return d.name or (f"{d.model} on {d.gpu}" if d.gpu_count == 1 else f"{d.model} on {d.gpu_count}x {d.gpu}")


def _planned(path: Path, index: int, d: Deployment, catalog: Catalog, node: YamlNode) -> Planned:
    line = line_in(node, ("deployments", index))

    def where(field: str) -> str:
        return f"{path}:{line_in(node, ('deployments', index, field)) or line}: deployments.{index}.{field}"

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
    measured = None
    if d.calibration is not None:
        from vramcalc.profiles import check_matches, read_profile

        measured_at = Path(d.calibration)
        measured_at = measured_at if measured_at.is_absolute() else path.parent / measured_at
        try:
            measured = read_profile(measured_at)
            check_matches(measured, measured_at, engine=d.engine, model=model.id, gpu=gpu.id)
        except VramcalcError as exc:
            raise PlanError([f"{where('calibration')}: {exc}"]) from exc
    s = d.settings
    if d.prompt_tokens is not None and s.prompt_tokens is not None:
        raise PlanError([f"{where('prompt_tokens')}: given twice (here and under settings); keep one"])
    prompt = d.prompt_tokens or s.prompt_tokens
    if prompt is not None and prompt + (d.output_tokens or 1) > d.ctx:
        raise PlanError(
            [
                f"{where('prompt_tokens')}: {prompt:,} + output_tokens {d.output_tokens or 1:,} is above ctx "
                f"{d.ctx:,} (ctx holds prompt + output); raise ctx or shorten the prompt"
            ]
        )
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
            prompt,
            s.cpu_offload_gb,
            s.enforce_eager,
            s.mmproj,
            measured,
            s.sampler,
            s.mxfp4_backend,
            s.nccl_nvls,
            s.gpu_p2p,
            s.n_cpu_moe,
            s.n_gpu_layers,
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


def load_plans(args: Iterable[str], catalog: Catalog, skipped: list[str] | None = None) -> list[Planned]:
    """Every deployment in the files that `args` name, resolved against the catalog. All problems
    are collected, one line each, and raised together: nothing is checked when any input is bad.
    Files found by walking a directory or glob that are not plans go to `skipped` (when given)."""
    planned: list[Planned] = []
    errors: list[str] = []
    arg_list = list(args)
    named = {Path(a) for a in arg_list}
    for path in plan_paths(arg_list):
        try:
            data, node = _read(path)  # one read and one parse of each file
            if path not in named and "deployments" not in data:
                # Found by walking a directory or a glob, with no top-level `deployments` (a
                # workflow, a catalog entry): not a plan, so it is skipped rather than refused.
                if skipped is not None:
                    skipped.append(f"skipped {path}: not a plan (no top-level deployments)")
                continue
            plan = validate_spec(Plan, data, path)
        except PlanError as exc:
            errors += exc.messages
            continue
        except VramcalcError as exc:
            errors.append(str(exc))
            continue
        for i, d in enumerate(plan.deployments):
            try:
                planned.append(_planned(path, i, d, catalog, node))
            except PlanError as exc:
                errors += exc.messages
    if errors:
        raise PlanError(errors)
    if not planned:
        raise PlanError([f"{', '.join(arg_list)}: no plan (a YAML file with deployments:) among these files"])
    return planned


def deployment_named(plan: Path, name: str | None, catalog: Catalog) -> CoreDeployment:
    """The deployment `name` of the plan file (its only one when `name` is None)."""
    import difflib

    planned = load_plans([str(plan)], catalog)
    if name is None and len(planned) == 1:
        return planned[0].deployment
    names = [p.name for p in planned]
    hit = next((p for p in planned if p.name == name), None)
    if hit is None:
        close = difflib.get_close_matches(name or "", names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"--deployment {name!r} is not in {plan}{hint} (it holds: {', '.join(names)})")
    return hit.deployment
