"""Compose weights, KV cache, activations, reserve and model copies into one Estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache

from vramcalc import limits as lim
from vramcalc.core.activations import ActivationUse, activation_bytes
from vramcalc.core.formats import WeightFormat, kv_bytes, model_tensor_bytes
from vramcalc.core.kv import KvUse, kv_bytes_per_token, kv_cache_bytes, kv_layers
from vramcalc.core.tensors import ParamCounts, param_counts, tensor_inventory
from vramcalc.core.types import EnginePlan
from vramcalc.core.types import Workload as Workload  # re-exported: callers build workloads from here
from vramcalc.errors import SpecError
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GIB, MIB, gib, plural

# 2: verdicts moved into the `assessment` object (core.assess); by_users rows carry verdict words.
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class Term:
    """One line of the breakdown with its formula (numbers substituted) and source."""

    key: str
    label: str
    bytes: int
    formula: str
    source: str


@dataclass(frozen=True, slots=True)
class UsersRow:
    """Memory at one concurrency: the KV cache of that many users and the total with it."""

    users: int
    kv_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class GpuFit:
    """The GPU the estimate was made for and the memory it offers (core.assess decides the verdict)."""

    gpu: GpuSpec
    usable_bytes: int
    usable_basis: str


@dataclass(frozen=True, slots=True)
class Estimate:
    model: ModelSpec
    params: ParamCounts
    workload: Workload
    plan: EnginePlan
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
    weight_use: WeightUse
    kv_tokens: int  # tokens each sequence holds as the engine stores them
    kv_prefix_tokens: int  # shared-prefix tokens held once (0 without prefix caching)
    gpu: GpuFit | None
    warnings: tuple[str, ...] = field(default=())

    @property
    def assumptions(self) -> tuple[str, ...]:
        """What the figures assume, in words (written when shown, like the terms)."""
        return tuple(
            _assumptions(self.model, self.workload, self.plan, self.weight_format, self.kv_dtype, self.gpu)
        )

    @property
    def terms(self) -> tuple[Term, ...]:
        """Each part of the total with its formula and source, written out when shown (an
        assessment inside a fix search or recommend never shows it)."""
        return _terms(self)

    @property
    def by_users(self) -> tuple[UsersRow, ...]:
        """Memory at 1, 2, 4, ... and the asked number of users: everything but the KV cache stays,
        the KV cache is that many users' (computed when a table asks, not on every estimate)."""
        fixed = self.total_bytes - self.kv.bytes
        rows = []
        for u in users_selection(self.workload.users):
            kv = workload_kv(self.model, self.workload, self.kv_dtype, self.plan, u).bytes
            rows.append(UsersRow(u, kv, fixed + kv))
        return tuple(rows)


@dataclass(frozen=True, slots=True)
class WeightUse:
    gpu_bytes: int
    checkpoint_bytes: int
    host_bytes: int


# Tensors every tensor-parallel rank holds whole (vLLM ReplicatedLinear for MLA's low-rank
# down-projections; norms, biases and routers are small and replicated).
_REPLICATED_ROLES = frozenset({"attn_q_a", "attn_kv_a_mqa", "ffn_gate_inp", "ffn_gate_inp_shexp", "vision"})


def _per_gpu(m: ModelSpec, role: str, rows: int, size: int, tp: int) -> int:
    """Bytes of one tensor on one of `tp` ranks: sharded 1/tp, except replicated tensors and K/V
    projections once tp exceeds the KV heads (each rank keeps whole heads)."""
    if tp == 1 or rows == 1 or role in _REPLICATED_ROLES or role in ("norm", "bias", "attn_sinks"):
        return size
    if role in ("attn_k", "attn_v"):
        return size * max(1, m.num_key_value_heads // tp) // m.num_key_value_heads
    return size // tp


@cache
def weight_bytes(m: ModelSpec, fmt: WeightFormat, tp: int = 1) -> WeightUse:
    """Weight bytes per tensor in `fmt`, summed; and what of it one GPU holds.

    PyTorch engines hold every tensor on the GPU, split over `tp` ranks (column/row-parallel
    linears and vocab-parallel embeddings 1/tp; vllm/model_executor/layers/linear.py,
    vocab_parallel_embedding.py). llama.cpp keeps `token_embd` in host memory (a row lookup)
    and, for tied embeddings, puts a duplicate `output` copy on the GPU (llama.cpp
    src/models/gemma2.cpp TENSOR_DUPLICATED; engines.md section 2.5).
    """
    tensors = tensor_inventory(m)
    sizes = model_tensor_bytes(fmt, m)
    checkpoint = sum(sizes)
    if not fmt.is_gguf:
        gpu = sum(_per_gpu(m, t.role, t.rows, size, tp) for t, size in zip(tensors, sizes, strict=True))
        return WeightUse(gpu, checkpoint, 0)
    embd = sum(s for t, s in zip(tensors, sizes, strict=True) if t.role == "token_embd")
    gpu = checkpoint if m.tie_word_embeddings else checkpoint - embd
    return WeightUse(gpu, checkpoint, embd)


def gguf_vision_bytes(m: ModelSpec, fmt: WeightFormat) -> tuple[int, int]:
    """(bytes of the vision tower inside the computed GGUF tensor list, bytes of the F16 mmproj
    file that llama.cpp loads with --mmproj): 0, 0 for a text-only model."""
    if m.vision is None:
        return 0, 0
    tensors = tensor_inventory(m)
    in_list = sum(s for t, s in zip(tensors, model_tensor_bytes(fmt, m), strict=True) if t.role == "vision")
    # Source: llama.cpp convert_hf_to_gguf.py --mmproj writes the vision tower and projector in F16.
    return in_list, 2 * (m.vision.params + m.vision.projector_params)


def _vision_as_loaded(wu: WeightUse, m: ModelSpec, fmt: WeightFormat, gguf_vision: str | None) -> WeightUse:
    """A text GGUF (llama.cpp) holds no vision tower: the computed one comes off; with --mmproj the
    F16 projector file is loaded beside it. A measured file is taken as it is (its header says what
    it holds); --mmproj adds the projector to it."""
    if gguf_vision is None or not fmt.is_gguf or m.vision is None:
        return wu
    in_list, mmproj = gguf_vision_bytes(m, fmt)
    drop = 0 if fmt.stored is not None else in_list
    add = mmproj if gguf_vision == "mmproj" else 0
    return WeightUse(wu.gpu_bytes - drop + add, wu.checkpoint_bytes - drop + add, wu.host_bytes)


@cache
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


def _tokens_held(w: Workload, p: EnginePlan) -> int:
    """Tokens of KV one user holds: the whole context where the engine allocates it up front
    (llama.cpp slots), else the average fill (never below the shared prefix)."""
    if p.kv_preallocated:
        return w.ctx_tokens
    return max(w.shared_prefix_tokens, math.ceil(w.fill * w.ctx_tokens))


def workload_kv(m: ModelSpec, w: Workload, kv_dtype: str, p: EnginePlan, users: int) -> KvUse:
    """KV cache of `users` users of workload `w` as engine plan `p` stores it: the one call every
    caller (the estimate, its per-user rows, the engine's scheduler capacity) makes."""
    if p.slots is not None:
        # Slots exist from the start whoever uses them; a row of fewer users would start fewer.
        users = min(users, p.slots)
    return kv_cache_bytes(
        m,
        kv_dtype,
        _tokens_held(w, p),
        users,
        w.shared_prefix_tokens if p.kv_prefix_sharing else 0,
        frees_windows=p.kv_frees_windows,
        window_extra_tokens=p.kv_window_extra_tokens,
        block_tokens=p.kv_block_tokens,
        tp=p.tp,
    )


def users_kv_bytes(e: Estimate, users: int) -> int:
    """KV bytes `users` users of the estimate's workload need on one GPU (same formula as e.kv)."""
    return workload_kv(e.model, e.workload, e.kv_dtype, e.plan, users).bytes


def check_count(flag: str, value: int, least: int, most: int) -> None:
    """`value` in [least, most] (vramcalc.limits), or a one-line error naming the flag and the bound."""
    if value < least:
        want = "a positive integer" if least == 1 else f">= {least}"
        raise SpecError(f"{flag} must be {want}, got {_shown(value)}")
    if value > most:
        raise SpecError(f"{flag} {_shown(value)} is above the most vramcalc accepts ({most:,}); lower it")


def _shown(value: int) -> str:
    if abs(value) < 10**30:
        return f"{value:,}"
    return f"a number of about {int(abs(value).bit_length() * 0.30103) + 1:,} digits"


def validate_workload(m: ModelSpec, w: Workload) -> list[str]:
    """Refuse a workload out of bounds (vramcalc.limits) before any arithmetic; its warnings."""
    warnings: list[str] = []
    check_count("--users", w.users, 1, lim.MAX_USERS)
    check_count("--ctx", w.ctx_tokens, 1, lim.MAX_CTX_TOKENS)
    if not 0 < w.fill <= 1:
        raise SpecError(f"--fill must be in (0, 1] (share of the context in use), got {w.fill}")
    check_count("--workers", w.workers, 1, lim.MAX_WORKERS)
    check_count("--shared-prefix", w.shared_prefix_tokens, 0, lim.MAX_CTX_TOKENS)
    if w.shared_prefix_tokens > w.ctx_tokens:
        raise SpecError(
            f"--shared-prefix {w.shared_prefix_tokens} exceeds --ctx {w.ctx_tokens}; "
            "the shared prompt is part of each user's context"
        )
    if w.ctx_tokens > m.max_position_embeddings:
        msg = f"--ctx {w.ctx_tokens} exceeds {m.id}'s max_position_embeddings ({m.max_position_embeddings})"
        if not w.allow_long_ctx:
            raise SpecError(msg + "; pass --allow-long-ctx to estimate anyway (rope scaling)")
        warnings.append(msg + " (estimated anyway: --allow-long-ctx)")
    return warnings


def plan_activations(
    m: ModelSpec, p: EnginePlan, sampler_bytes_per_logit: float | None = None
) -> ActivationUse:
    """The activation peak of engine plan `p` (the one call the estimate and the engine views
    make; `sampler_bytes_per_logit` prices another sampler path at the same settings), times a
    calibration profile's measured factor."""
    act = activation_bytes(
        m,
        p.prefill_tokens,
        p.sampled_rows,
        sampler_bytes_per_logit=p.sampler_bytes_per_logit
        if sampler_bytes_per_logit is None
        else sampler_bytes_per_logit,
        hidden_temporaries=p.hidden_temporaries,
        forward_logit_bytes=p.forward_logit_bytes,
        eager_attention=p.eager_attention,
        attention_score_bytes=p.attention_score_bytes,
        attention_kv_tokens=p.attention_kv_tokens,
        dtype_bytes=p.activation_dtype_bytes,
        tp=p.tp,
        fused_moe=p.fused_moe,
    )
    if p.activation_scale != 1.0:
        act = replace(act, bytes=round(act.bytes * p.activation_scale))
    return act


def estimate(
    model: ModelSpec,
    workload: Workload,
    weight_format: WeightFormat,
    kv_dtype: str,
    plan: EnginePlan,
    gpu: GpuSpec | None = None,
) -> Estimate:
    """Estimate GPU memory for serving `model` to `workload` on the engine `plan` describes.

    Pure: specs in, value out. Per GPU: weights + KV(users) + activation peak + reserve, plus
    (workers - 1) copies of everything but the KV cache.
    """
    m, w, p = model, workload, plan
    warnings = validate_workload(m, w)
    params = param_counts(m)
    wu = _vision_as_loaded(weight_bytes(m, weight_format, p.tp), m, weight_format, p.gguf_vision)
    weights = max(0, wu.gpu_bytes + p.extra_weight_bytes - p.offload_weight_bytes)
    per_token = kv_bytes_per_token(m, kv_dtype, p.tp)
    tokens = _tokens_held(w, p)
    prefix = w.shared_prefix_tokens if p.kv_prefix_sharing else 0
    seq_bytes = kv_cache_bytes(
        m,
        kv_dtype,
        w.ctx_tokens,
        1,
        frees_windows=p.kv_frees_windows,
        window_extra_tokens=p.kv_window_extra_tokens,
        block_tokens=p.kv_block_tokens,
        tp=p.tp,
    ).bytes
    act = plan_activations(m, p)
    per_process = weights + act.bytes + p.reserve_bytes
    copies = (w.workers - 1) * per_process

    kv = workload_kv(m, w, kv_dtype, p, w.users)
    total = per_process + copies + kv.bytes

    gpu_fit = None
    if gpu is not None:
        usable, basis = usable_gpu_bytes(gpu)
        gpu_fit = GpuFit(gpu, usable, basis)

    return Estimate(
        model=m,
        params=params,
        workload=w,
        plan=p,
        weight_format=weight_format,
        weights_bytes=weights,
        checkpoint_bytes=wu.checkpoint_bytes,
        bits_per_weight=wu.checkpoint_bytes * 8 / params.total,
        kv_dtype=kv_dtype,
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=seq_bytes,
        kv=kv,
        activations=act,
        reserve_bytes=p.reserve_bytes,
        copies_bytes=copies,
        total_bytes=total,
        weight_use=wu,
        kv_tokens=tokens,
        kv_prefix_tokens=prefix,
        gpu=gpu_fit,
        warnings=tuple(warnings),
    )


def _kv_formula(m: ModelSpec, kv_dtype: str, tokens: int, users: int, prefix: int, p: EnginePlan) -> str:
    layers = kv_layers(m, p.tp)
    per_layer = kv_bytes(kv_dtype, layers[0].elements_per_token)
    heads = max(1, m.num_key_value_heads // p.tp)
    what = (
        f"(kv_lora_rank {m.mla.kv_lora_rank} + rope {m.mla.qk_rope_head_dim}) x {kv_dtype}"
        if m.mla
        else f"2 x {heads} kv_heads x {m.head_dim} head_dim x {kv_dtype}"
    )
    windowed = [lay for lay in layers if lay.window_tokens is not None]
    full = len(layers) - (len(windowed) if p.kv_frees_windows else 0)
    block = f", rounded up to {p.kv_block_tokens}-token blocks" if p.kv_block_tokens > 1 else ""
    parts = [f"per layer per token {what} = {per_layer:,} B"]
    if full:
        parts.append(f"{full} full-length layers x {plural(users, 'user')} x {tokens:,} tokens{block}")
    if windowed and p.kv_frees_windows:
        window = windowed[0].window_tokens
        assert window is not None
        extra = f" + {p.kv_window_extra_tokens:,} in flight" if p.kv_window_extra_tokens else ""
        parts.append(
            f"{len(windowed)} {m.layer_pattern.local_attention} layers x {plural(users, 'user')} x "
            f"min({tokens:,}, {window:,}{extra}) tokens{block}"
        )
    elif windowed:
        parts.append(f"({p.engine} keeps full-length KV on its {len(windowed)} windowed layers)")
    if prefix and users > 1:
        parts.append(f"minus {users - 1} extra copies of the {prefix:,}-token shared prefix")
    return "; ".join(parts)


def _terms(e: Estimate) -> tuple[Term, ...]:
    m, w, p, fmt, kv_dtype = e.model, e.workload, e.plan, e.weight_format, e.kv_dtype
    wu, weights_bytes, per_token, kv, act, copies = (
        e.weight_use,
        e.weights_bytes,
        e.kv_bytes_per_token,
        e.kv,
        e.activations,
        e.copies_bytes,
    )
    tokens, prefix = e.kv_tokens, e.kv_prefix_tokens
    params = e.params
    host = (
        f"; token_embd {wu.host_bytes:,} B stays in host memory"
        if wu.host_bytes and not m.tie_word_embeddings
        else ""
    )
    split = f"; per GPU at tp={p.tp}: {wu.gpu_bytes:,} B" if p.tp > 1 else ""
    extra = f"; + {p.extra_weight_formula}" if p.extra_weight_bytes else ""
    if p.offload_weight_bytes:
        extra += f"; - {p.offload_weight_bytes:,} B kept in host memory ({p.offload_flag})"
    how = "sum over tensors of stored bytes"
    source = (
        "tensor shapes from the model's config.json (catalog `source:`); per-format storage in "
        "vramcalc/core/formats.py (llama.cpp ggml-common.h / llama-quant.cpp, AutoAWQ, AutoGPTQ, "
        "bitsandbytes)"
    )
    if fmt.stored is not None:
        how = f"measured: {fmt.stored.tensor_count:,} tensors in {fmt.stored.source}, sum of stored bytes"
        source = "the file's own header (tensor dtypes/types and shapes); no tensor data read"
    weights = Term(
        "weights",
        "Weights",
        weights_bytes,
        f"{params.total:,} params as {fmt.label}: {how} = "
        f"{wu.checkpoint_bytes:,} B ({wu.checkpoint_bytes * 8 / params.total:.3f} bits/param)"
        f"{host}{split}{extra}",
        source,
    )
    kv_term = Term(
        "kv_cache",
        "KV cache",
        kv.bytes,
        _kv_formula(m, kv_dtype, tokens, w.users, prefix, p)
        + f" = {kv.bytes:,} B ({per_token:,} B per token while every layer holds it)",
        p.kv_source,
    )
    hidden = f"{act.hidden_temporaries:g} x {m.hidden_size:,} hidden"
    forward = (
        f"forward of {act.prefill_tokens:,} tokens x (3 x {act.ffn_width:,} ffn + {act.qkv_width:,} qkv "
        f"+ {hidden}) x {p.activation_dtype_bytes} B"
    )
    if act.attention_bytes:
        forward += f" (eager attention scores {act.attention_bytes:,} B replace the MLP part when larger)"
    forward += f" = {act.forward_bytes:,} B"
    sampler = (
        f"sampler {act.sampled_rows:,} rows x {m.vocab_size:,} vocab x {act.sampler_bytes_per_logit:g} B "
        f"= {act.sampler_bytes:,} B"
    )
    combine = "max"
    if act.forward_logit_bytes:
        forward += f" + {act.sampled_rows:,} rows x {m.vocab_size:,} vocab x {act.forward_logit_bytes:g} B logits beside it"
    scaled = f" x {p.activation_scale:.4f} (calibration profile)" if p.activation_scale != 1.0 else ""
    activations = Term(
        "activations",
        "Activations",
        act.bytes,
        f"{combine}({forward}; {sampler}){scaled}",
        p.activation_source,
    )
    reserve_term = Term(
        "reserve", "CUDA + framework reserve", p.reserve_bytes, p.reserve_formula, p.reserve_source
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
    p: EnginePlan,
    fmt: WeightFormat,
    kv_dtype: str,
    gpu_fit: GpuFit | None,
) -> list[str]:
    out = [f"engine {p.engine} {p.version}", f"weights format: {fmt.label}", f"KV cache dtype: {kv_dtype}"]
    if fmt.stored is not None:
        out.append(
            f"weights measured from {fmt.stored.source}: {fmt.stored.total_bytes:,} B stored "
            "(replaces the computed figure)"
        )
    if m.layer_pattern.kind != "all_global":
        if p.kv_frees_windows:
            out.append(
                f"{m.layer_pattern.local_attention} layers keep at most {m.layer_pattern.window_tokens:,} "
                "tokens (+ tokens in flight): the engine frees KV outside the window"
            )
        else:
            out.append(f"{p.engine} {p.version} gives windowed layers full-length KV (no window savings)")
    if fmt.is_gguf:
        out.append(
            "llama.cpp placement: token_embd stays in host memory; "
            "a tied output matrix is duplicated on the GPU"
        )
    if m.vision is not None:
        vision = m.vision.params + m.vision.projector_params
        if fmt.is_gguf and p.gguf_vision == "absent":
            out.append(
                f"text GGUF: the vision tower ({vision:,} params) lives in a separate mmproj file, not "
                f"loaded (--mmproj loads it: +{gib(gguf_vision_bytes(m, fmt)[1]):.2f} GiB)"
            )
        elif fmt.is_gguf and p.gguf_vision == "mmproj":
            out.append(f"--mmproj: the F16 vision projector file ({vision:,} params) loaded on the GPU")
        elif fmt.is_gguf:
            out.append(f"{p.engine} loads the model's vision projector with it ({vision:,} params, 16-bit)")
        else:
            out.append(f"vision tower ({vision:,} params) loaded in 16-bit")
    if w.fill < 1:
        out.append(f"each user fills {w.fill:.0%} of --ctx on average (typical, not worst case)")
    else:
        out.append("every user at the full --ctx at once (worst case)")
    if w.shared_prefix_tokens:
        out.append(f"{w.shared_prefix_tokens:,}-token shared prefix held once (prefix caching)")
    out += list(p.assumptions)
    if w.workers > 1:
        out.append(f"{w.workers} worker processes each load their own copy of the model")
    if gpu_fit is not None:
        out.append(f"usable memory on {gpu_fit.gpu.id}: {gpu_fit.usable_basis}")
    return out
