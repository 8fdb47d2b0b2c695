"""The tensor inventory a model's config implies: the single source of parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from vramcalc.specs import ModelSpec

# Roles follow llama.cpp's GGUF tensor names so the GGUF type rules can key on them.
Role = Literal[
    "token_embd",
    "output",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_output",
    "attn_q_a",
    "attn_q_b",
    "attn_kv_a_mqa",
    "attn_kv_b",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "ffn_gate_exps",
    "ffn_up_exps",
    "ffn_down_exps",
    "ffn_gate_shexp",
    "ffn_up_shexp",
    "ffn_down_shexp",
    "ffn_gate_inp",
    "ffn_gate_inp_shexp",
    "norm",
    "bias",
    "attn_sinks",
    "vision",
]

# Roles that are 2-D matrices inside the decoder blocks: what weight quantizers convert.
DECODER_MATRIX_ROLES: frozenset[str] = frozenset(
    {
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_qkv",
        "attn_output",
        "attn_q_a",
        "attn_q_b",
        "attn_kv_a_mqa",
        "attn_kv_b",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
        "ffn_gate_exps",
        "ffn_up_exps",
        "ffn_down_exps",
        "ffn_gate_shexp",
        "ffn_up_shexp",
        "ffn_down_shexp",
    }
)
EXPERT_ROLES: frozenset[str] = frozenset({"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})

# Families whose GGUF conversion fuses q/k/v into one attn_qkv tensor (llama.cpp phi3 arch).
_FUSED_QKV_FAMILIES = frozenset({"phi3"})


@dataclass(frozen=True, slots=True)
class Tensor:
    """One stored tensor (or one stack of expert matrices).

    `row_len` is the contiguous dimension (GGUF ne0, a Linear's in_features), which block
    quantizers split into blocks; `rows` is everything else multiplied (out_features x experts).
    """

    role: Role
    layer: int | None
    row_len: int
    rows: int
    experts: int = 1

    @property
    def params(self) -> int:
        return self.row_len * self.rows


def _attention(m: ModelSpec, layer: int) -> list[Tensor]:
    h = m.hidden_size
    out: list[Tensor] = []
    if m.mla is not None:
        mla = m.mla
        qk_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        if mla.q_lora_rank is not None:
            out.append(Tensor("attn_q_a", layer, h, mla.q_lora_rank))
            out.append(Tensor("norm", layer, mla.q_lora_rank, 1))
            out.append(Tensor("attn_q_b", layer, mla.q_lora_rank, m.num_attention_heads * qk_head))
        else:
            out.append(Tensor("attn_q", layer, h, m.num_attention_heads * qk_head))
        out.append(Tensor("attn_kv_a_mqa", layer, h, mla.kv_lora_rank + mla.qk_rope_head_dim))
        out.append(Tensor("norm", layer, mla.kv_lora_rank, 1))
        kv_b_rows = m.num_attention_heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        out.append(Tensor("attn_kv_b", layer, mla.kv_lora_rank, kv_b_rows))
        out.append(Tensor("attn_output", layer, m.num_attention_heads * mla.v_head_dim, h))
        return out

    q_dim = m.num_attention_heads * m.head_dim
    kv_dim = m.num_key_value_heads * m.head_dim
    if m.family in _FUSED_QKV_FAMILIES:
        out.append(Tensor("attn_qkv", layer, h, q_dim + 2 * kv_dim))
    else:
        out.append(Tensor("attn_q", layer, h, q_dim))
        out.append(Tensor("attn_k", layer, h, kv_dim))
        out.append(Tensor("attn_v", layer, h, kv_dim))
    if m.qkv_bias:
        out.append(Tensor("bias", layer, q_dim + 2 * kv_dim, 1))
    out.append(Tensor("attn_output", layer, q_dim, h))
    if m.o_bias:
        out.append(Tensor("bias", layer, h, 1))
    if m.qk_norm:
        out.append(Tensor("norm", layer, 2 * m.head_dim, 1))
    if m.attention_sinks:
        out.append(Tensor("attn_sinks", layer, m.num_attention_heads, 1))
    return out


def _feed_forward(m: ModelSpec, layer: int) -> list[Tensor]:
    h = m.hidden_size
    moe = m.moe
    if moe is None or layer < moe.first_dense_layers:
        width = m.intermediate_size
        return [
            Tensor("ffn_gate", layer, h, width),
            Tensor("ffn_up", layer, h, width),
            Tensor("ffn_down", layer, width, h),
        ]
    n, width = moe.num_experts, moe.expert_intermediate_size
    out = [
        Tensor("ffn_gate_inp", layer, h, n),
        Tensor("ffn_gate_exps", layer, h, width * n, experts=n),
        Tensor("ffn_up_exps", layer, h, width * n, experts=n),
        Tensor("ffn_down_exps", layer, width, h * n, experts=n),
    ]
    if moe.router_bias or moe.router_score_bias:
        out.append(Tensor("bias", layer, n, 1))
    if moe.expert_bias:
        out.append(Tensor("bias", layer, 2 * width + h, n, experts=n))
    if moe.shared_experts:
        shared = (moe.shared_expert_intermediate_size or width) * moe.shared_experts
        out += [
            Tensor("ffn_gate_shexp", layer, h, shared),
            Tensor("ffn_up_shexp", layer, h, shared),
            Tensor("ffn_down_shexp", layer, shared, h),
        ]
        if moe.shared_expert_gate:
            out.append(Tensor("ffn_gate_inp_shexp", layer, h, 1))
    return out


@cache
def tensor_inventory(m: ModelSpec) -> tuple[Tensor, ...]:
    """Every tensor the config implies, in checkpoint order.

    Embedding vocab x hidden; untied lm_head the same again; per layer the attention
    projections (+ biases, q/k norms, sinks), the FFN (dense gated MLP = 3 matrices, or router +
    routed experts + shared experts), `norms_per_layer` hidden-sized norms; one final norm;
    and the vision tower when the entry lists one.
    """
    h = m.hidden_size
    out: list[Tensor] = [Tensor("token_embd", None, h, m.vocab_size)]
    for layer in range(m.num_hidden_layers):
        out += _attention(m, layer)
        out += _feed_forward(m, layer)
        out.append(Tensor("norm", layer, h * m.norms_per_layer, 1))
    out.append(Tensor("norm", None, h, 1))
    if not m.tie_word_embeddings:
        out.append(Tensor("output", None, h, m.vocab_size))
    if m.vision is not None:
        vision_params = m.vision.params + m.vision.projector_params
        out.append(Tensor("vision", None, vision_params, 1))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ParamCounts:
    total: int
    embedding: int
    active: int
    vision: int


@cache
def param_counts(m: ModelSpec) -> ParamCounts:
    """Total parameters, the input embedding, and those active per token.

    Active counts every tensor except routed experts (matrices and biases), of which only
    `experts_per_token` of `num_experts` take part (input embedding included, as the
    reference's active figure does).
    """
    tensors = tensor_inventory(m)
    total = sum(t.params for t in tensors)
    embedding = sum(t.params for t in tensors if t.role == "token_embd")
    vision = sum(t.params for t in tensors if t.role == "vision")
    active = total
    if m.moe is not None:
        idle = m.moe.num_experts - m.moe.experts_per_token
        expert = sum(t.params for t in tensors if t.experts > 1)
        active = total - expert * idle // m.moe.num_experts
    return ParamCounts(total=total, embedding=embedding, active=active, vision=vision)
