"""GGUF headers -> architecture, KV geometry and the exact model buffer, reading the header only.

The walk over the header is our own (bounded, skipping the tokenizer arrays in one pass); the
value and tensor type tables come from the `gguf` package that llama.cpp maintains. gguf's own
GGUFReader builds a numpy view per array element: 24.7 s and 718 MiB peak for a Gemma-3-27B-sized
header (262,208 tokens, 683 tensors) and 38 s / 1.2 GiB with 400k merges on this machine, and it
follows any count or length a hostile header claims, so it is used in tests as the oracle only.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vramcalc import files
from vramcalc import limits as lim
from vramcalc.core.formats import GGUF_MIXES, StoredWeights, WeightFormat
from vramcalc.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
# Bounds on what a header may claim; real files are far below each (DeepSeek-V3 Q4_K_M: ~1,100
# tensors, ~50 keys, a 129,280-token vocabulary, ~128k merges; the largest vocabularies ~262k).
MAX_TENSORS = 100_000
MAX_KEYS = 10_000
MAX_KEY_BYTES = 65_536
MAX_ARRAY_ITEMS = 4_194_304
MAX_STRING_BYTES = 64 * 1024 * 1024
KEEP_STRING_BYTES = 65_536  # longer values (chat templates) are skipped, not kept
KEEP_ARRAY_ITEMS = 4_096  # longer arrays (the vocabulary) are skipped; their length is kept
MAX_DIMS = 4  # Source: ggml/include/ggml.h GGML_MAX_DIMS
READ_CHUNK = 256 * 1024
MAX_FILE_BYTES = 1 << 50  # any size a disk holds: only the header is read
DEFAULT_ALIGNMENT = 32  # Source: gguf-py gguf/constants.py GGUF_DEFAULT_ALIGNMENT

_SHARD = re.compile(r"^(?P<base>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """A metadata array too long to keep: its element type and length."""

    item_type: str
    length: int


@dataclass(frozen=True, slots=True)
class GgufTensor:
    name: str
    ggml_type: str
    dims: tuple[int, ...]  # ggml order: ne0 (the contiguous row) first
    nbytes: int


@dataclass
class GgufHeader:
    """One GGUF file's metadata and tensor infos, and how many bytes reading them took."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[GgufTensor]
    data_offset: int
    bytes_read: int


@dataclass
class GgufModel:
    """All shards of one model: metadata from the first, tensors from every shard."""

    paths: list[Path]
    metadata: dict[str, Any]
    tensors: list[GgufTensor] = field(default_factory=list)
    bytes_read: int = 0
    header_bytes: int = 0


@functools.cache
def _gguf() -> Any:
    """gguf's constants module (GGUFValueType, GGMLQuantizationType, GGML_QUANT_SIZES, LlamaFileType).

    Loaded on its own from the installed package: `import gguf` also imports numpy and the
    reader/writer (0.2-0.5 s here), which a header walk does not need; the full package is the
    fallback should constants.py ever stop standing alone.
    """
    spec = importlib.util.find_spec("gguf")
    if spec is None:
        raise ModelFileError("reading .gguf files needs the gguf package: pip install gguf")
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / "constants.py"
        loader_spec = importlib.util.spec_from_file_location("vramcalc._gguf_constants", path)
        if loader_spec is None or loader_spec.loader is None:
            continue
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception:  # noqa: BLE001, S112 - fall back to the package import below
            continue
        return module
    return importlib.import_module("gguf")


class _Cursor:
    """Bounded little/big-endian reads over a file: only what the walk asks for, in chunks."""

    def __init__(self, f: IO[bytes], size: int, where: str) -> None:
        self.f, self.size, self.where = f, size, where
        self.buf = b""
        self.base = 0
        self.pos = 0
        self.bytes_read = 0
        self.order = "<"

    def need(self, n: int) -> int:
        """Make [pos, pos + n) available; return its index in buf."""
        if self.pos + n > self.size:
            raise ModelFileError(
                f"{self.where}: truncated GGUF header (needs byte {self.pos + n:,}, file has {self.size:,})"
            )
        start = self.pos - self.base
        if start >= 0 and start + n <= len(self.buf):
            return start
        try:
            self.f.seek(self.pos)
            self.buf = self.f.read(max(n, READ_CHUNK))
        except OSError as exc:
            raise ModelFileError(f"{self.where}: cannot read ({files.reason(exc)})") from None
        self.bytes_read += len(self.buf)
        self.base = self.pos
        if len(self.buf) < n:
            raise ModelFileError(f"{self.where}: truncated GGUF header (short read at byte {self.pos:,})")
        return 0

    def unpack(self, fmt: str, n: int) -> Any:
        i = self.need(n)
        self.pos += n
        return struct.unpack_from(self.order + fmt, self.buf, i)[0]

    def take(self, n: int) -> bytes:
        i = self.need(n)
        self.pos += n
        return self.buf[i : i + n]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise ModelFileError(
                f"{self.where}: truncated GGUF header (a value runs to byte {self.pos + n:,}, "
                f"file has {self.size:,})"
            )
        self.pos += n

    def string_length(self, limit: int, what: str) -> int:
        n = int(self.unpack("Q", 8))
        if self.pos + n > self.size and n <= limit:
            raise ModelFileError(
                f"{self.where}: truncated GGUF header ({what} claims {n:,} bytes, {self.size - self.pos:,} left)"
            )
        if n > limit or self.pos + n > self.size:
            raise ModelFileError(
                f"{self.where}: {what} claims {n:,} bytes (limit {min(limit, self.size - self.pos):,}); "
                "corrupt or hostile GGUF header"
            )
        return n

    def skip_strings(self, count: int) -> None:
        """Skip `count` length-prefixed strings (the vocabulary) in one tight loop."""
        fmt = self.order + "Q"
        for _ in range(count):
            i = self.need(8)
            n = struct.unpack_from(fmt, self.buf, i)[0]
            self.pos += 8
            if n > MAX_STRING_BYTES or self.pos + n > self.size:
                raise ModelFileError(f"{self.where}: an array string claims {n:,} bytes; corrupt GGUF header")
            self.pos += n


def _scalar_formats() -> dict[int, tuple[str, int]]:
    t = _gguf().GGUFValueType
    return {
        int(t.UINT8): ("B", 1),
        int(t.INT8): ("b", 1),
        int(t.UINT16): ("H", 2),
        int(t.INT16): ("h", 2),
        int(t.UINT32): ("I", 4),
        int(t.INT32): ("i", 4),
        int(t.FLOAT32): ("f", 4),
        int(t.BOOL): ("?", 1),
        int(t.UINT64): ("Q", 8),
        int(t.INT64): ("q", 8),
        int(t.FLOAT64): ("d", 8),
    }


def _value(c: _Cursor, vtype: int, key: str, scalars: dict[int, tuple[str, int]], depth: int = 0) -> Any:
    t = _gguf().GGUFValueType
    if vtype in scalars:
        fmt, size = scalars[vtype]
        return c.unpack(fmt, size)
    if vtype == int(t.STRING):
        n = c.string_length(MAX_STRING_BYTES, f"value of {key!r}")
        if n > KEEP_STRING_BYTES:
            c.skip(n)
            return None
        return c.take(n).decode("utf-8", errors="replace")
    if vtype == int(t.ARRAY):
        if depth > 2:
            raise ModelFileError(f"{c.where}: {key!r} nests arrays too deeply; corrupt GGUF header")
        item = int(c.unpack("I", 4))
        length = int(c.unpack("Q", 8))
        min_size = scalars[item][1] if item in scalars else 8 if item == int(t.STRING) else 12
        if length > MAX_ARRAY_ITEMS or length * min_size > c.size - c.pos:
            raise ModelFileError(
                f"{c.where}: {key!r} claims {length:,} array items (limit {MAX_ARRAY_ITEMS:,} and the "
                "file's size); corrupt or hostile GGUF header"
            )
        if item in scalars and length <= KEEP_ARRAY_ITEMS:
            return [_value(c, item, key, scalars) for _ in range(length)]
        if item in scalars:
            c.skip(length * scalars[item][1])
        elif item == int(t.STRING):
            c.skip_strings(length)
        elif item == int(t.ARRAY):
            for _ in range(length):
                _value(c, item, key, scalars, depth + 1)
        else:
            raise ModelFileError(f"{c.where}: {key!r} has unknown array item type {item}")
        return ArrayInfo(str(item), length)
    raise ModelFileError(f"{c.where}: {key!r} has unknown value type {vtype}; corrupt GGUF header")


def read_header(path: Path) -> GgufHeader:
    """Walk one GGUF file's header: magic, version, counts, metadata, tensor infos.

    Every count and length is checked against fixed limits and the bytes left in the file
    before it is used, so a garbage or hostile header fails fast with bounded memory.
    """
    gguf = _gguf()
    where = str(path)
    with files.open_regular(path, MAX_FILE_BYTES, "GGUF file", ModelFileError) as (f, size):
        c = _Cursor(f, size, where)
        if size < 24 or c.take(4) != GGUF_MAGIC:
            raise ModelFileError(f"{path}: not a GGUF file (no GGUF magic at the start)")
        version = int(c.unpack("I", 4))
        if version & 0xFFFF == 0 and version:
            c.order = ">"
            version = int.from_bytes(version.to_bytes(4, "little"), "big")
        if version not in (2, 3):
            raise ModelFileError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        n_tensors = int(c.unpack("Q", 8))
        n_kv = int(c.unpack("Q", 8))
        if n_tensors > MAX_TENSORS or n_kv > MAX_KEYS:
            raise ModelFileError(
                f"{path}: GGUF header claims {n_tensors:,} tensors and {n_kv:,} keys "
                f"(limits {MAX_TENSORS:,} and {MAX_KEYS:,}); corrupt or hostile file"
            )
        scalars = _scalar_formats()
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = c.take(c.string_length(MAX_KEY_BYTES, "a metadata key")).decode("utf-8", errors="replace")
            vtype = int(c.unpack("I", 4))
            metadata[key] = _value(c, vtype, key, scalars)
        sizes = gguf.GGML_QUANT_SIZES
        types = gguf.GGMLQuantizationType
        infos: list[tuple[str, str, tuple[int, ...], int, int]] = []
        seen: set[str] = set()
        for _ in range(n_tensors):
            name = c.take(c.string_length(MAX_KEY_BYTES, "a tensor name")).decode("utf-8", errors="replace")
            n_dims = int(c.unpack("I", 4))
            if not 1 <= n_dims <= MAX_DIMS:
                raise ModelFileError(f"{path}: tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS})")
            dims = tuple(int(c.unpack("Q", 8)) for _ in range(n_dims))
            raw_type = int(c.unpack("I", 4))
            offset = int(c.unpack("Q", 8))
            if name in seen:
                raise ModelFileError(f"{path}: tensor {name!r} appears twice; corrupt GGUF header")
            seen.add(name)
            try:
                ggml_type = types(raw_type)
            except ValueError:
                raise ModelFileError(
                    f"{path}: tensor {name!r} has ggml type {raw_type}, unknown to the installed gguf "
                    "package; upgrade it (pip install -U gguf)"
                ) from None
            block, type_size = sizes[ggml_type]
            elements = 1
            for d in dims:
                elements *= d
            if dims[0] % block or elements > 1 << 48:
                raise ModelFileError(
                    f"{path}: tensor {name!r} shape {list(dims)} does not fit {ggml_type.name}"
                )
            infos.append((name, ggml_type.name, dims, elements // block * type_size, offset))
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise ModelFileError(f"{path}: general.alignment {alignment!r} is not a power of two")
        data_offset = -(-c.pos // alignment) * alignment
        tensors = []
        for name, type_name, dims, nbytes, offset in infos:
            if data_offset + offset + nbytes > size:
                raise ModelFileError(
                    f"{path}: truncated GGUF: tensor {name!r} ends at byte {data_offset + offset + nbytes:,} "
                    f"but the file has {size:,}"
                )
            tensors.append(GgufTensor(name, type_name, dims, nbytes))
    return GgufHeader(path, version, metadata, tensors, data_offset, c.bytes_read)


def shard_paths(path: Path) -> list[Path]:
    """All shards of a split GGUF (NAME-00001-of-0000N.gguf ...), or just `path`."""
    m = _SHARD.match(path.name)
    if not m:
        return [path]
    n = int(m.group("n"))
    if n < 1 or n > 1000:
        raise ModelFileError(f"{path}: shard count {n} is not plausible")
    paths = [path.with_name(f"{m.group('base')}-{i:05d}-of-{n:05d}.gguf") for i in range(1, n + 1)]
    missing = [p.name for p in paths if files.kind(p) == "missing"]
    if missing:
        raise ModelFileError(
            f"{path}: split GGUF has {n} shards but {len(missing)} are missing ({', '.join(missing[:3])}); "
            "download every shard"
        )
    return paths


def read_model(path: Path) -> GgufModel:
    """Read every shard's header; metadata from the first, tensors from all."""
    paths = shard_paths(path)
    headers = [read_header(p) for p in paths]
    first = headers[0]
    count = first.metadata.get("split.count")
    if len(paths) > 1 and count not in (None, len(paths)):
        raise ModelFileError(f"{paths[0]}: split.count says {count} shards, the file names say {len(paths)}")
    model = GgufModel(paths, first.metadata)
    names: set[str] = set()
    for h in headers:
        for t in h.tensors:
            if t.name in names:
                raise ModelFileError(f"{h.path}: tensor {t.name!r} is also in another shard")
            names.add(t.name)
            model.tensors.append(t)
        model.bytes_read += h.bytes_read
        model.header_bytes += h.data_offset
    return model


def header_sha256(path: Path, length: int) -> str:
    """sha256 of a file's first `length` bytes (its header), read in chunks."""
    digest = hashlib.sha256()
    with files.open_regular(path, MAX_FILE_BYTES, "GGUF file", ModelFileError) as (f, _):
        left = length
        while left > 0:
            try:
                chunk = f.read(min(left, 1 << 20))
            except OSError as exc:
                raise ModelFileError(f"{path}: cannot read ({files.reason(exc)})") from None
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


# GGUF file types whose tensor-type mix vramcalc does not model, and the modelled mix whose
# per-layer shape is closest (the totals always come from the file itself).
_BASIS = {
    "Q4_K_S": "Q4_K_M",
    "Q5_K_S": "Q5_K_M",
    "Q3_K_S": "Q3_K_M",
    "Q3_K_L": "Q3_K_M",
    "Q2_K": "Q3_K_M",
    "Q2_K_S": "Q3_K_M",
    "Q4_1": "Q4_0",
    "Q5_0": "Q5_K_M",
    "Q5_1": "Q5_K_M",
    "IQ4_NL": "IQ4_XS",
    "BF16": "F16",
    "F32": "F16",
    "ALL_F32": "F16",
}


def file_format(model: GgufModel, stored: StoredWeights) -> WeightFormat:
    """The file's own format: general.file_type's name (e.g. Q4_K_M), else its commonest type."""
    gguf = _gguf()
    raw = model.metadata.get("general.file_type")
    name = None
    if isinstance(raw, int):
        try:
            name = gguf.LlamaFileType(raw).name.removeprefix("MOSTLY_")
        except ValueError:
            name = None
    if name in (None, "GUESSED"):
        name = stored.types[0][0] if stored.types else "F16"
    basis = name if name in GGUF_MIXES else _BASIS.get(name, "Q4_K_M")
    shards = f" ({len(model.paths)} shards)" if len(model.paths) > 1 else ""
    label = f"GGUF {name} as stored in {model.paths[0].name}{shards}"
    return WeightFormat(name, "gguf", label, basis=None if basis == name else basis, stored=stored)


# llama.cpp architecture name -> the Hugging Face model_type vramcalc uses as `family`.
# Source: llama.cpp src/llama-arch.cpp LLM_ARCH_NAMES; convert_hf_to_gguf.py model classes.
ARCH_FAMILY = {
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen2moe": "qwen2_moe",
    "qwen3": "qwen3",
    "qwen3moe": "qwen3_moe",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "phi3": "phi3",
    "deepseek2": "deepseek_v3",
    "gpt-oss": "gpt_oss",
    "llama4": "llama4_text",
}

# Layer patterns llama.cpp hard-codes per architecture (the GGUF carries only the window).
# Source: llama.cpp src/llama-model.cpp load_hparams: gemma2 set_swa_pattern(2), n_swa 4096
# default; gemma3 set_swa_pattern(6); gpt-oss set_swa_pattern(2); llama4 LLAMA_SWA_TYPE_CHUNKED,
# n_swa 8192, set_swa_pattern(4) (3 chunked - 1 full).
_SWA_RULES: dict[str, tuple[str, int, int | None]] = {
    "gemma2": ("sliding", 2, 4096),
    "gemma3": ("sliding", 6, None),
    "gpt-oss": ("sliding", 2, None),
    "llama4": ("chunked", 4, 8192),
}

# The largest value each `{arch}.` count may take (vramcalc.limits); others: MAX_POSITIONS.
_GGUF_BOUNDS = {
    "block_count": lim.MAX_LAYERS,
    "leading_dense_block_count": lim.MAX_LAYERS,
    "interleave_moe_layer_step": lim.MAX_LAYERS,
    "embedding_length": lim.MAX_HIDDEN,
    "feed_forward_length": lim.MAX_INTERMEDIATE,
    "expert_feed_forward_length": lim.MAX_INTERMEDIATE,
    "attention.head_count": lim.MAX_HEADS,
    "attention.head_count_kv": lim.MAX_HEADS,
    "attention.key_length": lim.MAX_HEAD_DIM,
    "attention.value_length": lim.MAX_HEAD_DIM,
    "attention.key_length_mla": lim.MAX_HEAD_DIM,
    "attention.value_length_mla": lim.MAX_HEAD_DIM,
    "rope.dimension_count": lim.MAX_HEAD_DIM,
    "attention.kv_lora_rank": lim.MAX_HIDDEN,
    "attention.q_lora_rank": lim.MAX_HIDDEN,
    "expert_count": lim.MAX_EXPERTS,
    "expert_used_count": lim.MAX_EXPERTS,
    "expert_shared_count": lim.MAX_SHARED_EXPERTS,
}

_LAYER_NAME = re.compile(r"^blk\.([0-9]{1,9})\.(.+)$")


def _pattern(arch: str, meta: dict[str, Any], layers: int, max_pos: int) -> dict[str, Any]:
    window = meta.get(f"{arch}.attention.sliding_window")
    window = window if isinstance(window, int) and window > 0 else None
    per_layer = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(per_layer, list) and len(per_layer) == layers and window:
        from vramcalc.importers.config_json import _pattern_from_types

        types = ["sliding_attention" if s else "full_attention" for s in per_layer]
        return _pattern_from_types(types, window, f"{arch}.attention.sliding_window_pattern")
    if arch in _SWA_RULES:
        kind, period, default = _SWA_RULES[arch]
        if arch == "llama4" and f"{arch}.attention.sliding_window" in meta and not window:
            return {"kind": "all_global"}
        window = default if arch == "llama4" else window or default
        if not window:
            return {"kind": "all_global"}
        if period == 2:
            return {"kind": "alternating", "local_attention": kind, "window_tokens": window, "first": "local"}
        return {
            "kind": "n_local_1_global",
            "local_attention": kind,
            "window_tokens": window,
            "local_per_global": period - 1,
        }
    if window and window < max_pos:
        return {"kind": "all_local", "local_attention": "sliding", "window_tokens": window}
    return {"kind": "all_global"}


def spec_from_gguf(model: GgufModel, *, model_id: str, name: str, source: list[str]) -> tuple[Any, list[str]]:
    """(spec data, warnings) from GGUF metadata and tensor shapes.

    Dimensions come from `{arch}.*` keys; vocabulary, tying, biases, q/k norms, sinks, norms per
    layer and expert widths from the tensors the file holds (token_embd, output, blk.N.*).
    """
    meta = model.metadata
    where = str(model.paths[0])
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{where}: GGUF has no general.architecture")
    warnings: list[str] = []

    def num(key: str, default: int | None = None, required: bool = True) -> int | None:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):
            value = max(value) if value and all(isinstance(v, int) for v in value) else None
        if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
            if required:
                missing.append(f"{arch}.{key}")
            return None
        bound = _GGUF_BOUNDS.get(key, lim.MAX_POSITIONS)
        if value > bound or (required and value == 0):
            raise ModelFileError(
                f"{where}: GGUF {arch}.{key} is {value:,}; it must be "
                + (f"at most {bound:,}" if value else "at least 1")
                + " (corrupt or hostile header)"
            )
        return value

    missing: list[str] = []
    layers = num("block_count")
    hidden = num("embedding_length")
    heads = num("attention.head_count")
    max_pos = num("context_length")
    if missing or not (layers and hidden and heads and max_pos):
        raise ModelFileError(f"{where}: GGUF ({arch}) misses {', '.join(missing)}; cannot size it")
    kv_heads = num("attention.head_count_kv", heads, required=False) or heads
    by_name = {t.name: t for t in model.tensors}
    suffixes: dict[str, GgufTensor] = {}
    for t in model.tensors:
        m = _LAYER_NAME.match(t.name)
        if m and int(m.group(1)) < layers:
            suffixes.setdefault(m.group(2), t)
    embd = by_name.get("token_embd.weight")
    if embd is None or len(embd.dims) < 2:
        raise ModelFileError(f"{where}: GGUF has no token_embd.weight tensor; not a language model file")
    family = ARCH_FAMILY.get(arch)
    if family is None:
        family = arch.replace("-", "_")
        warnings.append(
            f"unknown GGUF architecture {arch!r} (known: {', '.join(sorted(ARCH_FAMILY))}); estimated from "
            "its block_count/embedding_length/head_count keys and tensor shapes as a standard decoder"
        )
    n_experts = num("expert_count", 0, required=False) or 0
    if arch == "llama" and n_experts:
        family = "mixtral"
    if arch == "deepseek2" and "exp_probs_b.bias" not in suffixes:
        family = "deepseek_v2"
    data: dict[str, Any] = {
        "id": model_id,
        "name": name,
        "family": family,
        "architecture": f"GGUF {arch}",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": embd.dims[1],
        "tie_word_embeddings": "output.weight" not in by_name,
        "max_position_embeddings": max_pos,
        "qkv_bias": "attn_q.bias" in suffixes or "attn_qkv.bias" in suffixes,
        "o_bias": "attn_output.bias" in suffixes,
        "qk_norm": "attn_q_norm.weight" in suffixes,
        "attention_sinks": "attn_sinks.weight" in suffixes or "attn_sinks" in suffixes,
        "norms_per_layer": sum(
            1
            for s, t in suffixes.items()
            if s.endswith("norm.weight") and t.dims == (hidden,) and "attn_q" not in s and "attn_k" not in s
        ),
        "layer_pattern": _pattern(arch, meta, layers, max_pos),
        "source": source,
    }
    key_length = num("attention.key_length", None, required=False)
    ffn = num("feed_forward_length", None, required=False)
    if arch == "deepseek2":
        rope = num("rope.dimension_count")
        kv_rank = num("attention.kv_lora_rank")
        q_rank = num("attention.q_lora_rank", 0, required=False) or None
        qk_head = num("attention.key_length_mla", None, required=False) or key_length
        v_head = num("attention.value_length_mla", None, required=False) or num("attention.value_length")
        if missing or not (rope and kv_rank and qk_head and v_head):
            raise ModelFileError(f"{where}: GGUF ({arch}) misses MLA keys {', '.join(missing)}")
        data["mla"] = {
            "kv_lora_rank": kv_rank,
            "q_lora_rank": q_rank,
            "qk_rope_head_dim": rope,
            "qk_nope_head_dim": qk_head - rope,
            "v_head_dim": v_head,
        }
        data["head_dim"] = qk_head
    else:
        data["head_dim"] = key_length or hidden // heads
    if n_experts:
        gate = suffixes.get("ffn_gate_exps.weight") or suffixes.get("ffn_up_exps.weight")
        width = num("expert_feed_forward_length", None, required=False) or (gate.dims[1] if gate else None)
        if not width:
            raise ModelFileError(f"{where}: GGUF ({arch}) has experts but no expert FFN width")
        shexp = suffixes.get("ffn_up_shexp.weight")
        shared = num("expert_shared_count", 1 if shexp else 0, required=False) or 0
        moe: dict[str, Any] = {
            "num_experts": n_experts,
            "experts_per_token": num("expert_used_count"),
            "expert_intermediate_size": width,
            "shared_experts": shared,
            "first_dense_layers": num("leading_dense_block_count", 0, required=False) or 0,
            "router_bias": "ffn_gate_inp.bias" in suffixes,
            "router_score_bias": "exp_probs_b.bias" in suffixes,
            "expert_bias": "ffn_gate_exps.bias" in suffixes or "ffn_up_exps.bias" in suffixes,
            "shared_expert_gate": "ffn_gate_inp_shexp.weight" in suffixes,
        }
        if shexp is not None and shared:
            shared_width = shexp.dims[1] // shared
            if shared_width != width:
                moe["shared_expert_intermediate_size"] = shared_width
        if missing:
            raise ModelFileError(f"{where}: GGUF ({arch}) misses {', '.join(missing)}")
        if (num("interleave_moe_layer_step", 1, required=False) or 1) > 1:
            warnings.append(
                f"{arch}: interleave_moe_layer_step > 1 alternates dense and MoE layers; counted as all MoE"
            )
        data["moe"] = moe
        data["intermediate_size"] = ffn or width
    else:
        dense = suffixes.get("ffn_up.weight")
        data["intermediate_size"] = ffn or (dense.dims[1] if dense else None)
        if not data["intermediate_size"]:
            raise ModelFileError(f"{where}: GGUF ({arch}) misses {arch}.feed_forward_length")
    data["notes"] = [*warnings]
    return data, warnings
