"""Print how long reading model-file headers takes, how many bytes it reads and its peak memory.

Builds sparse files in a temporary directory (no disk used for the tensor data): a Gemma-3-27B
Q4_K_M GGUF (262,208-token vocabulary, ~16.5 GB) and a Qwen2.5-32B bf16 safetensors (~65 GB).
`--gguf-reader` also times llama.cpp's gguf.GGUFReader on the same GGUF (slow: ~25 s).

    python scripts/bench_importers.py [--gguf-reader]
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.importer_fixtures import hf_tensors, write_gguf, write_safetensors

from vramcalc.catalog import Catalog
from vramcalc.importers import gguf_file, safetensors


def _measure(label: str, size: int, fn: object) -> None:
    times = []
    result = None
    for _ in range(3):
        start = time.perf_counter()
        result = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    tracemalloc.start()  # a separate run: tracing slows Python several-fold
    fn()  # type: ignore[operator]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    read = getattr(result, "bytes_read", None) or getattr(result, "header_bytes", 0)
    print(
        f"{label}: file {size / 1e9:.1f} GB, best {min(times) * 1000:.0f} ms, "
        f"read {read / 2**20:.2f} MiB, peak Python memory {peak / 2**20:.1f} MiB"
    )


def main() -> None:
    cat = Catalog()
    with tempfile.TemporaryDirectory() as tmp:
        [gg] = write_gguf(Path(tmp) / "gemma-3-27b-Q4_K_M.gguf", cat.models.get("gemma-3-27b"), vocab=262_208)
        _measure("GGUF header walk (vramcalc)", gg.stat().st_size, lambda: gguf_file.read_header(gg))
        st = Path(tmp) / "model.safetensors"
        write_safetensors(st, hf_tensors(cat.models.get("qwen2.5-32b")))
        _measure("safetensors header (vramcalc)", st.stat().st_size, lambda: safetensors.read_header(st))
        if "--gguf-reader" in sys.argv:
            import gguf

            start = time.perf_counter()
            gguf.GGUFReader(gg)
            print(f"gguf.GGUFReader on the same GGUF: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
