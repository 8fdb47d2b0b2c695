"""Readers of measured figures: benchmark outputs (vLLM, SGLang, llama-bench, Ollama) as validated values."""

from __future__ import annotations

from vramcalc.readings.bench import MAX_BENCHMARK_BYTES, parse_benchmark, read_benchmark
from vramcalc.readings.common import BenchmarkReading, BenchmarkRun

__all__ = [
    "MAX_BENCHMARK_BYTES",
    "BenchmarkReading",
    "BenchmarkRun",
    "parse_benchmark",
    "read_benchmark",
]
