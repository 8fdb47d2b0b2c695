"""Activation and temporary-buffer peak: a first-order model of what a forward pass allocates."""

from __future__ import annotations

from dataclasses import dataclass

from vramcalc.specs import ModelSpec

# Source: the activations of one prefill chunk in bf16, engines.md sections 1.7 and 8:
# 3 x intermediate (fused gate_up out + activation product), q + k + v projections, plus
# `hidden_temporaries` x hidden, which engine profiles set from calibration records.
ACTIVATION_DTYPE_BYTES = 2
MLP_TEMPORARIES = 3


@dataclass(frozen=True, slots=True)
class ActivationUse:
    bytes: int
    forward_bytes: int
    attention_bytes: int
    sampler_bytes: int
    prefill_tokens: int
    sampled_rows: int
    ffn_width: int
    qkv_width: int
    hidden_temporaries: float
    sampler_bytes_per_logit: float
    forward_logit_bytes: float  # bytes per sampled logit alive beside the forward's peak


def ffn_width(m: ModelSpec) -> int:
    """Widest per-token FFN intermediate: dense width, or top-k experts (+ shared) for MoE."""
    if m.moe is None:
        return m.intermediate_size
    moe = m.moe
    routed = moe.experts_per_token * moe.expert_intermediate_size
    shared = moe.shared_experts * (moe.shared_expert_intermediate_size or moe.expert_intermediate_size)
    dense = m.intermediate_size if moe.first_dense_layers else 0
    return max(dense, routed + shared)


def qkv_width(m: ModelSpec) -> int:
    """Per-token width of the q, k and v projections during prefill (MLA expanded per head)."""
    if m.mla is not None:
        qk_head = m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim
        return m.num_attention_heads * (2 * qk_head + m.mla.v_head_dim)
    return (m.num_attention_heads + 2 * m.num_key_value_heads) * m.head_dim


# Source: vllm/model_executor/layers/fused_moe/fused_moe.py fused_experts_impl (SGLang's
# fused_moe_triton keeps the same buffers): for a chunk of M = min(tokens,
# VLLM_FUSED_MOE_CHUNK_SIZE = 16,384) tokens, cache13 = M x top_k x max(N, K) elements (the
# gate_up output and the down output share it) and cache2 = M x top_k x N / 2, with N = 2 x the
# expert width / tp and K = hidden: every routed (token, expert) pair's down output is hidden-wide
# on every rank, not split by tensor parallelism.
FUSED_MOE_CHUNK_TOKENS = 16_384


def fused_moe_workspace_bytes(m: ModelSpec, tokens: int, tp: int, dtype_bytes: int) -> int:
    """The fused MoE kernel's intermediate buffers for one forward of `tokens` tokens (0 if dense)."""
    if m.moe is None:
        return 0
    chunk = min(tokens, FUSED_MOE_CHUNK_TOKENS)
    n = 2 * m.moe.expert_intermediate_size // tp
    return chunk * m.moe.experts_per_token * (max(n, m.hidden_size) + n // 2) * dtype_bytes


def activation_bytes(
    m: ModelSpec,
    prefill_tokens: int,
    sampled_rows: int,
    *,
    sampler_bytes_per_logit: float,
    hidden_temporaries: float,
    forward_logit_bytes: float = 0.0,
    eager_attention: bool = False,
    attention_score_bytes: int = 4,
    attention_kv_tokens: int = 0,
    dtype_bytes: int = ACTIVATION_DTYPE_BYTES,
    tp: int = 1,
    fused_moe: bool = False,
) -> ActivationUse:
    """Peak temporary memory on one GPU for one forward pass and the sampler.

    forward = tokens x (3 x ffn_width + qkv_width) / tp x dtype B (with `fused_moe`, at least the
    fused MoE kernel's buffers, fused_moe_workspace_bytes) + tokens x hidden_temporaries x
    hidden x dtype B (bf16 in PyTorch engines, f32 in llama.cpp's graph); with eager (non-flash) attention, one layer's scores heads/tp x tokens x
    kv_tokens x score_bytes replace the MLP temporaries when larger; sampler = rows x vocab x
    bytes_per_logit. Peak = max(forward + rows x vocab x forward_logit_bytes, sampler): the sampler
    runs after the forward has freed its temporaries; `forward_logit_bytes` is what an engine's
    profile keeps of the logits beside the forward's peak (vLLM V0's fp32 logits, 4 B).
    """
    ffn = ffn_width(m)
    qkv = qkv_width(m)
    mlp = prefill_tokens * MLP_TEMPORARIES * ffn // tp * dtype_bytes
    if fused_moe:
        mlp = max(mlp, fused_moe_workspace_bytes(m, prefill_tokens, tp, dtype_bytes))
    scores = 0
    if eager_attention:
        heads = max(1, m.num_attention_heads // tp)
        scores = heads * prefill_tokens * attention_kv_tokens * attention_score_bytes
    rest = prefill_tokens * (qkv // tp * dtype_bytes) + int(
        prefill_tokens * hidden_temporaries * m.hidden_size * dtype_bytes
    )
    forward = max(mlp, scores) + rest
    sampler = int(sampled_rows * m.vocab_size * sampler_bytes_per_logit)
    peak = max(forward + int(sampled_rows * m.vocab_size * forward_logit_bytes), sampler)
    return ActivationUse(
        peak,
        forward,
        scores,
        sampler,
        prefill_tokens,
        sampled_rows,
        ffn,
        qkv,
        hidden_temporaries,
        sampler_bytes_per_logit,
        forward_logit_bytes,
    )
