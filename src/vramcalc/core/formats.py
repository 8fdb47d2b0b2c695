"""Weight formats and KV-cache dtypes: exact storage per tensor, scales and zeros included."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Literal

from vramcalc.core.tensors import DECODER_MATRIX_ROLES, EXPERT_ROLES, Tensor, tensor_inventory
from vramcalc.errors import UnknownFormatError
from vramcalc.specs import ModelSpec

# GGML block layouts: (elements per block, bytes per block).
# Source: ggml-org/llama.cpp ggml/src/ggml-common.h block structs @01243c58 (block_q8_0 = 2 B scale
# + 32 B, block_q4_K = 144 B per 256, block_iq2_xxs = 2 + 64 B per 256, ...), cross-checked against
# gguf-py gguf/constants.py GGML_QUANT_SIZES (gguf 0.19.0); shared/reference/engines.md section 2.5.
GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q8_0": (32, 34),  # half d + 32 x int8
    "Q5_1": (32, 24),  # half d, m + 4 B high bits + 16 B nibbles
    "Q5_0": (32, 22),  # half d + 4 B high bits + 16 B nibbles
    "Q4_1": (32, 20),  # half d, m + 16 B nibbles
    "Q4_0": (32, 18),  # half d + 16 B nibbles
    "IQ4_NL": (32, 18),  # half d + 16 B
    "MXFP4": (32, 17),  # E8M0 scale + 16 B
    "Q6_K": (256, 210),  # 128 ql + 64 qh + 16 scales + half d
    "Q5_K": (256, 176),  # 2 halves + 12 scales + 32 qh + 128 qs
    "Q4_K": (256, 144),  # 2 halves + 12 scales + 128 qs
    "Q3_K": (256, 110),  # 32 hmask + 64 qs + 12 scales + half d
    "Q2_K": (256, 84),  # 16 scales + 64 qs + 2 halves
    "IQ4_XS": (256, 136),  # half d + u16 scales_h + 4 scales_l + 128 qs
    "IQ3_S": (256, 110),  # half d + 64 qs + 8 qh + 32 signs + 4 scales
    "IQ3_XXS": (256, 98),  # half d + 96 qs
    "IQ2_S": (256, 82),  # half d + 64 qs + 8 qh + 8 scales
    "IQ2_XS": (256, 74),  # half d + 32 x u16 qs + 8 scales
    "IQ2_XXS": (256, 66),  # half d + 32 x u16 qs
    "IQ1_M": (256, 56),  # 32 qs + 16 qh + 8 scales (scale packed in them)
    "IQ1_S": (256, 50),  # half d + 32 qs + 8 x u16 qh
    "TQ2_0": (256, 66),  # 64 qs + half d
    "TQ1_0": (256, 54),  # 48 qs + 4 qh + half d
}

# Fallback when a row length (ne0) is not a multiple of the type's block.
# Source: llama.cpp src/llama-quant.cpp tensor_type_fallback @007dbbf3. A fallback that still does not
# fit becomes F16 there; a type with no fallback (Q8_0, Q4_0, IQ4_NL, ...) aborts llama-quantize,
# where we return F16 too.
_GGML_FALLBACK = {
    "IQ1_S": "IQ4_NL",
    "IQ1_M": "IQ4_NL",
    "IQ2_XXS": "IQ4_NL",
    "IQ2_XS": "IQ4_NL",
    "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL",
    "IQ3_S": "IQ4_NL",
    "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0",
    "Q3_K": "Q4_0",
    "TQ1_0": "Q4_0",
    "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
}


def ggml_tensor_bytes(ggml_type: str, tensor: Tensor) -> int:
    """Bytes of one GGUF tensor: rows x (row_len / block_elems) x block_bytes."""
    elems, size = GGML_BLOCKS[ggml_type]
    assert tensor.row_len % elems == 0, f"{ggml_type} cannot store rows of {tensor.row_len}"
    return tensor.rows * (tensor.row_len // elems) * size


def _fits_blocks(ggml_type: str, row_len: int) -> bool:
    return row_len % GGML_BLOCKS[ggml_type][0] == 0


def _with_fallback(ggml_type: str, row_len: int) -> str:
    if _fits_blocks(ggml_type, row_len):
        return ggml_type
    fallback = _GGML_FALLBACK.get(ggml_type, "F16")
    return fallback if _fits_blocks(fallback, row_len) else "F16"


def _use_more_bits(i: int, n: int) -> bool:
    # Source: llama.cpp src/llama-quant.cpp llama_tensor_get_type_impl, lambda use_more_bits.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass(frozen=True, slots=True)
class GgufMix:
    """One llama.cpp ftype: its default tensor type plus the per-tensor upgrades of llama-quant.cpp.

    `base` is llama_ftype_get_default_type's answer (IQ2_S files default to IQ2_XS, IQ2_M to IQ2_S,
    IQ3_XS / IQ3_S / IQ3_M to IQ3_S). `imatrix`: whether the file is assumed quantized with an
    importance matrix, which changes a few rules (IQ3_XXS attn_v and ffn_down, IQ4_NL/IQ4_XS and
    Q4_0/Q5_0 ffn_down). The IQ types require one for their IQ1/IQ2/IQ3_XXS tensors and community
    uploads use one; for the other types we assume llama-quantize's plain default (none).
    """

    base: str
    more_bits: str | None = None  # attn_v / ffn_down type on use_more_bits layers (Q4_K_M, Q5_K_M)
    imatrix: bool = False

    @property
    def quantized(self) -> bool:
        """ggml_is_quantized(default_type): F16/BF16 files skip the per-tensor rules entirely."""
        return self.base not in ("F32", "F16", "BF16")


# llama-quant.cpp tensor_get_category, applied to vramcalc's roles: names containing "ffn_down"
# (ffn_down, ffn_down_exps, ffn_down_shexp) are FFN_DOWN, likewise gate and up; attn_v, attn_qkv and
# attn_kv_b are "attn_v-like" (category_is_attn_v); attn_q_a / attn_q_b / attn_kv_a_mqa are OTHER.
_ATTN_V_LIKE = frozenset({"attn_v", "attn_qkv", "attn_kv_b"})
_FFN_DOWN = frozenset({"ffn_down", "ffn_down_exps", "ffn_down_shexp"})
_FFN_GATE_UP = frozenset(
    {"ffn_gate", "ffn_gate_exps", "ffn_gate_shexp", "ffn_up", "ffn_up_exps", "ffn_up_shexp"}
)

# The 1-2 bit i-quants share one branch of llama_tensor_get_type_impl.
_IQ1_IQ2 = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
# output.weight (and a tied token_embd) -> Q5_K for these ftypes, else Q6_K unless the default is Q8_0.
_OUTPUT_Q5_K = frozenset({"IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
# An untied token_embd.weight.
_TOKEN_EMBD = {
    "IQ2_XXS": "Q2_K",
    "IQ2_XS": "Q2_K",
    "IQ1_S": "Q2_K",
    "IQ1_M": "Q2_K",
    "IQ2_S": "IQ3_S",
    "IQ2_M": "IQ3_S",
    "IQ3_XXS": "IQ3_S",
    "TQ1_0": "Q4_K",
    "TQ2_0": "Q4_K",
}
# attn_output.weight of an 8-expert model (Mixtral) -> Q5_K for these ftypes.
_ATTN_OUTPUT_8_EXPERTS = frozenset(
    {
        "Q2_K",
        "IQ3_XS",
        "IQ3_XXS",
        "Q3_K_S",
        "Q3_K_M",
        "IQ4_NL",
        "Q4_K_S",
        "Q4_K_M",
        "IQ3_S",
        "IQ3_M",
        "IQ4_XS",
    }
)
# attn_output.weight otherwise (non-Falcon).
_ATTN_OUTPUT = {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K"}

# Families llama.cpp loads as LLM_ARCH_LLAMA (model type 70B needs 80 layers and GQA there) and
# as LLM_ARCH_QWEN2 (80 layers -> 70B). Source: llama.cpp src/llama-model.cpp load_hparams.
_LLAMA_ARCH_FAMILIES = frozenset({"llama", "mistral", "mixtral"})


def _is_llm_type_70b(m: ModelSpec) -> bool:
    if m.num_hidden_layers != 80:
        return False
    if m.family in _LLAMA_ARCH_FAMILIES:
        return m.num_attention_heads != m.num_key_value_heads  # else LLM_TYPE_65B
    return m.family == "qwen2"


def _ffn_down_counter(m: ModelSpec, t: Tensor) -> int:
    """qs.i_ffn_down when tensor `t` is reached: llama-quantize walks tensors sorted by layer, then
    name (llama_model_loader weight_name_comparer), so a MoE layer with a shared expert counts two
    FFN_DOWN tensors (ffn_down_exps, then ffn_down_shexp) and a dense layer one."""
    assert t.layer is not None
    moe = m.moe
    if moe is None or not moe.shared_experts:
        return t.layer
    moe_layers_before = max(0, t.layer - moe.first_dense_layers)
    return t.layer + moe_layers_before + (1 if t.role == "ffn_down_shexp" else 0)


def gguf_tensor_type(mix_name: str, mix: GgufMix, m: ModelSpec, t: Tensor, i_attn_v: int) -> str:
    """The ggml type llama-quantize gives tensor `t` in a file of type `mix_name`.

    `i_attn_v` counts the attn_v-like tensors (attn_v, attn_qkv, attn_kv_b) before `t`
    (qs.i_attention_wv). Source: llama.cpp src/llama-quant.cpp @007dbbf3 (tensor_allows_quantization,
    llama_tensor_get_type, llama_tensor_get_type_impl, tensor_type_fallback,
    llama_ftype_get_default_type). Assumes no --pure, no --tensor-type / --output-tensor-type /
    --token-embedding-type overrides, and an importance matrix as `mix.imatrix` says.
    Not modelled: Falcon's branches (no Falcon in the catalog) and other arch quirks.
    """
    if t.role == "vision":
        return "F16"  # the vision tower ships as a separate F16 mmproj file
    if t.rows == 1 or t.role in ("norm", "bias", "attn_sinks", "ffn_gate_inp", "ffn_gate_inp_shexp"):
        return "F32"  # 1-D tensors, norms and routers are never quantized
    if not mix.quantized:
        return mix.base  # F16 / BF16 files: every 2-D weight in the default type, output included
    return _with_fallback(_llama_tensor_type(mix_name, mix, m, t, i_attn_v), t.row_len)


def _llama_tensor_type(ftype: str, mix: GgufMix, m: ModelSpec, t: Tensor, i_attn_v: int) -> str:
    """llama_tensor_get_type_impl for one quantized tensor (before tensor_type_fallback)."""
    role, base, n_layers = t.role, mix.base, m.num_hidden_layers
    n_expert = m.moe.num_experts if m.moe else 0  # hparams.n_expert
    # hparams.n_gqa(): heads per kv head (MLA models: as the catalog spec states it).
    gqa = m.num_attention_heads // m.num_key_value_heads

    # output.weight, and token_embd.weight when the model has no output.weight (tied embeddings).
    if role == "output" or (role == "token_embd" and m.tie_word_embeddings):
        if ftype == "MXFP4_MOE" or not _fits_blocks(base, t.row_len):
            return "Q8_0"
        if ftype in _OUTPUT_Q5_K:
            return "Q5_K"
        return base if base == "Q8_0" else "Q6_K"
    if ftype == "MXFP4_MOE":
        return "MXFP4" if role in EXPERT_ROLES else "Q8_0"  # 3-D (ne[2] > 1) expert stacks only
    if role == "token_embd":
        return _TOKEN_EMBD.get(ftype, base)

    if ftype in _IQ1_IQ2:
        iq3_s = ftype in ("IQ2_S", "IQ2_M")
        if role in _ATTN_V_LIKE:
            if gqa >= 4 or n_expert >= 4:
                return "Q4_K"
            return "IQ3_S" if iq3_s else "Q2_K"
        if role == "attn_k" and n_expert == 8:
            return "Q4_K"
        if role in _FFN_DOWN:
            # qs.i_ffn_down < qs.n_ffn_down/8: the raw counter, n_ffn_down = n_layer_all.
            if _ffn_down_counter(m, t) < n_layers // 8:
                return "IQ3_S" if iq3_s else "Q2_K"
            return base
        if role == "attn_output":
            if n_expert == 8:
                return "Q5_K"
            if ftype in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            return "IQ3_S" if iq3_s else base
        return base

    if role in _ATTN_V_LIKE:
        # attn_qkv is attn_v-like, so this branch (not the later ATTENTION_QKV one) decides it.
        chosen = base
        if ftype == "Q2_K":
            chosen = "Q4_K" if gqa >= 4 else "Q3_K"
        elif ftype == "Q2_K_S" and gqa >= 4:
            chosen = "Q4_K"
        elif ftype == "IQ3_XXS":
            chosen = "Q4_K" if gqa >= 4 else ("IQ3_XXS" if mix.imatrix else "IQ3_S")
        elif (ftype in ("IQ3_XS", "IQ3_S") and gqa >= 4) or ftype == "IQ3_M":
            chosen = "Q4_K"
        elif ftype == "Q3_K_M":
            chosen = "Q5_K" if i_attn_v < 2 else "Q4_K"
        elif ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and gqa >= 4):
            chosen = "Q5_K"
        elif mix.more_bits and _use_more_bits(i_attn_v, _n_attn_v(m)):
            chosen = mix.more_bits  # Q4_K_M, Q5_K_M -> Q6_K
        elif ftype == "Q4_K_S" and i_attn_v < 4:
            chosen = "Q5_K"
        # LLM_TYPE_70B: attn_v is 8x smaller than attn_q, so Q3_K/Q4_K -> Q5_K.
        if _is_llm_type_70b(m) and chosen in ("Q3_K", "Q4_K"):
            chosen = "Q5_K"
        if n_expert == 8:
            chosen = "Q8_0"
        return chosen
    if role == "attn_k":
        if n_expert == 8:
            return "Q8_0"
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, base)
    if role == "attn_q":
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, base)
    if role in _FFN_DOWN:
        assert t.layer is not None
        i, n = t.layer, n_layers  # layer_info: the counter (dense) or blk.N (MoE) = the layer
        if ftype == "Q2_K":
            return "Q3_K"
        if ftype == "Q2_K_S":
            return "Q4_K" if i < n // 8 else base
        if ftype == "IQ3_XXS" and not mix.imatrix:
            return "Q4_K" if i < n // 8 else "Q3_K"
        if ftype == "Q3_K_M":
            return "Q5_K" if i < n // 16 else "Q4_K"  # non-Falcon
        if ftype == "IQ3_M" and (i < n // 8 or (n_expert == 8 and _use_more_bits(i, n))):
            return "Q4_K"
        if ftype == "Q3_K_L":
            return "Q5_K"
        if mix.more_bits and _use_more_bits(i, n):
            return mix.more_bits  # Q4_K_M, Q5_K_M -> Q6_K
        if ftype in ("IQ4_NL", "IQ4_XS") and not mix.imatrix and i < n // 8:
            return "Q5_K"
        if ftype == "Q4_K_S" and i < n // 8:
            return "Q5_K"
        if ftype in ("Q4_0", "Q5_0") and mix.imatrix and i < n // 8:
            return "Q4_1" if ftype == "Q4_0" else "Q5_1"
        return base
    if role == "attn_output":
        if n_expert == 8:
            return "Q5_K" if ftype in _ATTN_OUTPUT_8_EXPERTS else base
        return _ATTN_OUTPUT.get(ftype, base)
    if role in _FFN_GATE_UP:
        assert t.layer is not None
        if ftype == "IQ3_XS" and n_layers // 8 <= t.layer < 7 * n_layers // 8:
            return "IQ3_XXS"
        return base
    return base


def _n_attn_v(m: ModelSpec) -> int:
    return m.num_hidden_layers  # one attn_v-like tensor (attn_v, attn_qkv or attn_kv_b) per layer


# Every llama.cpp file type (llama-quantize's list), with its default tensor type.
# Source: llama.cpp src/llama-quant.cpp @007dbbf3 llama_ftype_get_default_type and
# llama_tensor_get_type_impl; summary table in shared/reference/engines.md section 2.5.
# Not modelled: the recent Q1_0, Q2_0 and NVFP4 ftypes (Bonsai / NVFP4 checkpoints), nor ALL_F32.
GGUF_MIXES: dict[str, GgufMix] = {
    "Q2_K": GgufMix("Q2_K"),
    "Q2_K_S": GgufMix("Q2_K", imatrix=True),  # its Q2_K tensors require an imatrix
    "Q3_K_S": GgufMix("Q3_K"),
    "Q3_K_M": GgufMix("Q3_K"),
    "Q3_K_L": GgufMix("Q3_K"),
    "Q4_0": GgufMix("Q4_0"),
    "Q4_1": GgufMix("Q4_1"),
    "Q4_K_S": GgufMix("Q4_K"),
    "Q4_K_M": GgufMix("Q4_K", more_bits="Q6_K"),
    "Q5_0": GgufMix("Q5_0"),
    "Q5_1": GgufMix("Q5_1"),
    "Q5_K_S": GgufMix("Q5_K"),
    "Q5_K_M": GgufMix("Q5_K", more_bits="Q6_K"),
    "Q6_K": GgufMix("Q6_K"),
    "Q8_0": GgufMix("Q8_0"),
    "IQ1_S": GgufMix("IQ1_S", imatrix=True),
    "IQ1_M": GgufMix("IQ1_M", imatrix=True),
    "IQ2_XXS": GgufMix("IQ2_XXS", imatrix=True),
    "IQ2_XS": GgufMix("IQ2_XS", imatrix=True),
    "IQ2_S": GgufMix("IQ2_XS", imatrix=True),
    "IQ2_M": GgufMix("IQ2_S", imatrix=True),
    "IQ3_XXS": GgufMix("IQ3_XXS", imatrix=True),
    "IQ3_XS": GgufMix("IQ3_S", imatrix=True),
    "IQ3_S": GgufMix("IQ3_S", imatrix=True),
    "IQ3_M": GgufMix("IQ3_S", imatrix=True),
    "IQ4_NL": GgufMix("IQ4_NL", imatrix=True),
    "IQ4_XS": GgufMix("IQ4_XS", imatrix=True),
    "TQ1_0": GgufMix("TQ1_0"),
    "TQ2_0": GgufMix("TQ2_0"),
    "MXFP4_MOE": GgufMix("MXFP4"),
    "BF16": GgufMix("BF16"),
    "F16": GgufMix("F16"),
}


@dataclass(frozen=True, slots=True)
class DenseFormat:
    """A checkpoint format served by PyTorch engines (vLLM, SGLang, TGI, transformers).

    Decoder matrices take `bits` per weight plus per-group scales/zeros; everything else
    (embeddings, lm_head, norms, biases, routers, vision tower) stays 16-bit.
    """

    bits: int
    group_size: int | None = None  # values per scale (None: per-tensor/per-block scale below)
    scale_bits: int = 0  # bits of one group scale
    zero_bits: int = 0  # bits of one group zero point
    g_idx: bool = False  # GPTQ act-order index: one int32 per input row
    block_scale: int | None = None  # fp8: one fp32 scale per block_scale x block_scale tile
    nested_scale: tuple[int, int] | None = None  # bnb double quant: (fp32 bits, per N absmax)
    experts_only: bool = False  # MXFP4 on MoE experts only (gpt-oss)

    def matrix_bytes(self, t: Tensor) -> int:
        """Stored bytes of one decoder matrix in this format (exact, rounded up to bytes)."""
        bits = Fraction(self.bits)
        if self.group_size:
            bits += Fraction(self.scale_bits + self.zero_bits, self.group_size)
        if self.nested_scale and self.group_size:
            second_bits, per = self.nested_scale
            bits += Fraction(second_bits, self.group_size * per)
        total = bits * t.params
        if self.g_idx:
            total += 32 * t.row_len * t.experts
        if self.block_scale:
            b = self.block_scale
            out_features = t.rows // t.experts
            total += 32 * t.experts * math.ceil(out_features / b) * math.ceil(t.row_len / b)
        return math.ceil(total / 8)


DENSE_FORMATS: dict[str, DenseFormat] = {
    "bf16": DenseFormat(16),
    "fp16": DenseFormat(16),
    # Source: DeepSeek-V3 config quantization_config (e4m3, weight_block_size [128, 128],
    # fp32 scale_inv per block); vLLM Fp8LinearMethod block-quant path.
    "fp8": DenseFormat(8, block_scale=128),
    # Source: AutoGPTQ qlinear_cuda QuantLinear (qweight, fp16 scales and packed qzeros per
    # group of 128, int32 g_idx per input row); shared/reference/engines.md section 5.4.
    "gptq-int8": DenseFormat(8, group_size=128, scale_bits=16, zero_bits=8, g_idx=True),
    "gptq-int4": DenseFormat(4, group_size=128, scale_bits=16, zero_bits=4, g_idx=True),
    # Source: AutoAWQ awq/modules/linear/gemm.py WQLinear_GEMM (qweight int32 [in, out/8],
    # qzeros [in/g, out/8], fp16 scales [in/g, out]) -> 4 + 16/128 + 4/128 bits per weight.
    "awq-int4": DenseFormat(4, group_size=128, scale_bits=16, zero_bits=4),
    # Source: bitsandbytes functional.py quantize_4bit: 4-bit codes, one absmax per 64 values,
    # double quant stores absmax as uint8 with one fp32 per 256 absmax values.
    "nf4": DenseFormat(4, group_size=64, scale_bits=8, nested_scale=(32, 256)),
    # Source: gpt-oss config quantization_config (mxfp4 on MoE experts; self_attn, router,
    # embeddings, lm_head kept bf16); MXFP4 = 4-bit values + one E8M0 scale per 32.
    "mxfp4-moe": DenseFormat(4, group_size=32, scale_bits=8, experts_only=True),
}

FORMAT_ALIASES: dict[str, str] = {
    "int4-g128": "awq-int4",
    "awq": "awq-int4",
    "int4": "awq-int4",
    "gptq": "gptq-int4",
    "int8": "gptq-int8",
    "bnb-nf4": "nf4",
    "bnb4": "nf4",
    "f16": "fp16",
    "float16": "fp16",
    "bfloat16": "bf16",
    "fp8-e4m3": "fp8",
    "mxfp4": "mxfp4-moe",
}

FormatKind = Literal["dense", "gguf"]


@dataclass(frozen=True, slots=True)
class StoredWeights:
    """What one concrete checkpoint or GGUF file stores, measured from its headers (no tensor data).

    `layer_bytes[i]` sums decoder layer i's tensors, `embedding_bytes` the input embedding,
    `output_bytes` an untied output matrix; the rest (final norm, vision tower, extra MTP layers)
    is `total_bytes` minus those. `types` lists stored bytes per dtype or ggml type.
    """

    source: str
    total_bytes: int
    embedding_bytes: int
    output_bytes: int
    layer_bytes: tuple[int, ...]
    tensor_count: int
    types: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class WeightFormat:
    """A resolved weight format name and how its bytes are computed.

    `stored` is set when the user sized a concrete file: its measured bytes replace the computed
    ones (tensor_bytes fits the per-tensor figures to them). `basis` names the known format whose
    per-tensor rules shape that split when `name` (e.g. a GGUF Q5_K_S file) has none of its own.
    """

    name: str
    kind: FormatKind
    label: str
    basis: str | None = None
    stored: StoredWeights | None = None

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"

    @property
    def rules(self) -> str:
        """The format whose per-tensor rules compute the bytes (`basis`, else `name`)."""
        return self.basis or self.name


_LABELS = {
    "bf16": "bf16 (16-bit)",
    "fp16": "fp16 (16-bit)",
    "fp8": "fp8 e4m3, 128x128 block scales; embeddings and lm_head 16-bit",
    "gptq-int8": "GPTQ int8, group 128; embeddings and lm_head 16-bit",
    "gptq-int4": "GPTQ int4, group 128 (act-order index); embeddings and lm_head 16-bit",
    "awq-int4": "int4 g128 (AWQ layout: fp16 scales + 4-bit zeros); embeddings and lm_head 16-bit",
    "nf4": "bitsandbytes NF4, block 64, double quant; embeddings and lm_head 16-bit",
    "mxfp4-moe": "MXFP4 on MoE experts, everything else bf16 (as gpt-oss ships)",
}


def all_format_names() -> list[str]:
    return sorted(DENSE_FORMATS) + sorted(GGUF_MIXES)


def resolve_format(name: str, prefer_gguf: bool = False) -> WeightFormat:
    """Map a user-typed name (any case, aliases allowed) to a WeightFormat; a name both families
    have (F16) means the GGUF one when `prefer_gguf` (llama.cpp / Ollama)."""
    key = name.strip()
    gguf_name = key.upper().replace("-", "_").removeprefix("GGUF_")
    if prefer_gguf and gguf_name in GGUF_MIXES:
        return WeightFormat(gguf_name, "gguf", f"GGUF {gguf_name} (llama.cpp tensor-type mix)")
    lowered = key.lower()
    lowered = FORMAT_ALIASES.get(lowered, lowered)
    if lowered in DENSE_FORMATS:
        return WeightFormat(lowered, "dense", _LABELS[lowered])
    upper = key.upper().replace("-", "_")
    if upper.startswith("GGUF_"):
        upper = upper[5:]
    if upper in GGUF_MIXES:
        return WeightFormat(upper, "gguf", f"GGUF {upper} (llama.cpp tensor-type mix)")
    known = all_format_names()
    close = difflib.get_close_matches(key, known + list(FORMAT_ALIASES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownFormatError(f"unknown weight format {name!r}{hint} (known: {', '.join(known)})")


# Conventional format for a bit width, by serving stack.
# Source: common practice the issue names: int4 g128 (AWQ/GPTQ) for vLLM-style serving,
# Q4_K_M for llama.cpp/Ollama; fp8 is vLLM's 8-bit default on Hopper/Ada.
_BITS_PYTORCH = {16: "bf16", 8: "fp8", 4: "awq-int4"}
_BITS_GGUF = {16: "F16", 8: "Q8_0", 6: "Q6_K", 5: "Q5_K_M", 4: "Q4_K_M", 3: "Q3_K_M"}


def format_for_bits(bits: int, gguf_engine: bool, native: str | None = None) -> WeightFormat:
    """The conventional `bits`-wide format of the stack; for a PyTorch engine, the model's own
    checkpoint format (`native`: gpt-oss's MXFP4, DeepSeek's FP8) when it has that width: the
    model ships at that width, and no requantized checkpoint is needed."""
    if (
        native is not None
        and not gguf_engine
        and native in DENSE_FORMATS
        and DENSE_FORMATS[native].bits == bits
    ):
        return resolve_format(native)
    table = _BITS_GGUF if gguf_engine else _BITS_PYTORCH
    if bits not in table:
        stack = "llama.cpp/Ollama" if gguf_engine else "vLLM-style serving"
        widths = ", ".join(str(b) for b in sorted(table))
        raise UnknownFormatError(
            f"--bits {bits}: no conventional {bits}-bit format for {stack} "
            f"(choose --bits {widths}, or --quant NAME)"
        )
    return resolve_format(table[bits])


def stored_tensor_types(fmt: WeightFormat, m: ModelSpec, tensors: Sequence[Tensor]) -> list[str]:
    """Per tensor, a short type label (ggml type for GGUF, 'bits' for dense formats)."""
    name = fmt.rules
    if fmt.is_gguf:
        mix = GGUF_MIXES[name]
        types: list[str] = []
        i_attn_v = 0
        for t in tensors:
            types.append(gguf_tensor_type(name, mix, m, t, i_attn_v))
            if t.role in ("attn_v", "attn_qkv", "attn_kv_b"):
                i_attn_v += 1
        return types
    dense = DENSE_FORMATS[name]
    return [name if _dense_converts(dense, t) else "16-bit" for t in tensors]


@cache
def model_tensor_types(fmt: WeightFormat, m: ModelSpec) -> tuple[str, ...]:
    """stored_tensor_types of the model's own tensor inventory, once per (format, model)."""
    return tuple(stored_tensor_types(fmt, m, tensor_inventory(m)))


@cache
def model_tensor_bytes(fmt: WeightFormat, m: ModelSpec) -> tuple[int, ...]:
    """tensor_bytes of the model's own tensor inventory, once per (format, model)."""
    return tuple(tensor_bytes(fmt, m, tensor_inventory(m)))


def routed_expert_bytes(fmt: WeightFormat, m: ModelSpec, layers: int | None = None) -> int:
    """The routed-expert tensors (ffn_gate/up/down_exps) as stored, of the first `layers` layers
    (all of them when None); 0 for dense models."""
    return sum(
        size
        for t, size in zip(tensor_inventory(m), model_tensor_bytes(fmt, m), strict=True)
        if t.role in EXPERT_ROLES and t.layer is not None and (layers is None or t.layer < layers)
    )


def _dense_converts(dense: DenseFormat, t: Tensor) -> bool:
    if dense.bits == 16:
        return False
    if dense.experts_only:
        return t.role in EXPERT_ROLES
    return t.role in DECODER_MATRIX_ROLES


def tensor_bytes(fmt: WeightFormat, m: ModelSpec, tensors: Sequence[Tensor]) -> list[int]:
    """Stored bytes of each tensor in `fmt` (same order as `tensors`).

    Computed from the format's per-tensor rules; when `fmt.stored` holds a measured file, the
    computed figures are then fitted to it group by group (input embedding, output matrix, each
    decoder layer, the rest), so every sum over them equals what the file stores.
    """
    if fmt.is_gguf:
        types = stored_tensor_types(fmt, m, tensors)
        sizes = [ggml_tensor_bytes(ty, t) for ty, t in zip(types, tensors, strict=True)]
    else:
        dense = DENSE_FORMATS[fmt.rules]
        sizes = [dense.matrix_bytes(t) if _dense_converts(dense, t) else 2 * t.params for t in tensors]
    if fmt.stored is not None:
        sizes = fit_to_stored(sizes, tensors, fmt.stored)
    return sizes


def _scale_group(sizes: list[int], target: int) -> list[int]:
    """Integer sizes proportional to `sizes` that add up to exactly `target`."""
    total = sum(sizes)
    if total == 0:
        return sizes
    out = [s * target // total for s in sizes]
    largest = max(range(len(out)), key=lambda i: sizes[i])
    out[largest] += target - sum(out)
    return out


def fit_to_stored(sizes: Sequence[int], tensors: Sequence[Tensor], stored: StoredWeights) -> list[int]:
    """Scale computed per-tensor bytes so each group sums to what the file stores.

    Groups with a measured figure: the input embedding, the output matrix, and each decoder layer
    (when the file has one figure per layer); everything else (final norm, vision tower, and any
    stored tensor we do not model, such as an MTP layer) shares the remainder. When a group
    cannot be matched, every tensor is scaled by one factor to the file's total.
    """
    groups: dict[object, list[int]] = {}
    for i, t in enumerate(tensors):
        key: object = "rest"
        if t.role == "token_embd" and stored.embedding_bytes:
            key = "embd"
        elif t.role == "output" and stored.output_bytes:
            key = "output"
        elif t.layer is not None and t.layer < len(stored.layer_bytes):
            key = t.layer
        groups.setdefault(key, []).append(i)
    targets: dict[object, int] = {}
    for key in groups:
        if key == "embd":
            targets[key] = stored.embedding_bytes
        elif key == "output":
            targets[key] = stored.output_bytes
        elif isinstance(key, int):
            targets[key] = stored.layer_bytes[key]
    rest = stored.total_bytes - sum(targets.values())
    if "rest" in groups:
        targets["rest"] = rest
    consistent = rest >= 0 and ("rest" in groups or rest == 0)
    if not consistent or any(targets[k] and not sum(sizes[i] for i in groups[k]) for k in groups):
        return _scale_group(list(sizes), stored.total_bytes)
    out = list(sizes)
    for key, idx in groups.items():
        for i, size in zip(idx, _scale_group([sizes[i] for i in idx], targets[key]), strict=True):
            out[i] = size
    return out


# KV-cache element storage: (bytes, per elements).
# Source: bf16/fp16/fp8 element sizes; q8_0 and q4_0 blocks of 32 from ggml-common.h
# (34 and 18 bytes); llama.cpp common/arg.cpp kv_cache_types.
KV_DTYPES: dict[str, tuple[int, int]] = {
    "bf16": (2, 1),
    "fp16": (2, 1),
    "fp8": (1, 1),
    "q8_0": (34, 32),
    "q4_0": (18, 32),
}
KV_ALIASES = {"f16": "fp16", "float16": "fp16", "bfloat16": "bf16", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}


def resolve_kv_dtype(name: str) -> str:
    key = name.strip().lower()
    key = KV_ALIASES.get(key, key)
    if key in KV_DTYPES:
        return key
    close = difflib.get_close_matches(key, list(KV_DTYPES), n=2, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownFormatError(f"unknown --kv-dtype {name!r}{hint} (known: {', '.join(KV_DTYPES)})")


def kv_bytes(dtype: str, elements: int) -> int:
    """Bytes for `elements` cached values of `dtype`, whole blocks for the q-types."""
    size, per = KV_DTYPES[dtype]
    return math.ceil(elements / per) * size
