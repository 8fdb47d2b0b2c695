"""Safetensors headers (8-byte length + JSON) -> stored bytes per tensor, without reading tensor data."""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramcalc import files
from vramcalc.core.formats import StoredWeights
from vramcalc.errors import ModelFileError
from vramcalc.limits import MAX_CHECKPOINT_FILES, MAX_INDEX_BYTES

# Source: huggingface/safetensors safetensors/src/tensor.rs MAX_HEADER_SIZE = 100_000_000 (the
# reference implementation refuses longer headers).
MAX_HEADER_BYTES = 100_000_000
# A file of any size is read for its header only; this bound only says "a size a disk can hold".
MAX_FILE_BYTES = 1 << 50
# Source: ggml/include/ggml.h GGML_MAX_DIMS is 4; safetensors itself has no bound. Elements as
# in gguf_file: 2^48 is far past the largest real tensor (an embedding of ~2^31 elements).
MAX_DIMS = 8
MAX_ELEMENTS = 1 << 48

# Bits per element of each safetensors dtype.
# Source: huggingface/safetensors safetensors/src/tensor.rs Dtype::bitsize.
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
}


@dataclass(frozen=True, slots=True)
class StoredTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    path: Path
    tensors: tuple[StoredTensor, ...]
    header_bytes: int  # bytes read: 8 + the JSON header
    sha256: str  # of those header bytes
    short: bool  # the file is shorter than its tensors claim (partial download or header-only copy)


def read_header(path: Path) -> SafetensorsHeader:
    """Read one .safetensors file's header: u64 little-endian length N, then N bytes of JSON.

    Refuses N above 100 MB or beyond the file; checks each tensor's dtype, shape and
    data_offsets (end - begin = elements x dtype bits / 8). Reads 8 + N bytes and nothing else.
    """
    try:
        with files.open_regular(path, MAX_FILE_BYTES, "safetensors file", ModelFileError) as (f, size):
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise ModelFileError(f"{path}: {size} bytes is too short for a safetensors file")
            (n,) = struct.unpack("<Q", raw_len)
            if n > MAX_HEADER_BYTES:
                raise ModelFileError(
                    f"{path}: safetensors header claims {n:,} bytes (limit {MAX_HEADER_BYTES:,}); "
                    "not a safetensors file or corrupt"
                )
            if 8 + n > size:
                raise ModelFileError(
                    f"{path}: safetensors header claims {n:,} bytes but the file has {size - 8:,} after "
                    "the length; truncated or not a safetensors file"
                )
            raw = f.read(n)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from exc
    header = files.parse_json(raw, f"{path}: safetensors header", "safetensors header", ModelFileError)
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: safetensors header is not a JSON object")
    tensors = []
    data_end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        tensors.append(_tensor(path, name, info))
        data_end = max(data_end, info["data_offsets"][1])
    digest = hashlib.sha256(raw_len + raw).hexdigest()
    return SafetensorsHeader(path, tuple(tensors), 8 + n, digest, 8 + n + data_end > size)


def _tensor(path: Path, name: str, info: Any) -> StoredTensor:
    if not isinstance(info, Mapping):
        raise ModelFileError(f"{path}: tensor {files.short(name)} entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    label = files.short(name)
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise ModelFileError(f"{path}: tensor {label} has unknown dtype {files.short(dtype)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ModelFileError(
            f"{path}: tensor {label} has an invalid shape {files.short(shape)} "
            f"(a list of at most {MAX_DIMS} non-negative integers)"
        )
    elements = 1
    for d in shape:
        elements *= d
    if elements > MAX_ELEMENTS:
        raise ModelFileError(
            f"{path}: tensor {label} shape {files.short(shape)} claims {files.short(elements)} elements "
            f"(limit 2^48); the header is corrupt"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise ModelFileError(f"{path}: tensor {label} has invalid data_offsets {files.short(offsets)}")
    nbytes = offsets[1] - offsets[0]
    expected = -(-elements * DTYPE_BITS[dtype] // 8)
    if nbytes != expected:
        raise ModelFileError(
            f"{path}: tensor {label} claims {nbytes:,} bytes but {dtype} {shape} needs {expected:,}; "
            "the header is corrupt"
        )
    return StoredTensor(name, dtype, tuple(shape), nbytes)


def checkpoint_files(folder: Path) -> list[Path]:
    """The .safetensors files of one checkpoint: the index's weight_map when there is one, else
    every model*.safetensors (consolidated.safetensors only when there is nothing else)."""
    index = folder / "model.safetensors.index.json"
    if files.kind(index) != "missing":
        raw = files.read_bytes(index, MAX_INDEX_BYTES, "safetensors index", ModelFileError)
        data = files.parse_json(raw, str(index), "safetensors index", ModelFileError)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelFileError(
                f"{index}: not a valid safetensors index (weight_map must map tensor names to file names)"
            )
        names = sorted(set(weight_map.values()))
        if len(names) > MAX_CHECKPOINT_FILES:
            raise ModelFileError(f"{index}: names {len(names):,} files (limit {MAX_CHECKPOINT_FILES:,})")
        outside = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts or not n]
        if outside:
            raise ModelFileError(
                f"{index}: weight_map names {files.short(outside[0])}, outside the model directory"
            )
        missing = [files.short(n) for n in names if files.kind(folder / n) == "missing"]
        if missing:
            raise ModelFileError(
                f"{index}: lists {len(names)} files but {len(missing)} are missing (e.g. {missing[0]}); "
                "finish the download or remove the index"
            )
        return [folder / n for n in names]
    found = sorted(folder.glob("*.safetensors"))
    preferred = [f for f in found if not f.name.startswith("consolidated")]
    return preferred or found


_VISION = re.compile(r"vision|visual|image|mm_proj|multi_modal|audio")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|blk)\.([0-9]{1,9})\.")
_EMBED = re.compile(r"embed_tokens\.|(?:^|\.)wte\.|tok_embeddings\.|^token_embd\.")
_OUTPUT = re.compile(r"(?:^|\.)lm_head\.|^output\.weight$")


def stored_weights(
    tensors: Iterable[tuple[str, str, int]], n_layers: int, source: str, count: int | None = None
) -> StoredWeights:
    """Group (name, type, bytes) tensors into the input embedding, output matrix, decoder layers
    and the rest, by Hugging Face / GGUF tensor names."""
    layer_bytes = [0] * n_layers
    embedding = output = total = n = 0
    types: dict[str, int] = {}
    for name, kind, nbytes in tensors:
        n += 1
        total += nbytes
        types[kind] = types.get(kind, 0) + nbytes
        if _VISION.search(name):
            continue
        match = _LAYER.search(name)
        if match and int(match.group(1)) < n_layers:
            layer_bytes[int(match.group(1))] += nbytes
        elif _EMBED.search(name):
            embedding += nbytes
        elif _OUTPUT.search(name):
            output += nbytes
    by_size = tuple(sorted(types.items(), key=lambda kv: -kv[1]))
    return StoredWeights(source, total, embedding, output, tuple(layer_bytes), count or n, by_size)


def dense_format_of(tensors: Sequence[StoredTensor]) -> tuple[str, str]:
    """(name, basis) of an unquantized checkpoint from its 2-D tensors' dominant dtype."""
    counts: dict[str, int] = {}
    for t in tensors:
        if len(t.shape) >= 2:
            counts[t.dtype] = counts.get(t.dtype, 0) + t.nbytes
    dominant = max(counts, key=lambda k: counts[k]) if counts else "BF16"
    return {
        "BF16": ("bf16", "bf16"),
        "F16": ("fp16", "fp16"),
        "F32": ("fp32", "bf16"),
        "F8_E4M3": ("fp8", "fp8"),
    }.get(dominant, (dominant.lower(), "bf16"))
