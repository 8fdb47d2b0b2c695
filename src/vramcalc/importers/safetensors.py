"""Safetensors headers (8-byte length + JSON) -> stored bytes per tensor, without reading tensor data."""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramcalc.core.formats import StoredWeights
from vramcalc.errors import ModelFileError

# Source: huggingface/safetensors safetensors/src/tensor.rs MAX_HEADER_SIZE = 100_000_000 (the
# reference implementation refuses longer headers).
MAX_HEADER_BYTES = 100_000_000

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
        size = path.stat().st_size
        with path.open("rb") as f:
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
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
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
        raise ModelFileError(f"{path}: tensor {name!r} entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise ModelFileError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ModelFileError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise ModelFileError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    nbytes = offsets[1] - offsets[0]
    expected = math.ceil(math.prod(shape) * DTYPE_BITS[dtype] / 8)
    if nbytes != expected:
        raise ModelFileError(
            f"{path}: tensor {name!r} claims {nbytes:,} bytes but {dtype} {shape} needs {expected:,}; "
            "the header is corrupt"
        )
    return StoredTensor(name, dtype, tuple(shape), nbytes)


def checkpoint_files(folder: Path) -> list[Path]:
    """The .safetensors files of one checkpoint: the index's weight_map when there is one, else
    every model*.safetensors (consolidated.safetensors only when there is nothing else)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            weight_map = data["weight_map"]
            names = sorted({str(v) for v in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"{index}: not a valid safetensors index ({exc})") from exc
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ModelFileError(
                f"{index}: lists {len(names)} files but {len(missing)} are missing (e.g. {missing[0]}); "
                "finish the download or remove the index"
            )
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    preferred = [f for f in files if not f.name.startswith("consolidated")]
    return preferred or files


_VISION = re.compile(r"vision|visual|image|mm_proj|multi_modal|audio")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|blk)\.(\d+)\.")
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
