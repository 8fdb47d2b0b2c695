"""Validated, immutable specs for models and GPUs: the shapes every catalog file must have."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vramcalc import limits as lim


class _Spec(BaseModel):
    # No NaN or infinity in any float field (YAML .nan / .inf, JSON NaN / Infinity).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)


Sources = tuple[str, ...]


# Control characters (newlines, terminal escapes) and Unicode line separators: a name holding one
# could start a new line of a CI log (a workflow command) or rewrite a terminal.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: object) -> object:
    """A name or alias must be one line of printable text."""
    for text in value if isinstance(value, tuple | list) else (value,):
        if isinstance(text, str) and CONTROL_CHARACTERS.search(text):
            raise ValueError(f"{text[:40]!r} holds a control character (a newline or escape); use plain text")
    return value


def _as_source_list(value: object) -> object:
    if isinstance(value, str):
        return [value]
    return value


class LayerPattern(_Spec):
    """Which layers attend to the whole context and which only to a local window or chunk."""

    kind: Literal["all_global", "all_local", "alternating", "n_local_1_global"] = Field(
        description=(
            "all_global: every layer sees the whole context. all_local: every layer is windowed. "
            "alternating: local and global layers alternate (see `first`). "
            "n_local_1_global: `local_per_global` local layers, then one global layer, repeated."
        )
    )
    local_attention: Literal["sliding", "chunked"] | None = Field(
        default=None,
        description="sliding: a window that moves with the last token; chunked: fixed chunks (Llama-4).",
    )
    window_tokens: int | None = Field(
        default=None, gt=0, le=lim.MAX_POSITIONS, description="Sliding-window or chunk length in tokens."
    )
    first: Literal["local", "global"] = Field(
        default="local", description="alternating only: the type of layer 0."
    )
    local_per_global: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_LAYERS,
        description="n_local_1_global only: local layers per global layer.",
    )

    @model_validator(mode="after")
    def _check(self) -> LayerPattern:
        if self.kind == "all_global":
            if self.window_tokens is not None or self.local_attention is not None:
                raise ValueError("all_global layers take no window_tokens or local_attention")
        else:
            if self.window_tokens is None or self.local_attention is None:
                raise ValueError(f"{self.kind} needs window_tokens and local_attention")
        if (self.kind == "n_local_1_global") != (self.local_per_global is not None):
            raise ValueError("local_per_global is required for n_local_1_global and only there")
        return self

    def is_global(self, layer: int) -> bool:
        """True when layer `layer` (0-based) attends to the whole context."""
        if self.kind == "all_global":
            return True
        if self.kind == "all_local":
            return False
        if self.kind == "alternating":
            return (layer % 2 == 0) == (self.first == "global")
        assert self.local_per_global is not None
        return (layer + 1) % (self.local_per_global + 1) == 0


class MoESpec(_Spec):
    """Mixture-of-experts feed-forward layers."""

    num_experts: int = Field(gt=1, le=lim.MAX_EXPERTS, description="Routed experts per MoE layer.")
    experts_per_token: int = Field(gt=0, le=lim.MAX_EXPERTS, description="Routed experts each token uses.")
    expert_intermediate_size: int = Field(
        gt=0, le=lim.MAX_INTERMEDIATE, description="FFN width of one routed expert."
    )
    shared_experts: int = Field(
        default=0, ge=0, le=lim.MAX_SHARED_EXPERTS, description="Always-active shared experts."
    )
    shared_expert_intermediate_size: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_INTERMEDIATE,
        description="FFN width of one shared expert (default: expert width).",
    )
    shared_expert_gate: bool = Field(
        default=False, description="A hidden->1 sigmoid gate on the shared expert (Qwen2-MoE)."
    )
    first_dense_layers: int = Field(
        default=0,
        ge=0,
        le=lim.MAX_LAYERS,
        description="Leading layers with a dense FFN (DeepSeek first_k_dense_replace).",
    )
    router_bias: bool = Field(default=False, description="Router has a bias vector.")
    router_score_bias: bool = Field(
        default=False, description="Router has a per-expert score-correction bias (DeepSeek-V3)."
    )
    expert_bias: bool = Field(default=False, description="Expert projections carry biases (gpt-oss).")

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"experts_per_token {self.experts_per_token} exceeds num_experts {self.num_experts}"
            )
        return self


class MLASpec(_Spec):
    """Multi-head latent attention (DeepSeek-V2/V3): the cache holds one latent per token per layer."""

    kv_lora_rank: int = Field(gt=0, le=lim.MAX_HIDDEN)
    q_lora_rank: int | None = Field(default=None, gt=0, le=lim.MAX_HIDDEN)
    qk_rope_head_dim: int = Field(gt=0, le=lim.MAX_HEAD_DIM)
    qk_nope_head_dim: int = Field(gt=0, le=lim.MAX_HEAD_DIM)
    v_head_dim: int = Field(gt=0, le=lim.MAX_HEAD_DIM)


class VisionSpec(_Spec):
    """A vision tower loaded with the language model (counted in weights, not in KV)."""

    name: str
    params: int = Field(gt=0, le=lim.MAX_PARAMS, description="Vision encoder parameters.")
    projector_params: int = Field(
        default=0, ge=0, le=lim.MAX_PARAMS, description="Multimodal projector parameters."
    )


class ModelSpec(_Spec):
    """Architecture of one decoder-only language model, as its config.json states it."""

    def __hash__(self) -> int:
        # Equal specs have equal ids, so the id alone keeps the hash contract; the cached arithmetic
        # (core's @cache functions take specs as keys) then hashes one string, not every field.
        return hash(self.id)

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=128, description="Catalog id (file name stem)."
    )
    name: str = Field(description="Human-readable name.")
    hf_id: str | None = Field(default=None, description="Hugging Face repository id.")
    aliases: tuple[str, ...] = Field(default=(), description="Other names that resolve here.")
    family: str = Field(description="config.json model_type of the text model.")
    architecture: str | None = None
    hidden_size: int = Field(gt=0, le=lim.MAX_HIDDEN, description="Model width.")
    intermediate_size: int = Field(gt=0, le=lim.MAX_INTERMEDIATE, description="Dense FFN width.")
    num_hidden_layers: int = Field(gt=0, le=lim.MAX_LAYERS, description="Decoder layers.")
    num_attention_heads: int = Field(gt=0, le=lim.MAX_HEADS, description="Query heads.")
    num_key_value_heads: int = Field(gt=0, le=lim.MAX_HEADS, description="Key/value heads (GQA).")
    head_dim: int = Field(
        gt=0, le=lim.MAX_HEAD_DIM, description="Per-head width from config (often not hidden/heads)."
    )
    vocab_size: int = Field(gt=0, le=lim.MAX_VOCAB, description="Vocabulary entries.")
    tie_word_embeddings: bool
    max_position_embeddings: int = Field(gt=0, le=lim.MAX_POSITIONS, description="Trained context.")
    torch_dtype: Literal["bfloat16", "float16", "float32"] | None = None
    qkv_bias: bool = Field(default=False, description="q/k/v projections have biases (Qwen2).")
    o_bias: bool = Field(default=False, description="Attention output projection has a bias.")
    qk_norm: bool = Field(default=False, description="Per-head RMSNorm weights on q and k (Qwen3, Gemma-3).")
    attention_sinks: bool = Field(
        default=False, description="One learned sink scalar per head per layer (gpt-oss)."
    )
    norms_per_layer: int = Field(
        default=2,
        ge=0,
        le=lim.MAX_NORMS_PER_LAYER,
        description="hidden-sized norm vectors per layer (Gemma-2/3: 4).",
    )
    layer_pattern: LayerPattern
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    vision: VisionSpec | None = None
    native_weight_format: str | None = Field(
        default=None,
        description="Format the official checkpoint ships in when not 16-bit (e.g. fp8, mxfp4-moe).",
    )
    params_official: int | None = Field(
        default=None, gt=0, le=lim.MAX_PARAMS, description="Total parameters as the publisher states them."
    )
    source: Sources = Field(min_length=1, description="Where every figure above comes from.")
    notes: tuple[str, ...] = ()

    _normalise_source = field_validator("source", mode="before")(_as_source_list)
    _one_line = field_validator("name", "aliases", "family")(one_line)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.moe and self.moe.first_dense_layers > self.num_hidden_layers:
            raise ValueError("moe.first_dense_layers exceeds num_hidden_layers")
        return self


class GpuSpec(_Spec):
    """One accelerator: capacity, bandwidth and compute, as the vendor and real tools report them."""

    def __hash__(self) -> int:
        # Equal specs have equal ids, so the id alone keeps the hash contract; the cached arithmetic
        # (core's @cache functions take specs as keys) then hashes one string, not every field.
        return hash(self.id)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=128)
    name: str
    vendor: Literal["NVIDIA", "AMD", "Intel", "Apple"]
    aliases: tuple[str, ...] = Field(default=())
    form_factor: Literal["consumer", "workstation", "datacenter", "unified"]
    tier: Literal["sub-24", "24-32", "40-64", "80-96", "128-288", "unified"] = Field(
        description="Capacity class of one device by marketed memory."
    )
    memory_gb_marketed: float = Field(gt=0, le=lim.MAX_GPU_GB, description="The vendor's 'GB' label.")
    usable_mib: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GPU_MIB,
        description="Total memory as nvidia-smi/rocm-smi prints it (MiB); null when not measured.",
    )
    cuda_total_mib: int | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GPU_MIB,
        description=(
            "Total as CUDA reports it (cudaMemGetInfo / torch total_memory, MiB), below the "
            "nvidia-smi figure; null when not measured."
        ),
    )
    usable_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Unified memory: share the GPU may wire by default (Apple Metal ~0.75).",
    )
    memory_type: str
    memory_bandwidth_gbs: float = Field(
        gt=0, le=lim.MAX_GPU_RATE, description="Peak DRAM bandwidth, decimal GB/s."
    )
    bf16_dense_tflops: float | None = Field(default=None, gt=0, le=lim.MAX_GPU_RATE)
    fp16_dense_tflops: float | None = Field(default=None, gt=0, le=lim.MAX_GPU_RATE)
    fp16_acc_dense_tflops: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GPU_RATE,
        description=(
            "Dense FP16 tensor rate with FP16 accumulate, where it differs from fp16_dense_tflops "
            "(the FP32-accumulate rate): GeForce cards and the L40/L20 run FP32 accumulate at half "
            "rate. llama.cpp's cuBLAS F16 GEMMs use FP16 accumulate. Null: same as fp16_dense_tflops."
        ),
    )
    fp8_dense_tflops: float | None = Field(default=None, gt=0, le=lim.MAX_GPU_RATE)
    bf16_achievable_tflops: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GPU_RATE,
        description=(
            "Measured maximum achievable matmul rate (MAMF: the best large dense BF16 GEMM shape "
            "found by brute force in torch), where published. Null: not measured."
        ),
    )
    fp8_achievable_tflops: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GPU_RATE,
        description="The same for FP8 (e4m3) GEMMs, where published. Null: not measured.",
    )
    int8_dense_tops: float | None = Field(default=None, gt=0, le=lim.MAX_GPU_RATE)
    fp4_dense_tflops: float | None = Field(default=None, gt=0, le=lim.MAX_GPU_RATE)
    ecc: bool | None = None
    tdp_w: float | None = Field(default=None, gt=0, le=lim.MAX_WATTS)
    interconnect: str | None = None
    link_gbs: float | None = Field(
        default=None,
        gt=0,
        le=lim.MAX_GPU_RATE,
        description=(
            "GPU-to-GPU bandwidth in ONE direction, decimal GB/s, that one device reaches in the "
            "standard multi-GPU server for this part: NVLink/NVSwitch for SXM parts, xGMI for AMD "
            "OAM parts (all links together, as when the whole board takes part), otherwise the "
            "card's PCIe link (an optional NVLink bridge is not counted; see notes). "
            "Null for single devices and where no figure is sourced."
        ),
    )
    release_year: int | None = Field(default=None, ge=lim.MIN_YEAR, le=lim.MAX_YEAR)
    cuda_sm: int | None = Field(
        default=None,
        ge=30,
        le=199,
        description=(
            "NVIDIA CUDA compute capability x 10 (sm_86 = 86): which kernels an engine can take on "
            "the card (vLLM's MXFP4 MoE backend, for one). Null for other vendors."
        ),
    )
    price_usd: float | None = Field(default=None, gt=0, le=lim.MAX_PRICE_USD)
    price_note: str | None = None
    source: Sources = Field(min_length=1)
    notes: tuple[str, ...] = ()

    _normalise_source = field_validator("source", mode="before")(_as_source_list)
    _one_line = field_validator("name", "aliases")(one_line)
