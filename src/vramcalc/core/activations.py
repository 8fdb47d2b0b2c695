"""Activation and temporary-buffer peak: a first-order model of what a forward pass allocates."""

from __future__ import annotations

from dataclasses import dataclass

from vramcalc.specs import ModelSpec

# Source: vLLM v1 gpu_model_runner._dummy_sampler_run samples one row per sequence over the
# whole vocabulary: bf16 logits (2 B) + fp32 copy (4 B) + probabilities (4 B) ~ 10 B per vocab
# entry with the FlashInfer sampler (shared/reference/engines.md section 1.7).
SAMPLER_BYTES_PER_LOGIT = 10

# Source: the activations of one prefill chunk in bf16, engines.md sections 1.7 and 8:
# 3 x intermediate (gate out, up out, activation product), q + k + v projections, ~4 x hidden
# (residual, normed input, attention output, MLP output).
ACTIVATION_DTYPE_BYTES = 2
MLP_TEMPORARIES = 3
HIDDEN_TEMPORARIES = 4


@dataclass(frozen=True, slots=True)
class ActivationUse:
    bytes: int
    forward_bytes: int
    sampler_bytes: int
    prefill_tokens: int
    sampled_rows: int
    ffn_width: int
    qkv_width: int


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


def activation_bytes(m: ModelSpec, prefill_tokens: int, sampled_rows: int) -> ActivationUse:
    """Peak temporary memory: the larger of one prefill chunk's forward pass and the sampler.

    forward = tokens x (3 x ffn_width + qkv_width + 4 x hidden) x 2 B (flash/paged attention keeps
    the attention workspace O(tokens)); sampler = rows x vocab x 10 B.
    """
    ffn = ffn_width(m)
    qkv = qkv_width(m)
    per_token = MLP_TEMPORARIES * ffn + qkv + HIDDEN_TEMPORARIES * m.hidden_size
    forward = prefill_tokens * per_token * ACTIVATION_DTYPE_BYTES
    sampler = sampled_rows * m.vocab_size * SAMPLER_BYTES_PER_LOGIT
    return ActivationUse(max(forward, sampler), forward, sampler, prefill_tokens, sampled_rows, ffn, qkv)
