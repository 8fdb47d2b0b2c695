"""One entry point for every command: resolve names and defaults, plan the engine, estimate."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from vramcalc.core.engines import check_kv_dtype, check_settings, resolve_engine
from vramcalc.core.engines.base import Engine, EnginePlan, EngineSettings, EngineView
from vramcalc.core.estimate import Estimate, Workload, estimate, validate_workload
from vramcalc.core.formats import WeightFormat, format_for_bits, resolve_format, resolve_kv_dtype
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec


@dataclass(frozen=True, slots=True)
class Scenario:
    """An estimate and, when a GPU is named, what the engine will do on it."""

    estimate: Estimate
    engine: Engine
    view: EngineView | None


def default_format(model: ModelSpec, gguf: bool) -> WeightFormat:
    """The checkpoint as shipped for PyTorch engines; Q4_K_M for llama.cpp/Ollama.

    Source: Ollama's library tags default to Q4_K_M (ollama/ollama#1543, 2024-12).
    """
    if gguf:
        return resolve_format("Q4_K_M")
    return resolve_format(
        model.native_weight_format or ("fp16" if model.torch_dtype == "float16" else "bf16")
    )


def default_kv_dtype(model: ModelSpec, gguf: bool) -> str:
    """Source: vLLM/SGLang kv_cache_dtype "auto" = model dtype; llama.cpp -ctk/-ctv default f16."""
    return "fp16" if gguf or model.torch_dtype == "float16" else "bf16"


def _norm(name: str) -> str:
    return name.strip().upper().replace("-", "_")


def run(
    model: ModelSpec,
    workload: Workload,
    *,
    engine: str = "vllm",
    gpu: GpuSpec | None = None,
    bits: int | None = None,
    quant: str | None = None,
    kv_dtype: str = "auto",
    settings: EngineSettings | None = None,
    stored: WeightFormat | None = None,
) -> Scenario:
    """Resolve the engine (NAME[@VERSION]), weight format and KV dtype, then estimate once.

    `stored` is the format of a concrete file the user sized (with its measured bytes): it is the
    default, and it stands for --quant/--bits when they name the same format; another format is
    computed from the architecture.
    """
    profile, version = resolve_engine(engine)
    settings = settings or EngineSettings()
    validate_workload(model, workload)  # bounds first: the engine plans do arithmetic on them
    check_settings(profile, settings, model)
    if bits is not None and quant is not None:
        raise SpecError("give --bits or --quant, not both")
    if quant is not None and stored is not None and _norm(quant) == _norm(stored.name):
        fmt = stored
    elif quant is not None:
        fmt = resolve_format(quant, prefer_gguf=profile.gguf)
    elif bits is not None:
        fmt = format_for_bits(bits, profile.gguf, model.native_weight_format)
    else:
        fmt = stored or default_format(model, profile.gguf)
    if stored is not None and fmt.name == stored.name and fmt.kind == stored.kind:
        fmt = stored
    if fmt.is_gguf != profile.gguf:
        kind = "GGUF" if fmt.is_gguf else "PyTorch-checkpoint"
        raise SpecError(
            f"{profile.name} does not serve {kind} weights ({fmt.name}); "
            + ("use --engine llama.cpp or ollama" if fmt.is_gguf else "pick a GGUF format such as Q4_K_M")
        )
    kv = resolve_kv_dtype(default_kv_dtype(model, profile.gguf) if kv_dtype == "auto" else kv_dtype)
    check_kv_dtype(profile, kv)
    if profile.plan_reads_users:
        plan = profile.plan(model, workload, fmt, kv, gpu, settings, version)
        result = estimate(model, workload, fmt, kv, plan, gpu)
        view = profile.view(result, gpu, settings, version) if gpu is not None else None
        return Scenario(result, profile, view)
    plan, view = _plan_and_view(profile, model, replace(workload, users=1), fmt, kv, gpu, settings, version)
    return Scenario(estimate(model, workload, fmt, kv, plan, gpu), profile, view)


@functools.lru_cache(maxsize=1024)
def _plan_and_view(
    profile: Engine,
    model: ModelSpec,
    workload: Workload,
    fmt: WeightFormat,
    kv: str,
    gpu: GpuSpec | None,
    settings: EngineSettings,
    version: str,
) -> tuple[EnginePlan, EngineView | None]:
    """An engine whose plan and view do not read the user count plans once per deployment: the
    capacity search and the users table assess the same deployment at many counts."""
    plan = profile.plan(model, workload, fmt, kv, gpu, settings, version)
    one = estimate(model, workload, fmt, kv, plan, gpu)
    return plan, profile.view(one, gpu, settings, version) if gpu is not None else None
