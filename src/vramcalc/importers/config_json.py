"""config.json -> ModelSpec per family, filling in the transformers defaults that shipped configs omit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vramcalc import files
from vramcalc import limits as lim
from vramcalc.errors import ModelFileError
from vramcalc.specs import ModelSpec

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # real config.json files are a few KB; refuse what clearly is not one

# Wrappers whose text model lives under text_config, and that text model's type.
# Source: transformers Gemma3Config / Llama4Config (text_config: Gemma3TextConfig / Llama4TextConfig).
_WRAPPERS = {"gemma3": "gemma3_text", "llama4": "llama4_text"}

# Per family, the defaults transformers applies to keys a config.json may omit, with their source.
# Only what the family's shipped configs really omit (and the per-family tie/bias defaults) is
# filled in; core dimensions missing from a config are an error, except for Gemma-3 whose shipped
# text_config is minimal by design.
FAMILY_DEFAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "llama": (
        {"tie_word_embeddings": False, "attention_bias": False},
        "transformers LlamaConfig.__init__ defaults (models/llama/configuration_llama.py)",
    ),
    "mistral": (
        {"tie_word_embeddings": False, "sliding_window": 4096},
        "transformers MistralConfig.__init__ defaults (models/mistral/configuration_mistral.py)",
    ),
    "mixtral": (
        {
            "tie_word_embeddings": False,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "sliding_window": None,
        },
        "transformers MixtralConfig.__init__ defaults (models/mixtral/configuration_mixtral.py)",
    ),
    "qwen2": (
        {"tie_word_embeddings": False, "use_sliding_window": False},
        "transformers Qwen2Config.__init__ defaults (models/qwen2/configuration_qwen2.py); q/k/v bias "
        "hard-wired in Qwen2Attention",
    ),
    "qwen2_moe": (
        {
            "tie_word_embeddings": False,
            "use_sliding_window": False,
            "num_experts": 60,
            "num_experts_per_tok": 4,
            "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "decoder_sparse_step": 1,
        },
        "transformers Qwen2MoeConfig.__init__ defaults (models/qwen2_moe/configuration_qwen2_moe.py)",
    ),
    "qwen3": (
        {"tie_word_embeddings": False, "use_sliding_window": False, "attention_bias": False, "head_dim": 128},
        "transformers Qwen3Config.__init__ defaults (models/qwen3/configuration_qwen3.py)",
    ),
    "qwen3_moe": (
        {
            "tie_word_embeddings": False,
            "use_sliding_window": False,
            "attention_bias": False,
            "head_dim": 128,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "moe_intermediate_size": 768,
            "decoder_sparse_step": 1,
        },
        "transformers Qwen3MoeConfig.__init__ defaults (models/qwen3_moe/configuration_qwen3_moe.py)",
    ),
    "gemma": (
        {"tie_word_embeddings": True, "head_dim": 256, "vocab_size": 256000, "max_position_embeddings": 8192},
        "transformers GemmaConfig.__init__ defaults (models/gemma/configuration_gemma.py)",
    ),
    "gemma2": (
        {
            "tie_word_embeddings": True,
            "head_dim": 256,
            "vocab_size": 256000,
            "max_position_embeddings": 8192,
            "sliding_window": 4096,
        },
        "transformers Gemma2Config.__init__ defaults (models/gemma2/configuration_gemma2.py @008e5743)",
    ),
    "gemma3_text": (
        {
            "tie_word_embeddings": True,
            "vocab_size": 262208,
            "hidden_size": 2304,
            "intermediate_size": 9216,
            "num_hidden_layers": 26,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "max_position_embeddings": 131072,
            "sliding_window": 4096,
            "sliding_window_pattern": 6,
        },
        "transformers Gemma3TextConfig.__init__ defaults (models/gemma3/configuration_gemma3.py @008f5c8c); "
        "the shipped gemma-3-4b/12b/27b text_config omits vocab, max positions and tying",
    ),
    "phi3": (
        {"tie_word_embeddings": False, "sliding_window": None},
        "transformers Phi3Config.__init__ defaults (models/phi3/configuration_phi3.py)",
    ),
    "deepseek_v2": (
        {
            "tie_word_embeddings": False,
            "first_k_dense_replace": 0,
            "n_shared_experts": None,
            "topk_method": "greedy",
        },
        "transformers DeepseekV2Config.__init__ defaults (models/deepseek_v2/configuration_deepseek_v2.py)",
    ),
    "deepseek_v3": (
        {
            "tie_word_embeddings": False,
            "first_k_dense_replace": 3,
            "n_shared_experts": 1,
            "topk_method": "noaux_tc",
        },
        "transformers DeepseekV3Config.__init__ defaults (models/deepseek_v3/configuration_deepseek_v3.py)",
    ),
    "gpt_oss": (
        {"tie_word_embeddings": False, "attention_bias": True, "sliding_window": 128, "head_dim": 64},
        "transformers GptOssConfig.__init__ defaults (models/gpt_oss/configuration_gpt_oss.py)",
    ),
    "llama4_text": (
        {
            "tie_word_embeddings": False,
            "attention_bias": False,
            "num_local_experts": 16,
            "num_experts_per_tok": 1,
            "interleave_moe_layer_step": 1,
            "attention_chunk_size": 8192,
            "no_rope_layer_interval": 4,
        },
        "transformers Llama4TextConfig.__init__ defaults (models/llama4/configuration_llama4.py @008e5743)",
    ),
}
SUPPORTED_FAMILIES = tuple(sorted({*FAMILY_DEFAULTS, *_WRAPPERS}))

REQUIRED = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)

# Source: transformers PretrainedConfig.__init__ (tie_word_embeddings=True) for an unknown family.
_UNKNOWN_TIE_DEFAULT = True


@dataclass
class Imported:
    """A spec built from a file, the defaults applied and the warnings to show."""

    spec: ModelSpec
    defaults: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_config_bytes(path: Path) -> bytes:
    """One config.json's bytes: a regular file of at most 16 MiB."""
    return files.read_bytes(path, MAX_CONFIG_BYTES, "config.json", ModelFileError)


def read_config(path: Path) -> dict[str, Any]:
    """Read and parse one config.json (a regular file, bounded size, depth and numbers) into a mapping."""
    data = files.parse_json(read_config_bytes(path), str(path), "Hugging Face config.json", ModelFileError)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object of model settings, found {type(data).__name__}")
    return data


# The largest value each config.json count may take (vramcalc.limits); others: MAX_POSITIONS.
_BOUNDS = {
    "hidden_size": lim.MAX_HIDDEN,
    "intermediate_size": lim.MAX_INTERMEDIATE,
    "moe_intermediate_size": lim.MAX_INTERMEDIATE,
    "shared_expert_intermediate_size": lim.MAX_INTERMEDIATE,
    "num_hidden_layers": lim.MAX_LAYERS,
    "num_attention_heads": lim.MAX_HEADS,
    "num_key_value_heads": lim.MAX_HEADS,
    "head_dim": lim.MAX_HEAD_DIM,
    "qk_rope_head_dim": lim.MAX_HEAD_DIM,
    "qk_nope_head_dim": lim.MAX_HEAD_DIM,
    "v_head_dim": lim.MAX_HEAD_DIM,
    "kv_lora_rank": lim.MAX_HIDDEN,
    "q_lora_rank": lim.MAX_HIDDEN,
    "vocab_size": lim.MAX_VOCAB,
    "num_local_experts": lim.MAX_EXPERTS,
    "num_experts": lim.MAX_EXPERTS,
    "n_routed_experts": lim.MAX_EXPERTS,
    "num_experts_per_tok": lim.MAX_EXPERTS,
    "n_shared_experts": lim.MAX_SHARED_EXPERTS,
    "first_k_dense_replace": lim.MAX_LAYERS,
    "sliding_window_pattern": lim.MAX_LAYERS,
    "no_rope_layer_interval": lim.MAX_LAYERS,
    "num_channels": 64,
}


def _count(cfg: Mapping[str, Any], key: str, where: str, *, least: int = 1) -> int:
    """An integer count in [least, bound], or a one-line error naming the key, the value and the bound."""
    value = cfg.get(key)
    bound = _BOUNDS.get(key, lim.MAX_POSITIONS)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        kind = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ModelFileError(f"{where}: {key} must be {kind}, found {files.short(value)}")
    if value > bound:
        raise ModelFileError(
            f"{where}: {key} {files.short(value)} is above the largest vramcalc accepts ({bound:,}); "
            "check the config"
        )
    return value


def _positive_int(cfg: Mapping[str, Any], key: str, where: str) -> int:
    return _count(cfg, key, where)


def _opt_int(cfg: Mapping[str, Any], key: str, where: str) -> int | None:
    return None if cfg.get(key) is None else _positive_int(cfg, key, where)


def _text(cfg: Mapping[str, Any], key: str, where: str) -> str:
    value = cfg.get(key, "")
    if not isinstance(value, str):
        raise ModelFileError(f"{where}: {key} must be a string, found {files.short(value)}")
    return value.strip()


# Source: transformers SiglipVisionConfig.__init__ defaults.
_SIGLIP_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "patch_size": 16,
    "image_size": 224,
    "num_channels": 3,
}


def siglip_params(
    vision: Mapping[str, Any], text_hidden: int, where: str = "vision_config"
) -> tuple[int, int]:
    """SigLIP vision tower and Gemma-3 projector parameters from a vision_config.

    Tower: patch conv (channels x patch^2 x hidden + hidden) + position embeddings
    ((image / patch)^2 x hidden) + per layer 2 layer norms (2 x 2 x hidden), q/k/v/o with biases
    (4 x (hidden^2 + hidden)) and the MLP (2 x hidden x inter + inter + hidden) + a final norm.
    Projector: hidden x text_hidden + a hidden-sized norm.
    Source: transformers models/siglip/modeling_siglip.py (SiglipVisionEmbeddings, SiglipEncoderLayer),
    models/gemma3/modeling_gemma3.py Gemma3MultiModalProjector; SiglipVisionConfig defaults.
    """
    given = {**_SIGLIP_DEFAULTS, **vision}
    h = _count(given, "hidden_size", where)
    inter = _count(given, "intermediate_size", where)
    layers = _count(given, "num_hidden_layers", where)
    patch = _count(given, "patch_size", where)
    image = _count(given, "image_size", where)
    channels = _count(given, "num_channels", where)
    per_layer = 4 * h + 4 * (h * h + h) + 2 * h * inter + inter + h
    tower = channels * patch * patch * h + h + (image // patch) ** 2 * h + layers * per_layer + 2 * h
    return tower, h * text_hidden + h


def _pattern_from_types(types: list[str], window: int | None, where: str) -> dict[str, Any]:
    """A LayerPattern from transformers' per-layer `layer_types` list."""
    local = [t != "full_attention" for t in types]
    kind = "chunked" if "chunked_attention" in types else "sliding"
    n = len(types)
    if not any(local):
        return {"kind": "all_global"}
    if window is None:
        raise ModelFileError(f"{where}: layer_types has windowed layers but no sliding_window/chunk size")
    if all(local):
        return {"kind": "all_local", "local_attention": kind, "window_tokens": window}
    if all(local[i] == (i % 2 == 0) for i in range(n)):
        return {"kind": "alternating", "local_attention": kind, "window_tokens": window, "first": "local"}
    if all(local[i] == (i % 2 == 1) for i in range(n)):
        return {"kind": "alternating", "local_attention": kind, "window_tokens": window, "first": "global"}
    period = local.index(False) + 1
    if all(local[i] == ((i + 1) % period != 0) for i in range(n)):
        return {
            "kind": "n_local_1_global",
            "local_attention": kind,
            "window_tokens": window,
            "local_per_global": period - 1,
        }
    raise ModelFileError(f"{where}: layer_types pattern {types[:8]}... is not one vramcalc can represent")


def _quant_format(qc: Any, where: str) -> tuple[str, str] | None:
    """(format name, known basis) for a quantization_config; None when there is none."""
    if not isinstance(qc, Mapping):
        return None
    method = str(qc.get("quant_method", ""))[:40].lower()
    bits = qc.get("bits")
    if method == "awq":
        return ("awq-int4", "awq-int4")
    if method == "gptq":
        return ("gptq-int8", "gptq-int8") if bits == 8 else ("gptq-int4", "gptq-int4")
    if method in ("fp8", "fbgemm_fp8"):
        return ("fp8", "fp8")
    if method == "mxfp4":
        return ("mxfp4-moe", "mxfp4-moe")
    if method == "bitsandbytes":
        if qc.get("load_in_4bit"):
            return ("nf4", "nf4")
        return ("bnb-int8", "gptq-int8")
    if method in ("compressed-tensors", "compressed_tensors"):
        groups = qc.get("config_groups") or {}
        if not isinstance(groups, Mapping):
            raise ModelFileError(
                f"{where}: quantization_config.config_groups must be an object of groups, "
                f"found {type(groups).__name__}"
            )
        weights = next(
            (g.get("weights") for g in groups.values() if isinstance(g, Mapping) and g.get("weights")), None
        )
        if isinstance(weights, Mapping):
            nbits, wtype = weights.get("num_bits"), str(weights.get("type", "int"))
            if wtype == "float" and nbits == 8:
                return ("compressed-tensors-fp8", "fp8")
            if nbits == 4:
                return ("compressed-tensors-int4", "awq-int4")
            if nbits == 8:
                return ("compressed-tensors-int8", "gptq-int8")
        return ("compressed-tensors", "bf16")
    raise ModelFileError(
        f"{where}: quantization_config quant_method {method!r} is not supported "
        "(known: awq, gptq, fp8, mxfp4, bitsandbytes, compressed-tensors)"
    )


def quant_format(cfg: Mapping[str, Any], where: str) -> tuple[str, str] | None:
    """The checkpoint's weight format from `quantization_config` (top level or text_config)."""
    qc = cfg.get("quantization_config")
    if qc is None and isinstance(cfg.get("text_config"), Mapping):
        qc = cfg["text_config"].get("quantization_config")
    return _quant_format(qc, where)


def spec_from_config(
    cfg: Mapping[str, Any],
    *,
    model_id: str,
    name: str,
    source: list[str],
    where: str,
    hf_id: str | None = None,
) -> Imported:
    """Build a ModelSpec from a Hugging Face config.json mapping.

    Reads the text model (text_config for multimodal wrappers), applies the family's transformers
    defaults for omitted keys, and maps family rules (biases, q/k norms, norms per layer, sliding
    or chunked layers, MoE, MLA, the SigLIP tower) onto the spec's fields.
    """
    model_type = _text(cfg, "model_type", where)
    if not model_type:
        raise ModelFileError(f"{where}: no model_type; expected a Hugging Face config.json")
    text: dict[str, Any] = dict(cfg)
    family = model_type
    if model_type in _WRAPPERS or isinstance(cfg.get("text_config"), Mapping):
        sub = cfg.get("text_config")
        if not isinstance(sub, Mapping):
            sub = {}
        family = _text(sub, "model_type", f"{where}: text_config") or _WRAPPERS.get(model_type, model_type)
        text = dict(sub)
        for key in ("torch_dtype", "dtype", "tie_word_embeddings"):
            if key not in text and key in cfg:
                text[key] = cfg[key]
    result_defaults: list[str] = []
    warnings: list[str] = []
    known = family in FAMILY_DEFAULTS
    if known:
        defaults, default_source = FAMILY_DEFAULTS[family]
        applied = [k for k, v in defaults.items() if k not in text and v is not None]
        for k, v in defaults.items():
            text.setdefault(k, v)
        if applied:
            result_defaults.append(f"{', '.join(applied)} from {default_source}")
    missing = [k for k in REQUIRED if text.get(k) is None]
    if (
        family in ("qwen3_moe", "qwen2_moe", "gpt_oss", "mixtral", "llama4_text")
        and "intermediate_size" in missing
    ):
        missing.remove("intermediate_size")
    if missing:
        what = f"model_type {family!r}" if known else f"unknown model_type {family!r}"
        raise ModelFileError(
            f"{where}: {what} config misses {', '.join(missing)}; "
            "vramcalc needs the standard decoder fields to size it"
        )
    if not known:
        text.setdefault("tie_word_embeddings", _UNKNOWN_TIE_DEFAULT)
        warnings.append(
            f"unknown model_type {family!r} (supported: {', '.join(SUPPORTED_FAMILIES)}); estimated as a "
            "Llama-style decoder: gated MLP, no attention biases, 2 norms per layer, "
            + ("sliding window on every layer" if text.get("sliding_window") else "full attention")
            + ", head_dim "
            + ("from the config" if text.get("head_dim") else "= hidden_size / num_attention_heads")
            + ", tie_word_embeddings "
            + ("from the config" if "tie_word_embeddings" in cfg else "True (PretrainedConfig default)")
        )

    h = _positive_int(text, "hidden_size", where)
    layers = _positive_int(text, "num_hidden_layers", where)
    heads = _positive_int(text, "num_attention_heads", where)
    kv_heads = _opt_int(text, "num_key_value_heads", where) or heads
    head_dim = _opt_int(text, "head_dim", where)
    if head_dim is None:
        if h % heads:
            raise ModelFileError(
                f"{where}: no head_dim and hidden_size {h} is not a multiple of {heads} heads"
            )
        head_dim = h // heads
    vocab = _positive_int(text, "vocab_size", where)
    max_pos = _positive_int(text, "max_position_embeddings", where)
    dtype = text.get("torch_dtype") or text.get("dtype")
    data: dict[str, Any] = {
        "id": model_id,
        "name": name,
        "hf_id": hf_id,
        "family": family,
        "architecture": _architecture(cfg, where),
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "tie_word_embeddings": bool(text.get("tie_word_embeddings")),
        "max_position_embeddings": max_pos,
        "torch_dtype": dtype if dtype in ("bfloat16", "float16", "float32") else None,
        "layer_pattern": {"kind": "all_global"},
        "source": source,
    }
    inter = _opt_int(text, "intermediate_size", where)
    bias = bool(text.get("attention_bias", False))
    if family in ("qwen2", "qwen2_moe"):
        data["qkv_bias"] = True
    elif family != "phi3" and not family.startswith("deepseek"):
        data["qkv_bias"] = data["o_bias"] = bias
    data["qk_norm"] = family in ("qwen3", "qwen3_moe", "gemma3_text")
    data["norms_per_layer"] = 4 if family in ("gemma2", "gemma3_text") else 2
    data["attention_sinks"] = family == "gpt_oss"

    window = _opt_int(text, "sliding_window", where)
    if isinstance(text.get("layer_types"), list) and text["layer_types"]:
        types = text["layer_types"]
        if not all(isinstance(t, str) for t in types):
            raise ModelFileError(f"{where}: layer_types must be a list of strings such as 'full_attention'")
        if len(types) != layers:
            raise ModelFileError(f"{where}: layer_types has {len(types)} entries for {layers} layers")
        chunk = _opt_int(text, "attention_chunk_size", where)
        data["layer_pattern"] = _pattern_from_types(
            types, chunk if "chunked_attention" in types else window, where
        )
    elif (family == "gemma2" and window) or (family == "gpt_oss" and window):
        data["layer_pattern"] = {"kind": "alternating", "local_attention": "sliding", "window_tokens": window}
    elif family == "gemma3_text" and window:
        period = _positive_int(text, "sliding_window_pattern", where)
        data["layer_pattern"] = {
            "kind": "n_local_1_global" if period > 1 else "all_global",
            "local_attention": "sliding" if period > 1 else None,
            "window_tokens": window if period > 1 else None,
            "local_per_global": period - 1 if period > 1 else None,
        }
    elif family == "llama4_text":
        chunk = _opt_int(text, "attention_chunk_size", where)
        rope = text.get("no_rope_layers")
        period = _positive_int(text, "no_rope_layer_interval", where)
        if isinstance(rope, list) and len(rope) == layers and 0 in rope:
            period = rope.index(0) + 1
        if chunk and period > 1:
            data["layer_pattern"] = {
                "kind": "n_local_1_global",
                "local_attention": "chunked",
                "window_tokens": chunk,
                "local_per_global": period - 1,
            }
    elif window and window < max_pos:
        uses = text.get("use_sliding_window", True)
        if uses:
            data["layer_pattern"] = {
                "kind": "all_local",
                "local_attention": "sliding",
                "window_tokens": window,
            }

    moe: dict[str, Any] | None = None
    if family == "mixtral":
        moe = {
            "num_experts": _positive_int(text, "num_local_experts", where),
            "experts_per_token": _positive_int(text, "num_experts_per_tok", where),
            "expert_intermediate_size": _positive_int(text, "intermediate_size", where),
        }
    elif family in ("qwen2_moe", "qwen3_moe"):
        moe = {
            "num_experts": _positive_int(text, "num_experts", where),
            "experts_per_token": _positive_int(text, "num_experts_per_tok", where),
            "expert_intermediate_size": _positive_int(text, "moe_intermediate_size", where),
        }
        shared = _opt_int(text, "shared_expert_intermediate_size", where) if family == "qwen2_moe" else None
        if shared:
            moe |= {
                "shared_experts": 1,
                "shared_expert_intermediate_size": shared,
                "shared_expert_gate": True,
            }
        if text.get("decoder_sparse_step", 1) != 1 or text.get("mlp_only_layers"):
            warnings.append(
                f"{family}: decoder_sparse_step/mlp_only_layers make some layers dense; "
                "vramcalc counts every layer as MoE (an upper bound on weights)"
            )
    elif family.startswith("deepseek"):
        moe = {
            "num_experts": _positive_int(text, "n_routed_experts", where),
            "experts_per_token": _positive_int(text, "num_experts_per_tok", where),
            "expert_intermediate_size": _positive_int(text, "moe_intermediate_size", where),
            "shared_experts": _count(text, "n_shared_experts", where, least=0)
            if text.get("n_shared_experts")
            else 0,
            "first_dense_layers": _count(text, "first_k_dense_replace", where, least=0)
            if text.get("first_k_dense_replace")
            else 0,
            "router_score_bias": text.get("topk_method") == "noaux_tc",
        }
        rope = _positive_int(text, "qk_rope_head_dim", where)
        nope = _positive_int(text, "qk_nope_head_dim", where)
        data["mla"] = {
            "kv_lora_rank": _positive_int(text, "kv_lora_rank", where),
            "q_lora_rank": _opt_int(text, "q_lora_rank", where),
            "qk_rope_head_dim": rope,
            "qk_nope_head_dim": nope,
            "v_head_dim": _positive_int(text, "v_head_dim", where),
        }
        data["head_dim"] = rope + nope
    elif family == "gpt_oss":
        per_token = text.get("num_experts_per_tok") or text.get("experts_per_token")
        moe = {
            "num_experts": _positive_int(text, "num_local_experts", where),
            "experts_per_token": _positive_int(
                {"num_experts_per_tok": per_token}, "num_experts_per_tok", where
            ),
            "expert_intermediate_size": _positive_int(text, "intermediate_size", where),
            "router_bias": True,
            "expert_bias": True,
        }
    elif family == "llama4_text":
        moe = {
            "num_experts": _positive_int(text, "num_local_experts", where),
            "experts_per_token": _positive_int(text, "num_experts_per_tok", where),
            "expert_intermediate_size": _positive_int(text, "intermediate_size", where),
            "shared_experts": 1,
        }
        if text.get("interleave_moe_layer_step", 1) != 1:
            warnings.append(
                "llama4: interleave_moe_layer_step > 1 alternates dense and MoE layers; vramcalc counts "
                "every layer as MoE (an upper bound on weights)"
            )
    if moe is not None:
        data["moe"] = moe
    if inter is None:
        inter = moe["expert_intermediate_size"] if moe else None
    if inter is None:
        raise ModelFileError(f"{where}: config misses intermediate_size")
    data["intermediate_size"] = inter

    if family == "gemma3_text" and isinstance(cfg.get("vision_config"), Mapping):
        tower, projector = siglip_params(cfg["vision_config"], h, f"{where}: vision_config")
        data["vision"] = {"name": "SigLIP vision tower", "params": tower, "projector_params": projector}
    elif isinstance(cfg.get("vision_config"), Mapping):
        warnings.append(f"{family}: the vision encoder is not counted (text decoder only)")

    fmt = quant_format(cfg, where)
    if fmt is not None:
        data["native_weight_format"] = fmt[1]
    notes = [f"default applied: {d}" for d in result_defaults] + warnings
    data["notes"] = notes
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ModelFileError(f"{where}: cannot build a model spec: {loc}: {err['msg']}") from exc
    return Imported(spec, result_defaults, warnings)


def _architecture(cfg: Mapping[str, Any], where: str) -> str | None:
    """The first class name of `architectures` (a list of strings when present)."""
    names = cfg.get("architectures")
    if names is None or names == []:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFileError(
            f"{where}: architectures must be a list of class names such as ['LlamaForCausalLM'], "
            f"found {files.short(names)}"
        )
    first: str = names[0]
    return first[:200]


def stem_id(text: str) -> str:
    """A catalog id from a file or repository name (lower case, [a-z0-9._-])."""
    out = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "-" for c in text.lower()).strip(
        "-._"
    )
    while "--" in out:
        out = out.replace("--", "-")
    return out[:100].rstrip("-._") or "imported-model"


__all__ = ["FAMILY_DEFAULTS", "SUPPORTED_FAMILIES", "Imported", "read_config", "spec_from_config", "stem_id"]
