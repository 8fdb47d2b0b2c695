"""Builders for the importer tests: real config.json files, header-only safetensors, GGUF headers
written with llama.cpp's own gguf writer, and a Hugging Face cache laid out as huggingface_hub does."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType

from vramcalc.core.formats import GGUF_MIXES, gguf_tensor_type
from vramcalc.core.tensors import Tensor
from vramcalc.specs import ModelSpec

# config.json files of real models, transcribed from shared/reference/models.yaml (whose sources
# are verbatim copies of the Hugging Face files); keys a shipped file omits are omitted here too.
CONFIGS: dict[str, dict[str, Any]] = {
    "gemma-2-27b": {
        "architectures": ["Gemma2ForCausalLM"],
        "model_type": "gemma2",
        "hidden_size": 4608,
        "intermediate_size": 36864,
        "num_hidden_layers": 46,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "vocab_size": 256000,
        "max_position_embeddings": 8192,
        "sliding_window": 4096,
        "query_pre_attn_scalar": 144,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "torch_dtype": "bfloat16",
    },
    # The shipped Gemma-3 text_config is minimal: no vocab_size, max_position_embeddings or
    # tie_word_embeddings (NVIDIA/TensorRT-LLM test_modeling_gemma3.py GEMMA3_27B_CONFIG).
    "gemma-3-27b": {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "mm_tokens_per_image": 256,
        "text_config": {
            "head_dim": 128,
            "hidden_size": 5376,
            "intermediate_size": 21504,
            "model_type": "gemma3_text",
            "num_attention_heads": 32,
            "num_hidden_layers": 62,
            "num_key_value_heads": 16,
            "query_pre_attn_scalar": 168,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
            "sliding_window_pattern": 6,
        },
        "torch_dtype": "bfloat16",
        "vision_config": {
            "hidden_size": 1152,
            "image_size": 896,
            "intermediate_size": 4304,
            "model_type": "siglip_vision_model",
            "num_attention_heads": 16,
            "num_hidden_layers": 27,
            "patch_size": 14,
            "vision_use_head": False,
        },
    },
    "qwen3-30b-a3b": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "sliding_window": None,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "deepseek-v3": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 7168,
        "intermediate_size": 18432,
        "moe_intermediate_size": 2048,
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "vocab_size": 129280,
        "max_position_embeddings": 163840,
        "n_routed_experts": 256,
        "n_shared_experts": 1,
        "num_experts_per_tok": 8,
        "first_k_dense_replace": 3,
        "moe_layer_freq": 1,
        "topk_method": "noaux_tc",
        "kv_lora_rank": 512,
        "q_lora_rank": 1536,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128,
        "v_head_dim": 128,
        "num_nextn_predict_layers": 1,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "quantization_config": {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [128, 128],
        },
    },
    "gpt-oss-20b": {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": 24,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 201088,
        "max_position_embeddings": 131072,
        "num_local_experts": 32,
        "experts_per_token": 4,
        "num_experts_per_tok": 4,
        "sliding_window": 128,
        "attention_bias": True,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
        "tie_word_embeddings": False,
        "quantization_config": {
            "quant_method": "mxfp4",
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
        },
    },
    "llama-4-scout": {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": {
            "model_type": "llama4_text",
            "hidden_size": 5120,
            "intermediate_size": 8192,
            "intermediate_size_mlp": 16384,
            "num_hidden_layers": 48,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 202048,
            "max_position_embeddings": 10485760,
            "num_local_experts": 16,
            "num_experts_per_tok": 1,
            "interleave_moe_layer_step": 1,
            "attention_chunk_size": 8192,
            "use_qk_norm": True,
            "no_rope_layers": [1, 1, 1, 0] * 12,
            "torch_dtype": "bfloat16",
        },
        "vision_config": {"hidden_size": 1408, "num_hidden_layers": 34, "model_type": "llama4_vision_model"},
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "phi-3-mini-4k": {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32064,
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "sliding_window": 2047,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "mixtral-8x7b": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "max_position_embeddings": 32768,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
}


def write_config(folder: Path, cfg: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


def write_safetensors(path: Path, tensors: list[tuple[str, str, list[int]]], sparse: bool = True) -> int:
    """A real safetensors header (u64 length + JSON) for `tensors`, and no data: the file is a
    sparse file of the full size (no disk used), or the header alone. Returns the data bytes."""
    bits = {"BF16": 16, "F16": 16, "F32": 32, "U8": 8, "F8_E4M3": 8, "I32": 32}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        n = math.ceil(math.prod(shape) * bits[dtype] / 8)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
    if sparse:
        os.truncate(path, 8 + len(raw) + offset)
    return offset


def hf_tensors(m: ModelSpec) -> list[tuple[str, str, list[int]]]:
    """bf16 tensors with Hugging Face names for a spec's dense/MoE inventory (shapes [out, in])."""
    from vramcalc.core.tensors import tensor_inventory

    out: list[tuple[str, str, list[int]]] = []
    counts: dict[tuple[int | None, str], int] = {}
    for t in tensor_inventory(m):
        k = counts.get((t.layer, t.role), 0)
        counts[(t.layer, t.role)] = k + 1
        if t.role == "token_embd":
            name = "model.embed_tokens.weight"
        elif t.role == "output":
            name = "lm_head.weight"
        elif t.role == "vision":
            name = "vision_tower.weight"
        elif t.layer is None:
            name = "model.norm.weight"
        else:
            name = f"model.layers.{t.layer}.{t.role}.{k}.weight"
        shape = [t.rows, t.row_len] if t.rows > 1 else [t.row_len]
        out.append((name, "BF16", shape))
    return out


def _arch(m: ModelSpec) -> str:
    return {
        "gemma2": "gemma2",
        "gemma3_text": "gemma3",
        "qwen3_moe": "qwen3moe",
        "deepseek_v3": "deepseek2",
        "gpt_oss": "gpt-oss",
        "llama4_text": "llama4",
        "mixtral": "llama",
        "llama": "llama",
        "qwen2": "qwen2",
        "qwen3": "qwen3",
        "phi3": "phi3",
    }[m.family]


def gguf_tensors(m: ModelSpec) -> list[tuple[str, str, int, tuple[int, ...]]]:
    """(GGUF name, role, layer, ne dims) as llama.cpp's converter names a spec's tensors."""
    h = m.hidden_size
    out: list[tuple[str, str, int, tuple[int, ...]]] = [
        ("token_embd.weight", "token_embd", -1, (h, m.vocab_size))
    ]
    for i in range(m.num_hidden_layers):
        b = f"blk.{i}."
        names = ["attn_norm", "ffn_norm", "post_attention_norm", "post_ffw_norm"][: m.norms_per_layer]
        out += [(b + n + ".weight", "norm", i, (h,)) for n in names]
        if m.mla is not None:
            a = m.mla
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            assert a.q_lora_rank is not None
            out += [
                (b + "attn_q_a.weight", "attn_q_a", i, (h, a.q_lora_rank)),
                (b + "attn_q_a_norm.weight", "norm", i, (a.q_lora_rank,)),
                (b + "attn_q_b.weight", "attn_q_b", i, (a.q_lora_rank, m.num_attention_heads * qk)),
                (b + "attn_kv_a_mqa.weight", "attn_kv_a_mqa", i, (h, a.kv_lora_rank + a.qk_rope_head_dim)),
                (b + "attn_kv_a_norm.weight", "norm", i, (a.kv_lora_rank,)),
                (
                    b + "attn_kv_b.weight",
                    "attn_kv_b",
                    i,
                    (a.kv_lora_rank, m.num_attention_heads * (a.qk_nope_head_dim + a.v_head_dim)),
                ),
                (b + "attn_output.weight", "attn_output", i, (m.num_attention_heads * a.v_head_dim, h)),
            ]
        else:
            q, kv = m.num_attention_heads * m.head_dim, m.num_key_value_heads * m.head_dim
            out += [
                (b + "attn_q.weight", "attn_q", i, (h, q)),
                (b + "attn_k.weight", "attn_k", i, (h, kv)),
                (b + "attn_v.weight", "attn_v", i, (h, kv)),
                (b + "attn_output.weight", "attn_output", i, (q, h)),
            ]
            if m.qkv_bias:
                out += [
                    (b + "attn_q.bias", "bias", i, (q,)),
                    (b + "attn_k.bias", "bias", i, (kv,)),
                    (b + "attn_v.bias", "bias", i, (kv,)),
                ]
            if m.o_bias:
                out.append((b + "attn_output.bias", "bias", i, (h,)))
            if m.qk_norm:
                out += [
                    (b + "attn_q_norm.weight", "norm", i, (m.head_dim,)),
                    (b + "attn_k_norm.weight", "norm", i, (m.head_dim,)),
                ]
            if m.attention_sinks:
                out.append((b + "attn_sinks.weight", "attn_sinks", i, (m.num_attention_heads,)))
        moe = m.moe
        if moe is None or i < moe.first_dense_layers:
            f = m.intermediate_size
            out += [
                (b + "ffn_gate.weight", "ffn_gate", i, (h, f)),
                (b + "ffn_up.weight", "ffn_up", i, (h, f)),
                (b + "ffn_down.weight", "ffn_down", i, (f, h)),
            ]
            continue
        n, w = moe.num_experts, moe.expert_intermediate_size
        out += [
            (b + "ffn_gate_inp.weight", "ffn_gate_inp", i, (h, n)),
            (b + "ffn_gate_exps.weight", "ffn_gate_exps", i, (h, w, n)),
            (b + "ffn_up_exps.weight", "ffn_up_exps", i, (h, w, n)),
            (b + "ffn_down_exps.weight", "ffn_down_exps", i, (w, h, n)),
        ]
        if moe.router_bias:
            out.append((b + "ffn_gate_inp.bias", "bias", i, (n,)))
        if moe.router_score_bias:
            out.append((b + "exp_probs_b.bias", "bias", i, (n,)))
        if moe.expert_bias:
            out += [
                (b + "ffn_gate_exps.bias", "bias", i, (w, n)),
                (b + "ffn_up_exps.bias", "bias", i, (w, n)),
                (b + "ffn_down_exps.bias", "bias", i, (h, n)),
            ]
        if moe.shared_experts:
            s = (moe.shared_expert_intermediate_size or w) * moe.shared_experts
            out += [
                (b + "ffn_gate_shexp.weight", "ffn_gate_shexp", i, (h, s)),
                (b + "ffn_up_shexp.weight", "ffn_up_shexp", i, (h, s)),
                (b + "ffn_down_shexp.weight", "ffn_down_shexp", i, (s, h)),
            ]
    out.append(("output_norm.weight", "norm", -1, (h,)))
    if not m.tie_word_embeddings:
        out.append(("output.weight", "output", -1, (h, m.vocab_size)))
    return out


def write_gguf(
    path: Path,
    m: ModelSpec,
    mix: str = "Q4_K_M",
    vocab: int = 0,
    split_max_tensors: int = 0,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """A GGUF header for spec `m` in `mix` (tensor types from llama-quant.cpp's rules), written by
    gguf.GGUFWriter; the data region is a sparse hole of the right size. Returns the shard paths."""
    arch = _arch(m)
    w = GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    w.add_name(m.name)
    w.add_file_type(int(LlamaFileType[f"MOSTLY_{mix}"]))
    w.add_uint32(f"{arch}.block_count", m.num_hidden_layers)
    w.add_uint32(f"{arch}.context_length", m.max_position_embeddings)
    w.add_uint32(f"{arch}.embedding_length", m.hidden_size)
    w.add_uint32(f"{arch}.feed_forward_length", m.intermediate_size)
    w.add_uint32(f"{arch}.attention.head_count", m.num_attention_heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", m.num_key_value_heads)
    if m.mla is not None:
        a = m.mla
        w.add_uint32(f"{arch}.attention.key_length", a.kv_lora_rank + a.qk_rope_head_dim)
        w.add_uint32(f"{arch}.attention.value_length", a.kv_lora_rank)
        w.add_uint32(f"{arch}.attention.key_length_mla", a.qk_nope_head_dim + a.qk_rope_head_dim)
        w.add_uint32(f"{arch}.attention.value_length_mla", a.v_head_dim)
        w.add_uint32(f"{arch}.attention.kv_lora_rank", a.kv_lora_rank)
        w.add_uint32(f"{arch}.attention.q_lora_rank", a.q_lora_rank or 0)
        w.add_uint32(f"{arch}.rope.dimension_count", a.qk_rope_head_dim)
    else:
        w.add_uint32(f"{arch}.attention.key_length", m.head_dim)
        w.add_uint32(f"{arch}.attention.value_length", m.head_dim)
    lp = m.layer_pattern
    if lp.window_tokens and lp.local_attention == "sliding":
        w.add_uint32(f"{arch}.attention.sliding_window", lp.window_tokens)
    if m.moe is not None:
        w.add_uint32(f"{arch}.expert_count", m.moe.num_experts)
        w.add_uint32(f"{arch}.expert_used_count", m.moe.experts_per_token)
        w.add_uint32(f"{arch}.expert_feed_forward_length", m.moe.expert_intermediate_size)
        if m.moe.shared_experts:
            w.add_uint32(f"{arch}.expert_shared_count", m.moe.shared_experts)
        if m.moe.first_dense_layers:
            w.add_uint32(f"{arch}.leading_dense_block_count", m.moe.first_dense_layers)
    for key, value in (extra or {}).items():
        w.add_uint32(key, value)
    if vocab:
        w.add_token_list([f"t{i}" for i in range(vocab)])
        w.add_token_scores([0.0] * vocab)
        w.add_token_types([1] * vocab)
    rule = GGUF_MIXES[mix]
    i_attn_v = 0
    for name, role, layer, dims in gguf_tensors(m):
        rows = math.prod(dims[1:]) if len(dims) > 1 else 1
        experts = dims[2] if len(dims) == 3 else 1
        t = Tensor(role, None if layer < 0 else layer, dims[0], rows, experts)  # type: ignore[arg-type]
        ggml = gguf_tensor_type(mix, rule, m, t, i_attn_v) if len(dims) > 1 else "F32"
        if role in ("attn_v", "attn_qkv", "attn_kv_b"):
            i_attn_v += 1
        qtype = GGMLQuantizationType[ggml]
        block, size = GGML_QUANT_SIZES[qtype]
        nbytes = math.prod(dims) // block * size
        w.add_tensor_info(name, tuple(reversed(dims)), np.dtype(np.float32), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    paths = w.format_shard_names(path)
    ends = []
    for fout, tensors in zip(w.fout, w.tensors, strict=True):
        fout.flush()
        start = -(-fout.tell() // 32) * 32
        data = sum(-(-ti.nbytes // 32) * 32 for ti in tensors.values())
        ends.append(start + data)
    w.close()
    for p, end in zip(paths, ends, strict=True):
        os.truncate(p, end)
    return paths


def gguf_bytes(*parts: bytes) -> bytes:
    return b"".join(parts)


def gguf_prefix(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def gguf_string(s: bytes, claimed: int | None = None) -> bytes:
    return struct.pack("<Q", len(s) if claimed is None else claimed) + s


def make_hf_cache(root: Path, repo_id: str, files: dict[str, bytes | Path], commit: str = "a" * 40) -> Path:
    """models--org--name/{blobs,refs/main,snapshots/<commit>/...} with snapshot files symlinked to
    blobs, as huggingface_hub's file_download lays them out. Returns the snapshot folder."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, (name, content) in enumerate(files.items()):
        blob = repo / "blobs" / f"blob{i:04d}"
        if isinstance(content, Path):
            content.rename(blob)
        else:
            blob.write_bytes(content)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap
