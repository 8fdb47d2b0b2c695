"""Engine profiles: one module per engine, each answering the same questions as data."""

from __future__ import annotations

import difflib
import importlib
import math
from typing import TYPE_CHECKING

from vramcalc import limits as lim
from vramcalc.core.engines.base import Engine, EngineSettings
from vramcalc.core.engines.common import parse_version
from vramcalc.core.estimate import check_count
from vramcalc.errors import SpecError

if TYPE_CHECKING:
    from vramcalc.specs import GpuSpec, ModelSpec

_MODULES = {
    "vllm": "vramcalc.core.engines.vllm",
    "sglang": "vramcalc.core.engines.sglang",
    "tgi": "vramcalc.core.engines.tgi",
    "transformers": "vramcalc.core.engines.transformers",
    "llama.cpp": "vramcalc.core.engines.llamacpp",
    "ollama": "vramcalc.core.engines.ollama",
}
ENGINE_NAMES = tuple(_MODULES)
DEFAULT_ENGINE = "vllm"

SETTING_FLAGS = {
    "gpu_util": "--gpu-util",
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "ubatch": "--ubatch",
    "flash_attn": "--flash-attn/--no-flash-attn",
    "tp": "--tp",
    "prompt_tokens": "--prompt-tokens",
    "cpu_offload_gb": "--cpu-offload-gb",
    "enforce_eager": "--enforce-eager",
    "mmproj": "--mmproj",
    "sampler": "--sampler",
    "mxfp4_backend": "--mxfp4-backend",
    "nccl_nvls": "--nccl-nvls/--no-nccl-nvls",
    "gpu_p2p": "--gpu-p2p/--no-gpu-p2p",
    "n_cpu_moe": "--n-cpu-moe",
    "n_gpu_layers": "--ngl",
}
SAMPLERS = ("flashinfer", "pytorch", "v2")
# Source: vllm/model_executor/layers/quantization/mxfp4.py Mxfp4Backend (the MoE kernel families).
MXFP4_BACKENDS = ("marlin", "triton", "flashinfer")
# Settings of the workload, not of an engine: every engine takes them.
WORKLOAD_SETTINGS = frozenset({"prompt_tokens"})


def get_engine(name: str) -> Engine:
    engine: Engine = importlib.import_module(_MODULES[name]).ENGINE
    return engine


def resolve_engine(text: str) -> tuple[Engine, str]:
    """'vllm' or 'vllm@0.19.1' -> (engine, version). Versions between known ones take the
    behaviour of the newest known version at or below them."""
    name, at, version = text.strip().partition("@")
    name = name.lower()
    if name not in _MODULES:
        close = difflib.get_close_matches(name, ENGINE_NAMES, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SpecError(f"unknown --engine {text!r}{hint} (known: {', '.join(ENGINE_NAMES)})")
    engine = get_engine(name)
    if at and not version.strip():
        raise SpecError(
            f"--engine {text!r}: no version after '@'; give one (known {name}: {', '.join(engine.versions)}) "
            f"or drop the '@' for the default"
        )
    if not version:
        return engine, engine.default_version
    asked = parse_version(version)
    known = ", ".join(engine.versions)
    if asked is None:
        raise SpecError(
            f"--engine {text!r}: {version!r} is not a version like 0.19.1 (known {name}: {known})"
        )
    eligible = [v for v in engine.versions if parse_version(v) <= asked]  # type: ignore[operator]
    newest = parse_version(engine.versions[-1])
    assert newest is not None
    if not eligible or asked[:2] > newest[:2]:
        newer = eligible and asked[:2] > newest[:2]
        raise SpecError(
            f"--engine {text!r}: no profile for {name} {version} (known {name} versions: {known}; "
            f"versions between two known ones behave like the older)"
            + (
                f"; it is newer than the newest profile, whose memory sizing it may not share: "
                f"--engine {name}@{engine.versions[-1]} sizes it as {engine.versions[-1]} does"
                if newer
                else ""
            )
        )
    return engine, version


def check_kv_dtype(engine: Engine, kv_dtype: str) -> None:
    if kv_dtype not in engine.kv_dtypes:
        raise SpecError(
            f"{engine.name} has no {kv_dtype} KV cache (--kv-dtype for {engine.name}: "
            f"{', '.join(('auto', *engine.kv_dtypes))})"
        )


def check_settings(engine: Engine, settings: EngineSettings, model: ModelSpec) -> None:
    """Refuse a setting the engine does not have (naming the ones it does) or values it rejects."""
    for key in settings.given():
        if key not in engine.settings and key not in WORKLOAD_SETTINGS:
            have = ", ".join(SETTING_FLAGS[k] for k in SETTING_FLAGS if k in engine.settings) or "none"
            raise SpecError(
                f"{engine.name} has no {SETTING_FLAGS[key]} setting ({engine.name} takes: {have})"
            )
    if settings.gpu_util is not None and not 0 < settings.gpu_util <= 1:
        raise SpecError(f"--gpu-util must be in (0, 1], got {settings.gpu_util}")
    if settings.cpu_offload_gb is not None and not (
        math.isfinite(settings.cpu_offload_gb) and settings.cpu_offload_gb > 0
    ):
        raise SpecError(f"--cpu-offload-gb must be a positive number of GiB, got {settings.cpu_offload_gb}")
    if settings.cpu_offload_gb is not None and settings.cpu_offload_gb > lim.MAX_GIB:
        raise SpecError(
            f"--cpu-offload-gb must be at most {lim.MAX_GIB:,.0f} GiB, got {settings.cpu_offload_gb:g}"
        )
    for key, most in (
        ("max_num_seqs", lim.MAX_USERS),
        ("max_num_batched_tokens", lim.MAX_CTX_TOKENS),
        ("ubatch", lim.MAX_CTX_TOKENS),
        ("prompt_tokens", lim.MAX_CTX_TOKENS),
        ("tp", lim.MAX_TP),
    ):
        value = getattr(settings, key)
        if value is not None:
            check_count(SETTING_FLAGS[key], value, 1, most)
    if settings.sampler is not None and settings.sampler not in SAMPLERS:
        raise SpecError(
            f"unknown --sampler {settings.sampler!r}; choose {', '.join(SAMPLERS[:-1])} or {SAMPLERS[-1]}"
        )
    if settings.mxfp4_backend is not None and settings.mxfp4_backend not in MXFP4_BACKENDS:
        close = difflib.get_close_matches(settings.mxfp4_backend, MXFP4_BACKENDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise SpecError(
            f"unknown --mxfp4-backend {settings.mxfp4_backend!r}; {hint}choose {', '.join(MXFP4_BACKENDS)}"
        )
    if settings.n_gpu_layers is not None:
        check_count("--ngl", settings.n_gpu_layers, 0, lim.MAX_LAYERS + 1)
    if settings.n_cpu_moe is not None:
        check_count("--n-cpu-moe", settings.n_cpu_moe, 1, lim.MAX_LAYERS)
        if model.moe is None:
            raise SpecError(
                f"--n-cpu-moe: {model.id} has no experts to keep in RAM (not a MoE model); drop it"
            )
    if settings.mmproj and model.vision is None:
        raise SpecError(
            f"--mmproj: {model.id} has no vision tower (no mmproj file exists for it); drop --mmproj"
        )
    if model.num_attention_heads % settings.tp:
        raise SpecError(
            f"--tp {settings.tp} does not divide {model.id}'s {model.num_attention_heads} attention heads; "
            "choose a divisor, or split layers over GPUs with pipeline parallelism instead"
        )


def kv_dtype_unsupported(engine: Engine, kv_dtype: str, gpu: GpuSpec) -> str | None:
    """Why `kv_dtype` is not offered for `engine` on `gpu` (None: it is).

    An fp8 KV cache for the PyTorch engines is offered only on cards with FP8 tensor cores (Ada,
    Hopper, Blackwell, MI300): on older cards the attention backends that read fp8 KV vary by
    version and build (vLLM docs, "Quantized KV Cache"), so vramcalc does not count on it.
    """
    if kv_dtype == "fp8" and not engine.gguf and gpu.fp8_dense_tflops is None:
        return f"{gpu.id} has no FP8 tensor cores: an fp8 KV cache is not offered there for {engine.name}"
    return None
