"""Compose weights, KV cache, activations, reserve and model copies into one Estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vramcalc.core.activations import SAMPLER_BYTES_PER_LOGIT, ActivationUse, activation_bytes
from vramcalc.core.formats import WeightFormat, kv_bytes, tensor_bytes
from vramcalc.core.kv import KvUse, kv_bytes_per_token, kv_cache_bytes, kv_layers
from vramcalc.core.reserve import CUDA_CONTEXT_BYTES, RUNTIME_OVERHEAD_BYTES, reserve_bytes
from vramcalc.core.tensors import ParamCounts, param_counts, tensor_inventory
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GIB, MIB

SCHEMA_VERSION = 1

# Source: vLLM OpenAI server default max_num_batched_tokens (chunked prefill) for GPUs under
# 70 GiB, vllm/engine/arg_utils.py EngineArgs.get_batch_defaults (engines.md section 1.5).
DEFAULT_PREFILL_CHUNK_TOKENS = 2048

# Capacity tiers to mark fits against when no GPU is named (consumer 24, workstation 48, HBM 80).
DEFAULT_FIT_TARGETS_GIB = (24, 48, 80)


@dataclass(frozen=True, slots=True)
class Workload:
    """What is asked of the deployment: context per user, concurrency, and how full it runs."""

    ctx_tokens: int
    users: int
    fill: float = 1.0
    workers: int = 1
    shared_prefix_tokens: int = 0
    prefill_tokens: int | None = None
    allow_long_ctx: bool = False


@dataclass(frozen=True, slots=True)
class Term:
    """One line of the breakdown with its formula (numbers substituted) and source."""

    key: str
    label: str
    bytes: int
    formula: str
    source: str


@dataclass(frozen=True, slots=True)
class FitTarget:
    """A memory size to check against: a catalog GPU or a capacity tier."""

    label: str
    usable_bytes: int


@dataclass(frozen=True, slots=True)
class UsersRow:
    users: int
    kv_bytes: int
    total_bytes: int
    fits: tuple[bool, ...]  # one per fit target


@dataclass(frozen=True, slots=True)
class GpuFit:
    gpu: GpuSpec
    usable_bytes: int
    usable_basis: str
    fits: bool
    headroom_bytes: int


@dataclass(frozen=True, slots=True)
class Estimate:
    model: ModelSpec
    params: ParamCounts
    workload: Workload
    engine: str
    weight_format: WeightFormat
    weights_bytes: int
    checkpoint_bytes: int
    bits_per_weight: float
    kv_dtype: str
    kv_bytes_per_token: int
    kv_bytes_per_sequence: int
    kv: KvUse
    activations: ActivationUse
    reserve_bytes: int
    copies_bytes: int
    total_bytes: int
    terms: tuple[Term, ...]
    fit_targets: tuple[FitTarget, ...]
    by_users: tuple[UsersRow, ...]
    gpu: GpuFit | None
    assumptions: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class WeightUse:
    gpu_bytes: int
    checkpoint_bytes: int
    host_bytes: int


def weight_bytes(m: ModelSpec, fmt: WeightFormat) -> WeightUse:
    """Weight bytes per tensor in `fmt`, summed; and what of it the GPU holds.

    PyTorch engines hold every tensor on the GPU. llama.cpp keeps `token_embd` in host memory
    (a row lookup) and, for tied embeddings, puts a duplicate `output` copy on the GPU
    (llama.cpp src/models/gemma2.cpp TENSOR_DUPLICATED; engines.md section 2.5).
    """
    tensors = tensor_inventory(m)
    sizes = tensor_bytes(fmt, m, tensors)
    checkpoint = sum(sizes)
    if not fmt.is_gguf:
        return WeightUse(checkpoint, checkpoint, 0)
    embd = sum(s for t, s in zip(tensors, sizes, strict=True) if t.role == "token_embd")
    gpu = checkpoint if m.tie_word_embeddings else checkpoint - embd
    return WeightUse(gpu, checkpoint, embd)


def usable_gpu_bytes(gpu: GpuSpec) -> tuple[int, str]:
    """Memory to size against: the measured total when the catalog has one.

    nvidia-smi total x MiB; unified memory: marketed x GiB x the GPU-wired share; otherwise the
    marketed label read as GiB (stated as an assumption).
    """
    if gpu.usable_mib is not None:
        return gpu.usable_mib * MIB, f"{gpu.usable_mib:,} MiB total as nvidia-smi/rocm-smi reports it"
    if gpu.usable_fraction is not None:
        usable = int(gpu.memory_gb_marketed * GIB * gpu.usable_fraction)
        return usable, (
            f"{gpu.memory_gb_marketed:g} GB unified x {gpu.usable_fraction:g} the GPU may wire by default"
        )
    return int(gpu.memory_gb_marketed * GIB), (
        f"marketed {gpu.memory_gb_marketed:g} GB read as GiB (no measured total in the catalog)"
    )


def users_selection(n: int) -> list[int]:
    """Rows of the concurrency table: 1..n when n <= 16, else powers of two below n, then n."""
    if n <= 16:
        return list(range(1, n + 1))
    rows = [2**k for k in range(int(math.log2(n)) + 1) if 2**k < n]
    return [*rows, n]


def _validate(m: ModelSpec, w: Workload) -> list[str]:
    warnings: list[str] = []
    if w.users < 1:
        raise SpecError(f"--users must be a positive integer, got {w.users}")
    if w.ctx_tokens < 1:
        raise SpecError(f"--ctx must be a positive integer, got {w.ctx_tokens}")
    if not 0 < w.fill <= 1:
        raise SpecError(f"--fill must be in (0, 1] (share of the context in use), got {w.fill}")
    if w.workers < 1:
        raise SpecError(f"--workers must be a positive integer, got {w.workers}")
    if w.shared_prefix_tokens < 0:
        raise SpecError(f"--shared-prefix must be >= 0, got {w.shared_prefix_tokens}")
    if w.shared_prefix_tokens > w.ctx_tokens:
        raise SpecError(
            f"--shared-prefix {w.shared_prefix_tokens} exceeds --ctx {w.ctx_tokens}; "
            "the shared prompt is part of each user's context"
        )
    if w.prefill_tokens is not None and w.prefill_tokens < 1:
        raise SpecError(f"prefill tokens must be positive, got {w.prefill_tokens}")
    if w.ctx_tokens > m.max_position_embeddings:
        msg = f"--ctx {w.ctx_tokens} exceeds {m.id}'s max_position_embeddings ({m.max_position_embeddings})"
        if not w.allow_long_ctx:
            raise SpecError(msg + "; pass --allow-long-ctx to estimate anyway (rope scaling)")
        warnings.append(msg + " (estimated anyway: --allow-long-ctx)")
    return warnings


def estimate(
    model: ModelSpec,
    workload: Workload,
    weight_format: WeightFormat,
    kv_dtype: str,
    gpu: GpuSpec | None = None,
    engine: str = "vllm",
) -> Estimate:
    """Estimate GPU memory for serving `model` to `workload` (pure: specs in, value out)."""
    m, w = model, workload
    warnings = _validate(m, w)
    params = param_counts(m)
    wu = weight_bytes(m, weight_format)
    per_token = kv_bytes_per_token(m, kv_dtype)
    tokens = max(w.shared_prefix_tokens, math.ceil(w.fill * w.ctx_tokens))
    seq_bytes = kv_cache_bytes(m, kv_dtype, w.ctx_tokens, 1).bytes
    prefill = w.prefill_tokens or min(w.ctx_tokens, DEFAULT_PREFILL_CHUNK_TOKENS)
    reserve = reserve_bytes(1)

    def totals(users: int) -> tuple[KvUse, ActivationUse, int, int]:
        kv = kv_cache_bytes(m, kv_dtype, tokens, users, w.shared_prefix_tokens)
        act = activation_bytes(m, prefill, math.ceil(users / w.workers))
        per_process = wu.gpu_bytes + act.bytes + reserve
        copies = (w.workers - 1) * per_process
        return kv, act, copies, per_process + copies + kv.bytes

    kv, act, copies, total = totals(w.users)

    if gpu is not None:
        usable, basis = usable_gpu_bytes(gpu)
        targets: tuple[FitTarget, ...] = (FitTarget(gpu.id, usable),)
        gpu_fit: GpuFit | None = GpuFit(gpu, usable, basis, total <= usable, usable - total)
    else:
        targets = tuple(FitTarget(f"{g} GiB", g * GIB) for g in DEFAULT_FIT_TARGETS_GIB)
        gpu_fit = None

    rows: list[UsersRow] = []
    for u in users_selection(w.users):
        kv_u, _, _, total_u = totals(u)
        rows.append(UsersRow(u, kv_u.bytes, total_u, tuple(total_u <= t.usable_bytes for t in targets)))

    terms = _terms(m, w, weight_format, kv_dtype, wu, per_token, tokens, kv, act, reserve, copies)
    assumptions = _assumptions(m, w, weight_format, kv_dtype, wu, prefill, gpu_fit)
    return Estimate(
        model=m,
        params=params,
        workload=w,
        engine=engine,
        weight_format=weight_format,
        weights_bytes=wu.gpu_bytes,
        checkpoint_bytes=wu.checkpoint_bytes,
        bits_per_weight=wu.checkpoint_bytes * 8 / params.total,
        kv_dtype=kv_dtype,
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=seq_bytes,
        kv=kv,
        activations=act,
        reserve_bytes=reserve,
        copies_bytes=copies,
        total_bytes=total,
        terms=terms,
        fit_targets=targets,
        by_users=tuple(rows),
        gpu=gpu_fit,
        assumptions=tuple(assumptions),
        warnings=tuple(warnings),
    )


def _kv_formula(m: ModelSpec, kv_dtype: str, tokens: int, users: int, prefix: int) -> str:
    layers = kv_layers(m)
    per_layer = kv_bytes(kv_dtype, layers[0].elements_per_token)
    what = (
        f"(kv_lora_rank {m.mla.kv_lora_rank} + rope {m.mla.qk_rope_head_dim}) x {kv_dtype}"
        if m.mla
        else f"2 x {m.num_key_value_heads} kv_heads x {m.head_dim} head_dim x {kv_dtype}"
    )
    n_global = sum(1 for layer in layers if layer.window_tokens is None)
    n_local = len(layers) - n_global
    parts = [f"per layer per token {what} = {per_layer:,} B"]
    if n_global:
        parts.append(f"{n_global} global layers x {users} users x {tokens:,} tokens")
    if n_local:
        window = layers[[lay.window_tokens is None for lay in layers].index(False)].window_tokens
        assert window is not None
        parts.append(
            f"{n_local} {m.layer_pattern.local_attention} layers x {users} users x "
            f"min({tokens:,}, {window:,}) tokens"
        )
    if prefix and users > 1:
        parts.append(f"minus {users - 1} extra copies of the {prefix:,}-token shared prefix")
    return "; ".join(parts)


def _terms(
    m: ModelSpec,
    w: Workload,
    fmt: WeightFormat,
    kv_dtype: str,
    wu: WeightUse,
    per_token: int,
    tokens: int,
    kv: KvUse,
    act: ActivationUse,
    reserve: int,
    copies: int,
) -> tuple[Term, ...]:
    params = param_counts(m)
    host = (
        f"; token_embd {wu.host_bytes:,} B stays in host memory"
        if wu.host_bytes and not m.tie_word_embeddings
        else ""
    )
    weights = Term(
        "weights",
        "Weights",
        wu.gpu_bytes,
        f"{params.total:,} params as {fmt.label}: sum over tensors of stored bytes = "
        f"{wu.checkpoint_bytes:,} B ({wu.checkpoint_bytes * 8 / params.total:.3f} bits/param){host}",
        "tensor shapes from the model's config.json (catalog `source:`); per-format storage in "
        "vramcalc/core/formats.py (llama.cpp ggml-common.h / llama-quant.cpp, AutoAWQ, AutoGPTQ, "
        "bitsandbytes)",
    )
    kv_term = Term(
        "kv_cache",
        "KV cache",
        kv.bytes,
        _kv_formula(m, kv_dtype, tokens, w.users, w.shared_prefix_tokens)
        + f" = {kv.bytes:,} B ({per_token:,} B per token while every layer holds it)",
        "KV shape from config (num_key_value_heads, head_dim, layer pattern); windows freed as "
        "vLLM >= 0.9.1 (hybrid KV manager) and llama.cpp iSWA do",
    )
    forward = (
        f"prefill chunk {act.prefill_tokens:,} tokens x (3 x {act.ffn_width:,} ffn + {act.qkv_width:,} qkv "
        f"+ 4 x {m.hidden_size:,} hidden) x 2 B = {act.forward_bytes:,} B"
    )
    sampler = (
        f"sampler {act.sampled_rows} rows x {m.vocab_size:,} vocab x {SAMPLER_BYTES_PER_LOGIT} B "
        f"= {act.sampler_bytes:,} B"
    )
    activations = Term(
        "activations",
        "Activations",
        act.bytes,
        f"max({forward}; {sampler})",
        "vLLM profile run (gpu_model_runner.profile_run, _dummy_sampler_run); engines.md sections 1.7 and 8",
    )
    reserve_term = Term(
        "reserve",
        "CUDA + framework reserve",
        reserve,
        f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB + runtime overhead "
        f"{RUNTIME_OVERHEAD_BYTES // MIB} MiB = {reserve:,} B per process",
        "pytorch#107667, #20532, #28113 (CUDA context); pytorch PR #120925 (cuBLASLt "
        "workspace); vLLM non_torch_memory in tests/calibration",
    )
    copies_term = Term(
        "copies",
        "Model copies",
        copies,
        f"({w.workers} workers - 1) x (weights + activations + reserve) = {copies:,} B",
        "each worker process that loads the model holds its own weights, buffers and CUDA context",
    )
    return (weights, kv_term, activations, reserve_term, copies_term)


def _assumptions(
    m: ModelSpec,
    w: Workload,
    fmt: WeightFormat,
    kv_dtype: str,
    wu: WeightUse,
    prefill: int,
    gpu_fit: GpuFit | None,
) -> list[str]:
    out = [f"weights format: {fmt.label}", f"KV cache dtype: {kv_dtype}"]
    if m.layer_pattern.kind != "all_global":
        out.append(
            f"{m.layer_pattern.local_attention} layers keep at most {m.layer_pattern.window_tokens:,} "
            "tokens (the engine frees KV outside the window)"
        )
    if fmt.is_gguf:
        out.append(
            "llama.cpp placement: token_embd stays in host memory; "
            "a tied output matrix is duplicated on the GPU"
        )
    if m.vision is not None:
        out.append(f"vision tower ({m.vision.params + m.vision.projector_params:,} params) loaded in 16-bit")
    if w.fill < 1:
        out.append(f"each user fills {w.fill:.0%} of --ctx on average (typical, not worst case)")
    else:
        out.append("every user at the full --ctx at once (worst case)")
    if w.shared_prefix_tokens:
        out.append(f"{w.shared_prefix_tokens:,}-token shared prefix held once (prefix caching)")
    out.append(f"activation peak from a {prefill:,}-token prefill chunk and one sampled row per user")
    if w.workers > 1:
        out.append(f"{w.workers} worker processes each load their own copy of the model")
    if gpu_fit is not None:
        out.append(f"usable memory on {gpu_fit.gpu.id}: {gpu_fit.usable_basis}")
    return out
