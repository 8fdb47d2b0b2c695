"""Read vLLM, llama.cpp and Ollama startup logs: the model, settings and memory figures they print."""

from __future__ import annotations

import re

from vramcalc.errors import SpecError
from vramcalc.logs.common import (
    MAX_LOG_BYTES,
    MISSING_HINTS,
    Collector,
    LogFacts,
    LogFigure,
    LogText,
    Setting,
    read_log_file,
)
from vramcalc.logs.llamacpp import LLAMACPP_MARKERS, gguf_ftype_name, read_llamacpp
from vramcalc.logs.ollama import OLLAMA_MARKERS, read_ollama
from vramcalc.logs.vllm import VLLM_MARKERS, read_vllm, vllm_era

__all__ = [
    "MAX_LOG_BYTES",
    "MISSING_HINTS",
    "LogFacts",
    "LogFigure",
    "Setting",
    "detect_engine",
    "gguf_ftype_name",
    "parse_log",
    "read_log_file",
]


def detect_engine(t: LogText) -> str | None:
    """Ollama first (it forwards llama.cpp lines), then vLLM, then llama.cpp."""
    if any(t.has(p) for p in OLLAMA_MARKERS) and re.search(r"level=\w{1,16} source=\S{1,256} msg=", t.text):
        return "ollama"
    if any(t.has(p) for p in VLLM_MARKERS):
        return "vllm"
    if any(t.has(p) for p in LLAMACPP_MARKERS):
        return "llama.cpp"
    return None


_COMPARABLE = {
    "vllm": ("weights_bytes_per_gpu", "activation_peak_bytes", "kv_pool_bytes", "num_gpu_blocks",
             "kv_capacity_tokens", "max_concurrency"),
    "llama.cpp": ("model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes", "gpus_model_bytes"),
    "ollama": ("required_full_bytes", "required_kv_bytes", "weights_total_bytes", "graph_full_bytes",
               "model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes", "gpus_model_bytes"),
}  # fmt: skip


def _missing(engine: str, c: Collector) -> list[str]:
    """Keys of MISSING_HINTS the log does not answer: model, context, gpu, figures."""
    s = c.settings
    out = []
    if not s.get("model"):
        out.append("model")
    if ("max_model_len" if engine == "vllm" else "n_ctx") not in s:
        out.append("context")
    gpu_known = bool(s.get("gpu")) or any(k in c.figures for k in ("cuda_total_bytes", "requested_bytes"))
    if not gpu_known:
        out.append("gpu")
    if not any(k in c.figures for k in _COMPARABLE[engine]):
        out.append("figures")
    return out


def parse_log(text: str, source: str = "the log") -> LogFacts:
    """Recognise the engine, then read its version/era, model, GPU, settings and figures.

    Raises SpecError (one line) when no engine's startup wording is found at all.
    """
    t = LogText(text)
    engine = detect_engine(t)
    if engine is None:
        n_lines = t.n_lines
        raise SpecError(
            f"{source} is not a vLLM, llama.cpp or Ollama startup log: none of their memory lines "
            f"('Model loading took', 'Available KV cache memory', '# GPU blocks', 'model buffer size', "
            f"'msg=offload', 'msg=\"model weights\"') is in its {n_lines:,} lines; paste the engine's output "
            "from start to 'ready'"
        )
    c = {"vllm": read_vllm, "llama.cpp": read_llamacpp, "ollama": read_ollama}[engine](t)
    missing = _missing(engine, c)
    version = c.settings.pop("version", None)
    model = c.settings.pop("model", None)
    gpu = c.settings.pop("gpu", None)
    era: str | None = None
    evidence = ""
    if engine == "vllm":
        era, evidence = vllm_era(t, str(version) if version else None)
    return LogFacts(
        engine=engine,
        version=str(version) if version is not None else None,
        era=era,
        era_evidence=evidence,
        model=str(model) if model else None,
        gpu=str(gpu) if gpu else None,
        settings=dict(c.settings),
        figures=tuple(c.figures.values()),
        missing=tuple(missing),
        markers=tuple(dict.fromkeys(c.markers)),
        notes=tuple(c.notes),
    )
