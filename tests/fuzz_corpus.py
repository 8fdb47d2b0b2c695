"""The hostile inputs of tests/test_fuzz.py, built on disk: truncated, bit-flipped and lying GGUF and
safetensors headers, hostile config.json / catalog / plan / log / project files, special files and
hostile names. Each builder returns `Case`s: the CLI arguments to run and the words an error must
name (a file, a field or a flag)."""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT


@dataclass(frozen=True)
class Case:
    """One input: what it is, the CLI arguments, and (for exit 2) words one of which the error names."""

    name: str
    args: tuple[str, ...]
    names: tuple[str, ...] = ()
    fmt: str = "text"  # the output format asked for, to check its shape


# Values that have broken readers before: wrong types, zero, negative, huge, NaN, infinities.
HOSTILE_JSON_VALUES: tuple[tuple[str, str], ...] = (
    ("zero", "0"),
    ("negative", "-3"),
    ("null", "null"),
    ("string", '"x"'),
    ("digit-string", '"4096"'),
    ("float", "2.5"),
    ("bool", "true"),
    ("list", "[1, 2]"),
    ("object", '{"a": 1}'),
    ("ten-million", "10000000"),
    ("1e320", "1" + "0" * 320),
    ("5000-digits", "9" * 5000),
    ("1e400-float", "1e400"),
    ("nan", "NaN"),
    ("infinity", "-Infinity"),
)

TOY_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 1000,
    "max_position_embeddings": 8192,
    "torch_dtype": "bfloat16",
}
MOE_CONFIG: dict[str, Any] = {
    **TOY_CONFIG,
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 128,
}
DEEPSEEK_CONFIG: dict[str, Any] = {
    **TOY_CONFIG,
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 128,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "kv_lora_rank": 64,
    "q_lora_rank": 96,
    "qk_rope_head_dim": 16,
    "qk_nope_head_dim": 32,
    "v_head_dim": 32,
}
GEMMA3_CONFIG: dict[str, Any] = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "sliding_window": 512,
        "sliding_window_pattern": 6,
    },
    "vision_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "patch_size": 14,
        "image_size": 224,
    },
}
CONFIG_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "sliding_window",
    "architectures",
    "model_type",
    "layer_types",
    "quantization_config",
    "text_config",
    "tie_word_embeddings",
    "torch_dtype",
)
MOE_KEYS = ("num_experts", "num_experts_per_tok", "moe_intermediate_size")
DEEPSEEK_KEYS = (
    "n_shared_experts",
    "first_k_dense_replace",
    "kv_lora_rank",
    "qk_rope_head_dim",
    "v_head_dim",
)
VISION_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "patch_size",
    "image_size",
    "num_channels",
)
QUANT_CONFIGS: tuple[Any, ...] = (
    {"quant_method": "compressed-tensors", "config_groups": [1, 2]},
    {"quant_method": "compressed-tensors", "config_groups": {"g": [1]}},
    {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": [8]}}},
    {"quant_method": "compressed-tensors", "config_groups": "x"},
    {"quant_method": ["awq"]},
    {"quant_method": {"x": 1}},
    {"quant_method": "gptq", "bits": [4]},
    {"quant_method": "nosuch"},
    {"quant_method": "bitsandbytes", "load_in_4bit": "yes"},
    [1, 2],
    "awq",
)


def _json_with(base: dict[str, Any], path: tuple[str, ...], raw: str) -> str:
    """`base` as JSON with the value at `path` replaced by the raw JSON text `raw`."""
    marker = "__FUZZ__"
    data = json.loads(json.dumps(base))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = marker
    return json.dumps(data).replace(f'"{marker}"', raw)


def config_cases(root: Path) -> list[Case]:
    """config.json: every key of several families set to each hostile value, plus broken JSON."""
    out: list[Case] = []
    n = 0

    def add(label: str, text: str | bytes, fmt: str = "text") -> None:
        nonlocal n
        n += 1
        folder = root / f"cfg{n:04d}"
        folder.mkdir()
        target = folder / "config.json"
        target.write_bytes(text.encode() if isinstance(text, str) else text)
        extra = () if fmt == "text" else ("--format", fmt)
        out.append(Case(f"config.json {label}", ("estimate", str(folder), *extra), (str(folder),), fmt))

    formats = ("text", "json", "markdown", "csv")
    for i, key in enumerate(CONFIG_KEYS):
        for j, (vname, raw) in enumerate(HOSTILE_JSON_VALUES):
            add(f"{key}={vname}", _json_with(TOY_CONFIG, (key,), raw), formats[(i + j) % 4])
    for key in MOE_KEYS:
        for vname, raw in HOSTILE_JSON_VALUES[::2]:
            add(f"qwen3_moe {key}={vname}", _json_with(MOE_CONFIG, (key,), raw))
    for key in DEEPSEEK_KEYS:
        for vname, raw in HOSTILE_JSON_VALUES[::2]:
            add(f"deepseek {key}={vname}", _json_with(DEEPSEEK_CONFIG, (key,), raw))
    for key in VISION_KEYS:
        for vname, raw in HOSTILE_JSON_VALUES:
            add(f"gemma3 vision_config.{key}={vname}", _json_with(GEMMA3_CONFIG, ("vision_config", key), raw))
    for vname, raw in HOSTILE_JSON_VALUES[::3]:
        add(
            f"gemma3 text_config.num_hidden_layers={vname}",
            _json_with(GEMMA3_CONFIG, ("text_config", "num_hidden_layers"), raw),
        )
    for i, qc in enumerate(QUANT_CONFIGS):
        add(f"quantization_config #{i}", json.dumps({**TOY_CONFIG, "quantization_config": qc}))
    add("layer_types of dicts", json.dumps({**TOY_CONFIG, "layer_types": [{}, {}]}))
    add("layer_types too long", json.dumps({**TOY_CONFIG, "layer_types": ["full_attention"] * 100_000}))
    add("architectures 5", json.dumps({**TOY_CONFIG, "architectures": 5}))
    add("nested 5,000 deep", "[" * 5000 + "]" * 5000)
    add("object nested 5,000 deep", '{"a":' * 5000 + "1" + "}" * 5000)
    add("nested 65 deep", json.dumps({**TOY_CONFIG, "x": json.loads("[" * 65 + "]" * 65)}))
    add("top-level array", "[1, 2, 3]")
    add("top-level string", '"config"')
    add("empty", "")
    add("whitespace", "   \n\t ")
    add("BOM then JSON", "\ufeff" + json.dumps(TOY_CONFIG))
    add("UTF-16", json.dumps(TOY_CONFIG).encode("utf-16"))
    add("latin-1 bytes", b'{"model_type": "llama\xe9"}')
    add("NUL bytes", b"\x00" * 64)
    add("2 MB of spaces", " " * 2_000_000)
    add("trailing garbage", json.dumps(TOY_CONFIG) + " }")
    add("duplicate keys", '{"hidden_size": 1, "hidden_size": 99999999999}')
    valid = json.dumps(TOY_CONFIG)
    for cut in (1, 10, len(valid) // 3, len(valid) // 2, len(valid) - 1):
        add(f"truncated at {cut}", valid[:cut])
    rng = random.Random(12)
    for k in range(12):
        data = bytearray(valid.encode())
        for _ in range(3):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        add(f"bit-flipped #{k}", bytes(data))
    return out


# --- safetensors -----------------------------------------------------------------------------------

TOY_TENSORS: dict[str, Any] = {
    "model.embed_tokens.weight": {"dtype": "BF16", "shape": [1000, 256]},
    "model.layers.0.self_attn.q_proj.weight": {"dtype": "BF16", "shape": [256, 256]},
    "model.layers.0.mlp.up_proj.weight": {"dtype": "BF16", "shape": [512, 256]},
    "model.layers.1.self_attn.q_proj.weight": {"dtype": "BF16", "shape": [256, 256]},
    "lm_head.weight": {"dtype": "BF16", "shape": [1000, 256]},
}


def _with_offsets(tensors: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    at = 0
    for name, info in tensors.items():
        n = 1
        for d in info["shape"]:
            n *= d
        size = n * 2
        out[name] = {**info, "data_offsets": [at, at + size]}
        at += size
    return out


def safetensors_bytes(header: Any, data_bytes: int | None = None, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def safetensors_cases(root: Path) -> list[Case]:
    """A config.json (valid) beside a hostile model.safetensors, or a hostile index."""
    out: list[Case] = []
    n = 0
    valid = _with_offsets(TOY_TENSORS)
    data_end = max(info["data_offsets"][1] for info in valid.values())

    def add(label: str, content: bytes, *, sparse_to: int | None = None, index: str | None = None) -> None:
        nonlocal n
        n += 1
        folder = root / f"st{n:04d}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(TOY_CONFIG))
        target = folder / "model.safetensors"
        target.write_bytes(content)
        if sparse_to is not None:
            os.truncate(target, max(sparse_to, len(content)))
        if index is not None:
            (folder / "model.safetensors.index.json").write_text(index)
        out.append(Case(f"safetensors {label}", ("estimate", str(folder)), (str(folder),)))

    good = safetensors_bytes(valid)
    add("valid", good, sparse_to=len(good) + data_end)
    add("valid header, no data (partial download)", good)
    for cut in (0, 4, 7, 8, 9, 20, len(good) // 2, len(good) - 1):
        add(f"truncated at {cut}", good[:cut])
    for claimed in (0, 1, 2**63, 100_000_001, len(good)):
        add(f"length claims {claimed:,}", safetensors_bytes(valid, length=claimed))

    def mutated(name: str, field: str, value: Any) -> dict[str, Any]:
        header = json.loads(json.dumps(valid))
        header[name][field] = value
        return header

    first = "model.layers.0.self_attn.q_proj.weight"
    for label, value in (
        ("list", ["BF16"]),
        ("int", 5),
        ("null", None),
        ("unknown", "BF17"),
        ("object", {"a": 1}),
    ):
        add(f"dtype {label}", safetensors_bytes(mutated(first, "dtype", value)))
    for label, value in (
        ("10^19 dims", [10**19, 10**19, 10**19]),
        ("2^48 elements", [2**24, 2**25]),
        ("negative", [-1, 256]),
        ("strings", ["256", "256"]),
        ("floats", [2.5, 2]),
        ("bools", [True, True]),
        ("20 dims", [1] * 20),
        ("not a list", 256),
        ("empty", []),
    ):
        add(f"shape {label}", safetensors_bytes(mutated(first, "shape", value)))
    for label, value in (
        ("reversed", [131072, 0]),
        ("three", [0, 1, 2]),
        ("strings", ["0", "1"]),
        ("wrong size", [0, 7]),
        ("huge", [0, 10**19]),
        ("null", None),
    ):
        add(f"data_offsets {label}", safetensors_bytes(mutated(first, "data_offsets", value)))
    raw_header = json.dumps(valid).encode()
    for label, body in (
        ("not JSON", b"{" + b"x" * 40),
        ("JSON array", b"[1, 2]"),
        ("nested 5,000 deep", b"[" * 5000 + b"]" * 5000),
        ("5,000-digit number", b'{"a": ' + b"9" * 5000 + b"}"),
        ("NaN", b'{"__metadata__": {"x": NaN}}'),
        ("invalid UTF-8", b'{"\xff\xfe": 1}'),
        ("entry not an object", b'{"w": 5}'),
        (
            "10,000-character tensor name",
            json.dumps({"model.layers." + "9" * 10_000 + ".w": valid[first]}).encode(),
        ),
    ):
        add(f"header {label}", safetensors_bytes(body))
    rng = random.Random(7)
    for k in range(20):
        data = bytearray(safetensors_bytes(raw_header))
        for _ in range(2):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        add(f"bit-flipped #{k}", bytes(data))
    for label, index in (
        ("weight_map a list", '{"weight_map": ["model.safetensors"]}'),
        ("weight_map of ints", '{"weight_map": {"a": 5}}'),
        ("names outside", '{"weight_map": {"a": "../../etc/passwd"}}'),
        ("absolute name", '{"weight_map": {"a": "/dev/zero"}}'),
        ("missing file", '{"weight_map": {"a": "model-00001-of-00002.safetensors"}}'),
        ("not JSON", "{"),
        ("no weight_map", "{}"),
        ("deep", "[" * 3000 + "]" * 3000),
    ):
        add(f"index {label}", good, index=index)
    return out


# --- GGUF ------------------------------------------------------------------------------------------

_U32, _F32, _STRING, _ARRAY, _U64 = 4, 6, 8, 9, 10


def _s(text: str | bytes, claimed: int | None = None) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw


def gguf_header(
    meta: dict[str, Any] | None = None,
    tensors: list[tuple[str, tuple[int, ...], int]] | None = None,
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
) -> tuple[bytes, int]:
    """A GGUF v3 header (metadata and tensor infos) for a toy llama, and the data bytes it implies.
    `meta` values: int -> u32, str -> string, list[int] -> u32 array, bytes -> raw typed value."""
    base: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": "fuzz toy",
        "llama.block_count": 2,
        "llama.context_length": 2048,
        "llama.embedding_length": 64,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
    }
    base.update(meta or {})
    if tensors is None:
        tensors = [
            ("token_embd.weight", (64, 1000), 1),
            ("output_norm.weight", (64,), 0),
            ("output.weight", (64, 1000), 1),
        ]
        for i in range(2):
            for part, dims in (
                ("attn_q", (64, 64)),
                ("attn_k", (64, 32)),
                ("attn_v", (64, 32)),
                ("attn_output", (64, 64)),
                ("ffn_gate", (64, 128)),
                ("ffn_up", (64, 128)),
                ("ffn_down", (128, 64)),
            ):
                tensors.append((f"blk.{i}.{part}.weight", dims, 1))
            tensors += [(f"blk.{i}.attn_norm.weight", (64,), 0), (f"blk.{i}.ffn_norm.weight", (64,), 0)]
    kv = b""
    for key, value in base.items():
        kv += _s(key)
        if isinstance(value, bytes):
            kv += value
        elif isinstance(value, str):
            kv += struct.pack("<I", _STRING) + _s(value)
        elif isinstance(value, list):
            kv += struct.pack("<IIQ", _ARRAY, _U32, len(value)) + b"".join(
                struct.pack("<I", v) for v in value
            )
        elif isinstance(value, float):
            kv += struct.pack("<If", _F32, value)
        else:
            kv += struct.pack("<IQ", _U64, value) if value >= 2**32 else struct.pack("<II", _U32, value)
    infos = b""
    offset = 0
    for name, dims, ggml_type in tensors:
        infos += _s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, offset)
        elements = 1
        for d in dims:
            elements *= d
        offset += -(-(elements * (4 if ggml_type == 0 else 2)) // 32) * 32
    head = b"GGUF" + struct.pack(
        "<IQQ", version, len(tensors) if n_tensors is None else n_tensors, len(base) if n_kv is None else n_kv
    )
    return head + kv + infos, offset


def _write_gguf(path: Path, header: bytes, data: int) -> None:
    path.write_bytes(header)
    os.truncate(path, min(-(-len(header) // 32) * 32 + data, 2**40))  # sparse; 1 TiB at most


def gguf_cases(root: Path) -> list[Case]:
    out: list[Case] = []
    n = 0

    def add(label: str, header: bytes, data: int = 0, *, truncate: bool = False) -> None:
        nonlocal n
        n += 1
        path = root / f"g{n:04d}.gguf"
        if truncate:
            path.write_bytes(header)
        else:
            _write_gguf(path, header, data)
        out.append(Case(f"GGUF {label}", ("estimate", str(path), "--ctx", "512"), (str(path),)))

    good, data = gguf_header()
    add("valid", good, data)
    step = max(1, len(good) // 40)
    for cut in range(0, len(good), step):
        add(f"truncated at {cut}", good[:cut], truncate=True)
    rng = random.Random(3)
    for k in range(60):
        flipped = bytearray(good)
        for _ in range(rng.choice((1, 2, 4))):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        add(f"bit-flipped #{k}", bytes(flipped), data)
    for key in (
        "llama.block_count",
        "llama.embedding_length",
        "llama.attention.head_count",
        "llama.context_length",
        "llama.feed_forward_length",
        "llama.attention.head_count_kv",
    ):
        for value in (0, 10_000_000, 2**40):
            header, size = gguf_header({key: value})
            add(f"{key}={value:,}", header, size)
    lies: list[tuple[str, bytes]] = [
        ("n_tensors 2^40", gguf_header(n_tensors=2**40)[0]),
        ("n_kv 2^40", gguf_header(n_kv=2**40)[0]),
        ("n_tensors one more", gguf_header(n_tensors=22)[0]),
        ("n_kv one more", gguf_header(n_kv=9)[0]),
        ("version 1", gguf_header(version=1)[0]),
        ("version 4", gguf_header(version=4)[0]),
        ("big-endian version", gguf_header(version=3 << 24)[0]),
        ("bad magic", b"GGUX" + good[4:]),
        (
            "string claims 2^62 bytes",
            gguf_header({"general.name": struct.pack("<I", _STRING) + _s(b"x", 2**62)})[0],
        ),
        ("array claims 2^40 items", gguf_header({"x.arr": struct.pack("<IIQ", _ARRAY, _U32, 2**40)})[0]),
        (
            "array of arrays",
            gguf_header(
                {"x.nest": struct.pack("<IIQ", _ARRAY, _ARRAY, 1) + struct.pack("<IQ", _ARRAY, 1) * 3}
            )[0],
        ),
        ("unknown value type", gguf_header({"x.t": struct.pack("<I", 99)})[0]),
        ("alignment 3", gguf_header({"general.alignment": 3})[0]),
        ("alignment 0", gguf_header({"general.alignment": 0})[0]),
        ("architecture an int", gguf_header({"general.architecture": 5})[0]),
        ("no architecture", gguf_header({"general.architecture": ""})[0]),
        ("block_count a list", gguf_header({"llama.block_count": [2, 2, 0]})[0]),
        ("block_count a float", gguf_header({"llama.block_count": 2.0})[0]),
        ("65,536-byte key", gguf_header({"k" * 65_537: 1})[0]),
        ("general.name with a newline", gguf_header({"general.name": "x\n::warning::injected"})[0]),
        ("general.name 60 KB", gguf_header({"general.name": "n" * 60_000})[0]),
    ]
    for label, header in lies:
        add(label, header, data)
    for label, tensors in (
        ("tensor of 5 dims", [("token_embd.weight", (64, 1000, 1, 1, 1), 1)]),
        ("tensor of 0 dims", [("token_embd.weight", (), 1)]),
        ("tensor dims 2^40 x 2^40", [("token_embd.weight", (2**40, 2**40), 1)]),
        ("tensor dim 0", [("token_embd.weight", (0, 1000), 1)]),
        ("unknown ggml type", [("token_embd.weight", (64, 1000), 999)]),
        ("Q4_K row not a block multiple", [("token_embd.weight", (100, 1000), 12)]),
        ("duplicate tensor", [("token_embd.weight", (64, 1000), 1)] * 2),
        ("no token_embd", [("output.weight", (64, 1000), 1)]),
        ("token_embd 1-D", [("token_embd.weight", (64,), 1)]),
        (
            "layer index of 30 digits",
            [("token_embd.weight", (64, 1000), 1), ("blk." + "9" * 30 + ".attn_q.weight", (64, 64), 1)],
        ),
    ):
        header, size = gguf_header(tensors=tensors)
        add(label, header, size)
    header, size = gguf_header()
    add("data shorter than the tensors", header, size // 2)
    return out


# --- catalog entries ---------------------------------------------------------------------------------

HOSTILE_YAML_VALUES: tuple[tuple[str, str], ...] = (
    ("zero", "0"),
    ("negative", "-1"),
    ("null", "null"),
    ("string", "x"),
    ("list", "[1, 2]"),
    ("ten-million", "10000000"),
    ("1e320", "1" + "0" * 320),
    ("5000-digits", "9" * 5000),
    (".inf", ".inf"),
    (".nan", ".nan"),
    ("-.inf", "-.inf"),
    ("1e400", "1e400"),
)
MODEL_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "norms_per_layer",
    "params_official",
    "name",
)
GPU_FIELDS = (
    "memory_gb_marketed",
    "usable_mib",
    "memory_bandwidth_gbs",
    "bf16_dense_tflops",
    "tdp_w",
    "price_usd",
    "release_year",
    "name",
)


def _yaml_with(base: dict[str, Any], key: str, raw: str) -> str:
    text = yaml.safe_dump({k: v for k, v in base.items() if k != key}, sort_keys=False)
    return text + f"{key}: {raw}\n"


def catalog_cases(root: Path) -> list[Case]:
    """A user catalog whose entries each break one field, and whose files are not files."""
    cat = root / "catalog"
    (cat / "models").mkdir(parents=True)
    (cat / "gpus").mkdir()
    model = yaml.safe_load((ROOT / "models" / "llama-3.1-8b.yaml").read_text())
    model.pop("aliases", None)
    model.pop("hf_id", None)
    gpu = yaml.safe_load((ROOT / "gpus" / "rtx-4090.yaml").read_text())
    gpu.pop("aliases", None)
    out: list[Case] = []
    n = 0

    def add_model(label: str, text: str | bytes) -> None:
        nonlocal n
        n += 1
        mid = f"fuzz-m{n:04d}"
        path = cat / "models" / f"{mid}.yaml"
        path.write_bytes(text.replace("__ID__", mid).encode() if isinstance(text, str) else text)
        out.append(Case(f"catalog model {label}", ("estimate", mid, "--catalog", str(cat)), (str(path), mid)))

    def add_gpu(label: str, text: str) -> None:
        nonlocal n
        n += 1
        gid = f"fuzz-g{n:04d}"
        path = cat / "gpus" / f"{gid}.yaml"
        path.write_text(text.replace("__ID__", gid))
        args = ("estimate", "llama-3.1-8b", "--gpu", gid, "--catalog", str(cat), "--json")
        out.append(Case(f"catalog GPU {label}", args, (str(path), gid), "json"))

    for key in MODEL_FIELDS:
        for vname, raw in HOSTILE_YAML_VALUES:
            add_model(f"{key}={vname}", _yaml_with({**model, "id": "__ID__"}, key, raw))
    for key in GPU_FIELDS:
        for vname, raw in HOSTILE_YAML_VALUES:
            add_gpu(f"{key}={vname}", _yaml_with({**gpu, "id": "__ID__"}, key, raw))
    add_model("name with a newline", _yaml_with({**model, "id": "__ID__"}, "name", '"x\\n::warning::y"'))
    add_model(
        "layer_pattern window 10^30",
        _yaml_with(
            {**model, "id": "__ID__"},
            "layer_pattern",
            "{kind: all_local, local_attention: sliding, window_tokens: " + "1" + "0" * 30 + "}",
        ),
    )
    add_model(
        "moe experts_per_token > experts",
        _yaml_with(
            {**model, "id": "__ID__"},
            "moe",
            "{num_experts: 4, experts_per_token: 9, expert_intermediate_size: 128}",
        ),
    )
    add_model(
        "alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"b{i}: &b{i} [*a, *a, *a, *a, *a]\n" for i in range(60)),
    )
    add_model("python tag", "!!python/object/apply:os.system ['true']\n")
    add_model("nested 100 deep", "x: " + "[" * 100 + "]" * 100 + "\n")
    add_model("a list", "- 1\n- 2\n")
    add_model("empty", "")
    add_model("binary", b"\x00\xff\xfe" * 100)
    add_model("tabs", "\t\tid: x\n")
    add_model("NUL in a value", 'id: __ID__\nname: "a\\0b"\n')
    return out


# --- plans -------------------------------------------------------------------------------------------

HOSTILE_NAMES: tuple[tuple[str, str], ...] = (
    ("workflow command after a newline", "a\n::warning::injected"),
    ("carriage return command", "a\r::error::injected"),
    ("percent escapes", "%0A::warning::x %25"),
    ("XML control characters", "a\x01b\x1bc\x7f\x0b"),
    ("XML markup", '</testcase><x a="1">&amp;'),
    ("Markdown pipes", "a | b || `c`"),
    ("backticks", "```\n# heading"),
    ("unicode line separator", "a\u2028::warning::b"),
    ("commas and colons", "file=x,line=1::title"),
    ("emoji and RTL", "🚀 \u202eabc"),
    ("120 characters", "n" * 120),
    ("here-document end", "EOF\nrm -rf ~"),
)
PLAN_BASE: dict[str, Any] = {"model": "llama-3.1-8b", "gpu": "rtx-4090", "ctx": 4096, "users": 2, "bits": 4}
PLAN_FAIL: dict[str, Any] = {"model": "gemma-2-27b", "gpu": "rtx-4090", "ctx": 4096, "users": 40, "bits": 4}
PLAN_FIELDS: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("ctx", (0, -1, 10**30, 2**27 + 1, float("inf"), "x", 1.5, None)),
    ("users", (0, 10**30, 1_000_001, float("nan"), "10", True)),
    ("workers", (0, 65, 10**20)),
    ("fill", (0, 1.5, float("nan"), float("inf"))),
    ("headroom", (1, -0.1, float("nan"))),
    ("shared_prefix", (-1, 10**25, 5000)),
    ("output_tokens", (0, 4096, 10**25)),
    ("gpu_count", (0, 65, 10**25)),
    ("host_bandwidth_gbs", (0, float("inf"), 10**9)),
    ("engine", ("vllm@", "vllm@" + "9" * 5000, "nosuch", "ollama@0.30.0.0.0", "", 5)),
    ("bits", (7, 0, "4")),
    ("quant", ("nosuch", 5, "")),
    ("model", ("", "a" * 300, "~nosuchuser/x.json", "./" + "b" * 300 + ".json", 5)),
    ("gpu", ("", "g" * 300, 5)),
    (
        "settings",
        (
            {"gpu_util": float("nan")},
            {"ubatch": 10**30},
            {"max_num_seqs": 0},
            {"cpu_offload_gb": float("inf")},
            [1],
        ),
    ),
    ("goals", ({"min_tokens_per_s": float("inf")}, {"max_ttft_s": float("nan")}, {"max_ttft_s": 10**30})),
)


def _plan_yaml(deployments: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"deployments": deployments}, sort_keys=False, allow_unicode=False, width=10_000)


def plan_cases(root: Path) -> list[Case]:
    out: list[Case] = []
    n = 0
    folder = root / "plans"
    folder.mkdir()

    def add(label: str, text: str | bytes, formats: Iterable[str] = ("text",)) -> Path:
        nonlocal n
        n += 1
        path = folder / f"p{n:04d}.yaml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        for fmt in formats:
            out.append(
                Case(f"plan {label} --format {fmt}", ("check", str(path), "--format", fmt), (str(path),), fmt)
            )
        return path

    every = ("text", "json", "junit", "github", "markdown")
    for label, name in HOSTILE_NAMES:
        add(
            f"name {label}",
            _plan_yaml([{**PLAN_FAIL, "name": name}, {**PLAN_BASE, "name": name + " ok"}]),
            every,
        )
    for field, values in PLAN_FIELDS:
        for value in values:
            add(f"{field}={str(value)[:30]}", _plan_yaml([{**PLAN_BASE, field: value}]))
    add(
        "2,000 deployments",
        _plan_yaml([{**PLAN_BASE, "name": f"d{i}", "users": 1 + i % 9} for i in range(2000)]),
    )
    add("duplicate names x 500", _plan_yaml([{**PLAN_BASE, "name": f"d{i % 250}"} for i in range(500)]))
    add("deployments empty", "deployments: []\n")
    add("deployments a string", "deployments: x\n")
    add(
        "alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"b{i}: &b{i} [*a, *a, *a]\n" for i in range(60)),
    )
    add("python tag", "deployments: !!python/object/apply:os.system ['true']\n")
    add(
        "5,000-digit ctx",
        "deployments:\n- {model: llama-3.1-8b, gpu: rtx-4090, users: 1, ctx: " + "9" * 5000 + "}\n",
    )
    add("nested 5,000 deep", "deployments: " + "[" * 5000 + "]" * 5000 + "\n")
    add("binary", bytes(range(256)))
    add("UTF-16", _plan_yaml([PLAN_BASE]).encode("utf-16"))
    # Directories that loop back on themselves through symlinks, walked by a directory and by **.
    loops = root / "loops"
    (loops / "a" / "b").mkdir(parents=True)
    (loops / "a" / "b" / "up").symlink_to("..")
    (loops / "a" / "b" / "top").symlink_to("../..")
    (loops / "a" / "self").symlink_to(".")
    (loops / "a" / "b" / "plan.yaml").write_text(_plan_yaml([PLAN_BASE]))
    for fmt in ("text", "junit"):
        out.append(
            Case("symlink loops, directory", ("check", str(loops), "--format", fmt), (str(loops),), fmt)
        )
        out.append(
            Case(
                "symlink loops, ** glob", ("check", f"{loops}/**/*.yaml", "--format", fmt), (str(loops),), fmt
            )
        )
    out.append(Case("glob matching nothing", ("check", f"{root}/nosuch/**/*.yaml"), (str(root),)))
    out.append(Case("directory without plans", ("check", str(root / "catalog")), (str(root / "catalog"),)))
    # Hostile text that does reach the reports: file names, and default names ("MODEL on GPU")
    # built from a model directory's name.
    for label, name in HOSTILE_NAMES:
        if "\x00" in name or "/" in name:
            continue
        sub = folder / f"named{n:04d}"
        sub.mkdir()
        path = sub / f"{name}.yaml"
        path.write_text(_plan_yaml([PLAN_FAIL, {**PLAN_BASE, "name": "ok"}]))
        for fmt in every:
            out.append(
                Case(
                    f"plan file named {label} --format {fmt}",
                    ("check", str(path), "--format", fmt),
                    (str(sub),),
                    fmt,
                )
            )
        model_dir = sub / name
        model_dir.mkdir()
        (model_dir / "config.json").write_text(json.dumps(TOY_CONFIG))
        plan = sub / "by-model.yaml"
        plan.write_text(_plan_yaml([{**PLAN_BASE, "model": f"./{name}"}, {**PLAN_FAIL, "users": 500}]))
        for fmt in every:
            out.append(
                Case(
                    f"plan model dir named {label} --format {fmt}",
                    ("check", str(plan), "--format", fmt),
                    (str(plan),),
                    fmt,
                )
            )
        n += 1
    emit_path = add(
        "emit hostile names", _plan_yaml([{**PLAN_BASE, "name": name} for _, name in HOSTILE_NAMES])
    )
    out.append(
        Case("plan emit hostile names", ("plan", "emit", str(emit_path), "--force"), (str(emit_path),))
    )
    return out


# --- logs --------------------------------------------------------------------------------------------

FIVE_MB = 5 * 10**6 - 100


def log_cases(root: Path) -> list[Case]:
    logs = {
        "5 MB of Device lines": "llama_model_loader: loaded meta data\n"
        + ("ggml_cuda_init: Device 0: " + "x" * 60 + "\n") * (FIVE_MB // 87),
        "5 MB on one line of Device": "llama_model_loader: loaded meta data\n"
        + "Device 0: " * (FIVE_MB // 10),
        "5 MB of general.name": "llama_model_loader: loaded meta data\n"
        + ("llama_model_loader: - kv general.name str = " + "a " * 20 + "\n") * (FIVE_MB // 86),
        "5 MB of inference compute": 'time=2025 level=INFO source=x msg="inference compute" id=0\n'
        * (FIVE_MB // 60),
        "5 MB of buffer size without a number": ("CUDA0 model buffer size = MiB " * 3 + "\n")
        * (FIVE_MB // 94),
        "400-digit figures": "vLLM API server version 0.6.4\nModel loading took "
        + "9" * 400
        + " GiB\n# GPU blocks: "
        + "9" * 5000
        + "\nmax_model_len="
        + "9" * 400
        + "\n",
        "20-digit figures": "vLLM API server version 0.6.4\nModel loading took 99999999999999999999 GiB\n"
        "max_model_len=99999999999999999999\n# GPU blocks: 99999999999999999999\n",
        "superscript digits": 'time=2025 level=INFO source=x msg="starting llama server" cmd="x --ctx-size ²³ --parallel ³"\n'
        'time=2025 level=INFO source=x msg=offload layers.offload=²³ layers.model=² memory.required.full="1 GiB"\n',
        "Arabic-Indic digits": "llama_model_loader: loaded meta data\nllama_context: n_ctx = ٤٠٩٦\n"
        "llama_kv_cache: CUDA0 KV buffer size = ١٠٢٤.٠٠ MiB\n",
        "version of 5,000 digits": "vLLM API server version " + "1" * 5000 + ".8\nModel loading took 1 GiB\n",
        "unterminated quotes": 'time=2025 level=INFO source=x msg="starting llama server" cmd="'
        + "a" * 20_000
        + "\n",
        "server config map without end": 'time=2025 level=INFO source=x msg="server config" env="map['
        + "OLLAMA_X:1 " * 5000,
        "ANSI soup": "\x1b[" + ";" * 100_000 + "m vLLM API server version 0.6.4\n",
        "CR line ends": "vLLM API server version 0.6.4\rModel loading took 1.5 GiB\rmax_model_len=4096\r",
        "ctx of 10^19 tokens": "llama_model_loader: loaded meta data\nllama_context: n_ctx = 9999999999999999999\n"
        "general.name str = llama-3.1-8b\nllama_kv_cache: CUDA0 KV buffer size = 1024.00 MiB\n"
        "Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9\n",
    }
    out: list[Case] = []
    folder = root / "logs"
    folder.mkdir()
    for i, (label, text) in enumerate(logs.items()):
        path = folder / f"l{i:03d}.log"
        path.write_text(text, encoding="utf-8")
        out.append(Case(f"log {label}", ("calibrate", str(path), "--gpu", "rtx-4090"), (str(path), "log")))
    for label, data in (
        ("UTF-16", "vLLM".encode("utf-16")),
        ("NUL", b"\x00" * 10),
        ("latin-1", b"\xe9" * 10),
        ("empty", b""),
    ):
        path = folder / f"bad-{label}.log"
        path.write_bytes(data)
        out.append(Case(f"log {label}", ("calibrate", str(path)), (str(path),)))
    for real in sorted((ROOT / "tests" / "fixtures" / "logs").glob("*.log")):
        text = real.read_text()
        rng = random.Random(real.name)
        for k in range(4):
            chars = list(text)
            for _ in range(30):
                chars[rng.randrange(len(chars))] = rng.choice("0123456789 =:.\n'\"()[]²٣")
            path = folder / f"{real.stem}-mut{k}.log"
            path.write_text("".join(chars))
            out.append(Case(f"log {real.name} mutated #{k}", ("calibrate", str(path)), (str(path), "log")))
    return out


# --- project files -------------------------------------------------------------------------------------


def project_cases(root: Path) -> list[Case]:
    folder = root / "project"
    folder.mkdir()
    texts = {
        "users 5,000 digits": "users = " + "9" * 5000 + "\n",
        "users 400 digits": "users = " + "9" * 400 + "\n",
        "ctx 10^30": "ctx = 1" + "0" * 30 + "\n",
        "fill nan": "fill = nan\n",
        "min_speed inf": "min_speed = inf\n",
        "headroom -inf": "headroom = -inf\n",
        "nested tables": "a = " + "[" * 3000 + "]" * 3000 + "\n",
        "inline tables deep": "a = " + "{b = " * 600 + "1" + "}" * 600 + "\n",
        "malformed": "users = = 3\n",
        "unknown key": "userz = 3\n",
        "vramcalc table": "[vramcalc]\nusers = 0\n",
        "engine vllm@": 'engine = "vllm@"\n',
        "model ~nosuchuser": 'model = "~nosuchuser/x.json"\n',
        "binary": "\x00\x01\x02",
    }
    out: list[Case] = []
    for i, (label, text) in enumerate(texts.items()):
        path = folder / f"t{i:03d}.toml"
        path.write_text(text)
        out.append(
            Case(
                f"vramcalc.toml {label}",
                ("recommend", "--config", str(path), "--json"),
                (str(path), "--config", "~nosuchuser"),
                "json",
            )
        )
    for label, text in (
        ("nan", "fill: .nan\n"),
        ("inf", "min_speed: .inf\n"),
        ("big int", "users: " + "9" * 5000 + "\n"),
    ):
        path = folder / f"y-{label}.yaml"
        path.write_text(text)
        out.append(
            Case(
                f".vramcalc.yaml {label}",
                ("recommend", "--config", str(path), "--json"),
                (str(path),),
                "json",
            )
        )
    sparse = folder / "sparse.toml"
    with sparse.open("wb") as f:
        f.truncate(3 * 2**30)
    out.append(Case("vramcalc.toml sparse 3 GiB", ("recommend", "--config", str(sparse)), (str(sparse),)))
    return out


# --- special files and names ---------------------------------------------------------------------------


def special_cases(root: Path) -> list[Case]:
    """Things that are not regular files, named where a file is read; names the OS refuses."""
    folder = root / "special"
    folder.mkdir()
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    sparse = folder / "sparse"
    with sparse.open("wb") as f:
        f.truncate(3 * 2**30)
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dangling").symlink_to(folder / "nowhere")
    things: dict[str, Path] = {
        "FIFO": fifo,
        "/dev/zero": Path("/dev/zero"),
        "/dev/urandom": Path("/dev/urandom"),
        "/dev/null": Path("/dev/null"),
        "/proc/self/mem": Path("/proc/self/mem"),
        "/proc/self/status": Path("/proc/self/status"),
        "sparse 3 GiB": sparse,
        "a directory": folder,
        "a symlink loop": folder / "loop",
        "a dangling symlink": folder / "dangling",
    }
    out: list[Case] = []
    for label, target in things.items():
        tag = label.strip("/").replace("/", "-").replace(" ", "-")
        # As config.json, model.safetensors, a .gguf, a catalog entry, a plan, a project file, a log.
        cfg_dir = root / f"sp-cfg-{tag}"
        cfg_dir.mkdir()
        (cfg_dir / "config.json").symlink_to(target)
        out.append(Case(f"{label} as config.json", ("estimate", str(cfg_dir)), (str(cfg_dir),)))
        st_dir = root / f"sp-st-{tag}"
        st_dir.mkdir()
        (st_dir / "config.json").write_text(json.dumps(TOY_CONFIG))
        (st_dir / "model.safetensors").symlink_to(target)
        out.append(Case(f"{label} as model.safetensors", ("estimate", str(st_dir)), (str(st_dir),)))
        gguf = root / f"sp-{tag}.gguf"
        gguf.symlink_to(target)
        out.append(Case(f"{label} as a .gguf", ("estimate", str(gguf)), (str(gguf),)))
        out.append(Case(f"{label} as MODEL", ("estimate", str(target)), (str(target),)))
        cat = root / f"sp-cat-{tag}"
        (cat / "models").mkdir(parents=True)
        (cat / "gpus").mkdir()
        (cat / "models" / "x.yaml").symlink_to(target)
        (cat / "models" / "ok.yaml").write_text(
            (ROOT / "models" / "qwen2.5-0.5b.yaml").read_text().replace("id: qwen2.5-0.5b", "id: ok")
        )
        out.append(Case(f"{label} as a catalog entry", ("estimate", "x", "--catalog", str(cat)), (str(cat),)))
        plan = root / f"sp-plan-{tag}.yaml"
        plan.symlink_to(target)
        out.append(Case(f"{label} as a plan", ("check", str(plan)), (str(plan),)))
        model_plan = root / f"sp-planmodel-{tag}.yaml"
        model_plan.write_text(_plan_yaml([{**PLAN_BASE, "model": str(cfg_dir)}]))
        out.append(
            Case(f"{label} as a plan's model", ("check", str(model_plan)), (str(model_plan), str(cfg_dir)))
        )
        out.append(Case(f"{label} as --config", ("recommend", "--config", str(target)), (str(target),)))
        out.append(Case(f"{label} as a log", ("calibrate", str(target)), (str(target),)))
        if root in target.parents:  # never --output onto a system path: the rename would replace it
            plan_ok = str(ROOT / "examples/plans/gemma-2-27b-4090-2-users.yaml")
            out.append(
                Case(f"{label} as --output", ("check", plan_ok, "--output", str(target)), (str(target),))
            )
    hf = root / "hf" / "models--org--name"
    (hf / "refs").mkdir(parents=True)
    with (hf / "refs" / "main").open("wb") as f:
        f.truncate(3 * 2**30)
    (hf / "snapshots").mkdir()
    out.append(Case("sparse 3 GiB refs/main", ("estimate", "org/name"), ("refs", "org/name")))
    names = {
        "300-character model": ("estimate", "m" * 300),
        "300-character model path": ("estimate", "./" + "m" * 300 + ".json"),
        "300-character org/name": ("estimate", "org/" + "n" * 300),
        "300-character GPU": ("estimate", "llama-3.1-8b", "--gpu", "g" * 300),
        "4,000-character model": ("estimate", "x/" * 2000),
        "~nosuchuser path": ("estimate", "~nosuchuser/x.json"),
        "~nosuchuser dir": ("estimate", "~nosuchuser"),
        "NUL byte in a path": ("estimate", "./a\x00b.json"),
        "NUL byte in a name": ("estimate", "a\x00b"),
        "newline in a name": ("estimate", "a\n::warning::x"),
        "300-character --output": (
            "check",
            str(ROOT / "examples/plans/gemma-2-27b-4090-2-users.yaml"),
            "--output",
            str(root / ("o" * 300)),
        ),
        "--output in a missing directory": (
            "check",
            str(ROOT / "examples/plans/gemma-2-27b-4090-2-users.yaml"),
            "--output",
            str(root / "no" / "x.xml"),
        ),
        "300-character models import -o": (
            "models",
            "import",
            str(root / "gg"),
            "-o",
            str(root / ("o" * 300 + ".yaml")),
        ),
    }
    for label, args in names.items():
        out.append(Case(label, args, ()))
    return out


BUILDERS: tuple[Callable[[Path], list[Case]], ...] = (
    config_cases,
    safetensors_cases,
    gguf_cases,
    catalog_cases,
    plan_cases,
    log_cases,
    project_cases,
    special_cases,
)
