"""Read vLLM, llama.cpp and Ollama startup logs: the model, settings and memory figures they print.

Units are read strictly, as each engine prints them:

* vLLM prints GiB (bytes / 2^30). Its weights line before ~0.8 says "Loading model weights took
  14.9888 GB", but the figure is bytes / 2^30 too (vllm/worker/model_runner.py divides
  `model_memory_usage` by `float(2**30)`; tests/calibration/measurements.yaml records the same), so
  "GB" on that line, and on "Model loading took", is read as GiB. V0's "memory_usage_post_profile=...Gib"
  typo is GiB as well.
* llama.cpp prints buffer sizes in MiB (2^20 B) with two decimals.
* Ollama's `memory.*` fields use Go `format.HumanBytes2`: B, KiB, MiB, GiB (powers of 1024).

A figure printed with two decimals is only known to half its last digit (0.005 GiB = 5 MiB); the
original text is kept beside every value so the comparison can say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vramcalc.errors import SpecError
from vramcalc.units import GIB, KIB, MIB

# Refuse bigger files without reading them: a startup log is a few hundred KB at most; a 5 MB file
# is a whole day of request logs, where the startup lines may be from several restarts.
MAX_LOG_BYTES = 5 * 10**6

_UNITS = {"B": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB, "Gib": GIB}
_NUM = r"(-?\d+(?:\.\d+)?)"
_INT = r"(\d{1,3}(?:,\d{3})+|\d+)"  # 23648 or 1,215,552
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Setting = int | float | bool | str


@dataclass(frozen=True, slots=True)
class LogFigure:
    """One figure the engine printed, converted to bytes / tokens / a ratio, with its text."""

    key: str  # the vramcalc engine-figure key it is compared with (EngineFigure.key)
    label: str  # the engine's own words
    value: int | float | bool
    unit: str  # "bytes", "tokens", "blocks", "x", "layers" or "" (starts)
    text: str  # as printed, e.g. "3.81GiB", "15868.49 MiB", "1.56x"
    line: int  # 1-based line number in the log (0: derived from several lines)


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What a startup log says: engine, version/era, model, GPU, settings, figures, what it lacks."""

    engine: str  # "vllm" | "llama.cpp" | "ollama"
    version: str | None  # as printed ("0.6.4.post1", "b4589", "0.6.0"), None when not printed
    era: str | None  # vLLM "V0" / "V1" from the log's wording; None when the wording does not tell
    era_evidence: str  # the phrase that decided the era (or why it is unknown)
    model: str | None  # as printed (HF id, path, GGUF general.name)
    gpu: str | None  # as printed ("NVIDIA GeForce RTX 4090")
    settings: dict[str, Setting]  # only what the log states
    figures: tuple[LogFigure, ...]
    missing: tuple[str, ...]  # what a calibration needs but the log does not say (MISSING_HINTS keys)
    markers: tuple[str, ...] = ()  # engine phrases recognised (they decide the era)
    notes: tuple[str, ...] = ()

    def figure(self, key: str) -> LogFigure | None:
        return next((f for f in self.figures if f.key == key), None)

    def missing_hint(self, key: str) -> str:
        """What a missing item (model, context, gpu, figures) is, in this engine's log terms."""
        return MISSING_HINTS[key][self.engine]

    def found(self) -> str:
        """One clause: what was recognised, for error messages."""
        era = f" {self.era}" if self.era else ""
        version = f" {self.version}" if self.version else ""
        parts = [f"{_ENGINE_TITLE[self.engine]}{era}{version} log"]
        if self.model:
            parts.append(f"model {self.model}")
        if self.gpu:
            parts.append(f"GPU {self.gpu}")
        ctx = self.settings.get("max_model_len", self.settings.get("n_ctx"))
        if ctx is not None:
            parts.append(f"{'max_model_len' if self.engine == 'vllm' else 'n_ctx'} {ctx}")
        labels = [f.label for f in self.figures]
        parts.append(f"figures: {', '.join(labels)}" if labels else "no memory figures")
        return "; ".join(parts)


_ENGINE_TITLE = {"vllm": "vLLM", "llama.cpp": "llama.cpp", "ollama": "Ollama"}


def read_log_file(path: Path) -> str:
    """The text of a log file, or a one-line SpecError (missing, directory, empty, binary, > 5 MB).

    The size is checked before reading; at most MAX_LOG_BYTES + 1 bytes are ever read.
    """
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    if path.is_dir():
        raise SpecError(f"{path} is a directory; give the log file itself")
    if not path.is_file():
        raise SpecError(f"{path} is not a regular file; save the log to a file first")
    try:
        size = path.stat().st_size
        if size > MAX_LOG_BYTES:
            raise SpecError(
                f"{path} is {size / 1e6:.1f} MB; calibrate reads startup logs up to "
                f"{MAX_LOG_BYTES / 1e6:.0f} MB: cut out the part from the engine's start to 'ready'"
            )
        with path.open("rb") as fh:
            data = fh.read(MAX_LOG_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_LOG_BYTES:
        raise SpecError(f"{path} grew past {MAX_LOG_BYTES / 1e6:.0f} MB while being read")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{path} is UTF-16 text (PowerShell's > writes it); save the log as UTF-8")
    if b"\x00" in data:
        raise SpecError(f"{path} is binary (it holds NUL bytes), not a text log")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise SpecError(f"{path} is empty")
    return text


# ---------------------------------------------------------------------------------------------
# Matching helpers


class _Text:
    """The log, normalised (no ANSI colours, \\n line ends), with line numbers for match offsets."""

    def __init__(self, raw: str) -> None:
        self.text = _ANSI.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
        self._starts = [0, *(m.end() for m in re.finditer("\n", self.text))]

    def line_of(self, offset: int) -> int:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:  # last line start <= offset
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def all(self, pattern: str, start: int = 0) -> Iterator[re.Match[str]]:
        return re.compile(pattern, re.MULTILINE).finditer(self.text, start)

    def last(self, *patterns: str, start: int = 0) -> re.Match[str] | None:
        """The last match of the first pattern that matches at all (patterns in order of preference)."""
        for pattern in patterns:
            found = None
            for found in self.all(pattern, start):  # noqa: B007 - keep the last
                pass
            if found is not None:
                return found
        return None

    def first(self, pattern: str, start: int = 0) -> re.Match[str] | None:
        return re.compile(pattern, re.MULTILINE).search(self.text, start)

    def has(self, phrase: str) -> bool:
        return phrase in self.text


def _bytes(number: str, unit: str) -> int:
    return round(float(number) * _UNITS[unit])


def _int(text: str) -> int:
    return int(text.replace(",", ""))


class _Collector:
    """Accumulates settings and figures (first writer of a key wins) with their line numbers."""

    def __init__(self, t: _Text) -> None:
        self.t = t
        self.settings: dict[str, Setting] = {}
        self.figures: dict[str, LogFigure] = {}
        self.markers: list[str] = []
        self.notes: list[str] = []

    def setting(self, key: str, value: Setting | None) -> None:
        if value is None or key in self.settings:
            return
        self.settings[key] = value

    def figure(
        self, key: str, label: str, value: int | float | bool, unit: str, text: str, m: re.Match[str] | None
    ) -> None:
        if key not in self.figures:
            line = self.t.line_of(m.start()) if m else 0
            self.figures[key] = LogFigure(key, label, value, unit, text.strip(), line)

    def size(self, key: str, label: str, m: re.Match[str] | None, number: int = 1, unit: int = 2) -> None:
        """A memory figure from groups `number` (value) and `unit` of a match."""
        if m is not None:
            unit_text = m.group(unit)
            if unit_text == "GB":  # vLLM's weights line: bytes / 2^30 printed as "GB" (module docstring)
                unit_text = "GiB"
            self.figure(key, label, _bytes(m.group(number), unit_text), "bytes", m.group(0), m)

    def arg(self, key: str, *names: str, kind: type = int) -> None:
        """`name=value`, `name='value'` or `'name': value` (argparse Namespace, engine config, dict)."""
        for name in names:
            m = self.t.last(rf"(?<![\w.]){re.escape(name)}(?:=|': )'?([\w.\-/:]+)'?")
            if m is None or m.group(1) in ("None", "none", "null"):
                continue
            raw = m.group(1)
            try:
                value: Setting = kind(raw) if kind is not str else raw
            except ValueError:
                continue
            self.setting(key, value)
            return


def _bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "on", "enabled", "yes"):
        return True
    if lowered in ("0", "false", "off", "disabled", "no"):
        return False
    return None  # "auto" and anything else: the engine decides


# ---------------------------------------------------------------------------------------------
# vLLM

# Wording that only one engine generation prints. Source: vllm/worker/worker.py and
# vllm/executor/gpu_executor.py (V0, <= 0.10); vllm/v1/worker/gpu_worker.py and
# vllm/v1/core/kv_cache_utils.py (V1, default since 0.8); engines.md section 1.4.
_VLLM_V0 = (
    "Memory profiling results:",
    "# GPU blocks:",
    "# CUDA blocks:",
    "# cuda blocks:",
    "the rest of the memory reserved for KV Cache",
    "Initializing an LLM engine (",
    "Initializing a V0 LLM engine",
    "Loading model weights took",
    "peak_torch_memory=",
)
_VLLM_V1 = (
    "Initializing a V1 LLM engine",
    "Available KV cache memory",
    "GPU KV cache size:",
    "torch peak memory increase",
    "non-torch forward increase memory",
    "EngineCore",
)
_VLLM_ANY = (*_VLLM_V0, *_VLLM_V1, "vLLM API server version", "Maximum concurrency for", "Model loading took")

# vLLM refuses to start with these (V0 worker/cache_engine checks, V1 kv_cache_utils
# check_enough_kv_cache_memory, gpu_worker request_memory).
_VLLM_REFUSALS = (
    r"max seq len \(\d+\) is larger than the maximum number of tokens that can be stored in KV cache",
    r"To serve at least one request with the models?'s max seq len",
    r"No available memory for the cache blocks",
    r"is less than desired GPU memory utilization",
    r"CUDA out of memory",
)
# Printed only after the KV cache is allocated (graph capture, server up).
_VLLM_STARTED = (
    r"Graph capturing finished",
    r"Application startup complete",
    r"Uvicorn running on",
    r"init engine \(profile, create kv cache, warmup model\) took",
)


def _vllm(t: _Text) -> _Collector:
    c = _Collector(t)
    c.markers = [p for p in _VLLM_ANY if t.has(p)]

    m = t.last(r"vLLM API server version (\S+)", r"Initializing an? (?:V\d )?LLM engine \(v([^)\s]+)\)")
    if m:
        c.setting("version", m.group(1))
    m = t.last(
        r"with config: model='([^']+)'",
        r"(?<![\w.])model='([^']+)'",
        r"'model': '([^']+)'",
        r"(?<![\w.])model_tag='([^']+)'",
        r"'model_tag': '([^']+)'",
        r"Starting to load model (\S+?)(?:\.\.\.)?$",
    )
    if m:
        c.setting("model", m.group(1).strip())
    m = t.last(
        r"max_seq_len=(\d+)",
        r"(?<![\w.])max_model_len=(\d+)",
        r"'max_model_len': (\d+)",
        r"Using max model len (\d+)",
        rf"Maximum concurrency for {_INT} tokens per request",
        r"max seq len \((\d+)\)",
    )
    if m:
        c.setting("max_model_len", _int(m.group(1)))
    m = t.last(
        r"Requested memory: (\d*\.?\d+) \(util\)",
        r"gpu_memory_utilization \((\d*\.?\d+)\)",
        r"(?<![\w.])gpu_memory_utilization(?:=|': )(\d*\.?\d+)",
    )
    if m:
        c.setting("gpu_memory_utilization", float(m.group(1)))
    c.arg("tensor_parallel_size", "tensor_parallel_size")
    c.arg("max_num_seqs", "max_num_seqs")
    c.arg("max_num_batched_tokens", "max_num_batched_tokens")
    m = t.last(r"(?<![\w.])dtype=torch\.(\w+)", r"(?<![\w.])dtype='(\w+)'", r"'dtype': '(\w+)'")
    if m:
        c.setting("dtype", m.group(1))
    c.arg("kv_cache_dtype", "kv_cache_dtype", kind=str)
    c.arg("quantization", "quantization", kind=str)

    # Figures, most precise wording first.
    c.size(
        "weights_bytes_per_gpu",
        "Loading model weights took",
        t.last(rf"Loading model weights took {_NUM} ?(GB|GiB)"),
    )
    c.size("weights_bytes_per_gpu", "Model loading took", t.last(rf"Model loading took {_NUM} ?(GB|GiB)"))
    c.size("weights_bytes_per_gpu", "model weights take", t.last(rf"model weights take {_NUM} ?(GiB)"))
    c.size("weights_bytes_per_gpu", "weights memory", t.last(rf"weights memory: {_NUM} ?(GiB)"))
    weights_fig = c.figures.get("weights_bytes_per_gpu")
    if weights_fig is not None and weights_fig.text.endswith("GB"):
        c.notes.append(f"'{weights_fig.text}': vLLM prints GB but divides by 2^30, so it is read as GiB")
    c.size(
        "cuda_total_bytes",
        "total_gpu_memory",
        t.last(rf"total_gpu_memory={_NUM}(GiB)", rf"total_gpu_memory \({_NUM} ?(GiB)\)"),
    )
    m = t.last(rf"Requested memory: \d*\.?\d+ \(util\), {_NUM} ?(GiB)")
    c.size("requested_bytes", "Requested memory", m)
    m = t.last(rf"gpu_memory_utilization \(\d*\.?\d+\) = {_NUM} ?(GiB)")
    c.size("requested_bytes", "total_gpu_memory x gpu_memory_utilization", m)
    c.size(
        "activation_peak_bytes",
        "torch peak memory increase",
        t.last(rf"torch peak memory increase: {_NUM} ?(GiB)"),
    )
    c.size(
        "activation_peak_bytes",
        "PyTorch activation peak memory takes",
        t.last(rf"PyTorch activation peak memory takes {_NUM} ?(GiB)"),
    )
    peak = t.last(rf"peak_torch_memory={_NUM}(GiB)")
    weights = c.figures.get("weights_bytes_per_gpu")
    if peak is not None and weights is not None and "activation_peak_bytes" not in c.figures:
        # V0 (0.6) prints torch's allocated-bytes peak, weights included (vllm/worker/worker.py
        # determine_num_available_blocks): the activation peak is that minus the weights.
        value = _bytes(peak.group(1), "GiB") - int(weights.value)
        c.figure(
            "activation_peak_bytes",
            f"peak_torch_memory - {weights.label}",
            value,
            "bytes",
            f"{peak.group(0)} - {weights.text}",
            None,
        )
    c.size("non_torch_bytes", "non_torch_memory", t.last(rf"non_torch_memory={_NUM}(GiB)"))
    c.size("non_torch_bytes", "non_torch_memory takes", t.last(rf"non_torch_memory takes {_NUM} ?(GiB)"))
    c.size(
        "non_torch_bytes",
        "non-torch forward increase memory",
        t.last(rf"non-torch forward increase memory: {_NUM} ?(GiB)"),
    )
    c.size(
        "cuda_graph_bytes",
        "Graph capturing finished ... took",
        t.last(rf"Graph capturing finished in \d+(?:\.\d+)? secs?, took {_NUM} ?(GiB)"),
    )
    c.size("kv_pool_bytes", "kv_cache_size", t.last(rf"kv_cache_size={_NUM}(GiB)"))
    c.size("kv_pool_bytes", "reserved for KV Cache", t.last(rf"reserved for KV Cache is {_NUM} ?(GiB)"))
    c.size("kv_pool_bytes", "Available KV cache memory", t.last(rf"Available KV cache memory: {_NUM} ?(GiB)"))
    c.size(
        "kv_pool_bytes",
        "available KV cache memory",
        t.last(rf"larger than the available KV cache memory \({_NUM} ?(GiB)\)"),
    )
    m = t.last(r"# (?:GPU|CUDA|cuda) blocks: (\d+)")
    if m:
        c.figure("num_gpu_blocks", m.group(0).split(":")[0], int(m.group(1)), "blocks", m.group(0), m)
    m = t.last(rf"GPU KV cache size: {_INT} tokens")
    if m:
        c.figure("kv_capacity_tokens", "GPU KV cache size", _int(m.group(1)), "tokens", m.group(0), m)
    m = t.last(
        rf"max seq len \(\d+\) is larger than the maximum number of tokens that can be stored in KV cache \({_INT}\)"
    )
    if m:
        text = f"maximum number of tokens that can be stored in KV cache ({m.group(1)})"
        c.figure(
            "kv_capacity_tokens", "tokens that can be stored in KV cache", _int(m.group(1)), "tokens", text, m
        )
    m = t.last(rf"Maximum concurrency for {_INT} tokens per request: {_NUM} ?x")
    if m:
        label = f"Maximum concurrency for {m.group(1)} tokens per request"
        c.figure("max_concurrency", label, float(m.group(2)), "x", m.group(0).split(": ")[-1], m)

    refusal = next((m for p in _VLLM_REFUSALS if (m := t.last(p))), None)
    started = next((m for p in _VLLM_STARTED if (m := t.last(p))), None)
    concurrency = c.figures.get("max_concurrency")
    if refusal is not None:
        c.figure("starts", "refused to start", False, "", refusal.group(0), refusal)
    elif started is not None:
        c.figure("starts", "started", True, "", started.group(0), started)
    elif concurrency is not None and float(concurrency.value) >= 1:
        # vLLM's own start check: one request of max_model_len must fit in the KV cache.
        c.figure("starts", "Maximum concurrency >= 1", True, "", concurrency.text, None)
    return c


def _vllm_era(t: _Text, version: str | None) -> tuple[str | None, str]:
    explicit = t.last(r"Initializing an? (V\d )?LLM engine")
    if explicit is not None:
        gen = (explicit.group(1) or "V0 ").strip()  # 0.6/0.7 print "an LLM engine": V0
        return gen, explicit.group(0)
    v0 = [p for p in _VLLM_V0 if t.has(p)]
    v1 = [p for p in _VLLM_V1 if t.has(p)]
    if v0 and not v1:
        return "V0", v0[0]
    if v1 and not v0:
        return "V1", v1[0]
    if version is not None:
        numbers = re.match(r"(\d+)\.(\d+)", version)
        if numbers is not None:
            # V1 became the default engine in vLLM 0.8.0.
            return ("V1" if (int(numbers.group(1)), int(numbers.group(2))) >= (0, 8) else "V0"), (
                f"version {version}"
            )
    if v0 and v1:
        return None, f"the log mixes V0 ({v0[0]!r}) and V1 ({v1[0]!r}) wording"
    return None, "no V0- or V1-only wording"


# ---------------------------------------------------------------------------------------------
# llama.cpp (also the lines Ollama forwards from its runner)

_LLAMACPP_ANY = (
    "llama_model_loader:",
    "llm_load_tensors:",
    "load_tensors:",
    "llama_new_context_with_model:",
    "llama_context:",
    "llama_kv_cache",
    "model buffer size",
    "compute buffer size",
    "llm_load_print_meta:",
    "print_info:",
    "ggml_cuda_init:",
)
_LLAMACPP_FAILED = (
    r"failed to allocate \S+ buffer",
    r"cudaMalloc failed: out of memory",
    r"unable to allocate \S+ buffer",
    r"failed to load model",
    r"error loading model",
    r"failed to create context",
)
_LLAMACPP_STARTED = (
    r"server is listening on",
    r"HTTP server listening",
    r"main: model loaded",
    r"all slots are idle",
)

# "Q4_K - Medium" (llama.cpp's llama_model_ftype_name) -> our GGUF format names.
_FTYPE_SIZES = {"Extra Small": "XS", "Small": "S", "Medium": "M", "Large": "L", "Extra Large": "XL"}


def gguf_ftype_name(printed: str) -> str:
    """'Q4_K - Medium' -> 'Q4_K_M', 'mostly Q8_0' -> 'Q8_0', 'F16' -> 'F16' (as vramcalc names them)."""
    text = printed.strip().removeprefix("mostly ").removesuffix("(guessed)").strip()
    base, _, size = text.partition(" - ")
    suffix = _FTYPE_SIZES.get(size.strip(), size.strip().replace(" ", "_"))
    return f"{base.strip()}_{suffix}" if suffix else base.strip()


def _is_gpu_buffer(device: str) -> bool:
    """CUDA0, ROCm0, Metal, Vulkan0 are device buffers; CPU, CPU_Mapped, CUDA_Host are host memory."""
    return not device.startswith("CPU") and not device.endswith("_Host")


def _llamacpp(t: _Text, c: _Collector | None = None) -> _Collector:
    c = c or _Collector(t)
    c.markers += [p for p in _LLAMACPP_ANY if t.has(p)]
    m = t.last(r"^build: (\d+) \((\w+)\)")
    if m:
        c.setting("version", f"b{m.group(1)}")
    m = t.last(r"general\.name\s+(?:str\s+)?=\s+(.+?)\s*$")
    if m:
        c.setting("model", m.group(1))
    m = t.last(r"general\.architecture\s+(?:str\s+)?=\s+(\S+)", r"(?<![\w.])arch\s+=\s+(\S+)")
    if m:
        c.setting("architecture", m.group(1))
    m = t.last(r"(?:model ftype|file type)\s+=\s+(.+?)\s*$")
    if m:
        c.setting("quant", gguf_ftype_name(m.group(1)))
        c.setting("quant_printed", m.group(1))
    for key in ("n_ctx", "n_ctx_per_seq", "n_seq_max", "n_batch", "n_ubatch"):
        m = t.last(rf"(?<![\w.]){key}\s*=\s*(\d+)")
        if m:
            c.setting(key, int(m.group(1)))
    m = t.last(r"Flash Attention was auto, set to (enabled|disabled)", r"(?<![\w.])flash_attn\s*=\s*(\w+)")
    if m:
        c.setting("flash_attn", _bool(m.group(1)))
    m = t.last(r"(?<![\w.])kv_unified\s*=\s*(\w+)")
    if m:
        c.setting("kv_unified", _bool(m.group(1)))
    m_k = t.last(r"type_k\s*=\s*'(\w+)'", r"K \((\w+)\):\s*[\d.]+ MiB")
    m_v = t.last(r"type_v\s*=\s*'(\w+)'", r"V \((\w+)\):\s*[\d.]+ MiB")
    if m_k:
        c.setting("kv_cache_dtype", m_k.group(1))
    if m_k and m_v and m_k.group(1) != m_v.group(1):
        c.notes.append(f"K cache {m_k.group(1)} and V cache {m_v.group(1)} differ; the K type is modelled")
    devices = [m.group(1).strip() for m in t.all(r"Device \d+: (.+?), compute capability")]
    devices = devices or [m.group(1) for m in t.all(r"using device \w+ \((.+?)\)")]
    if devices:
        c.setting("gpu", devices[0])
        if len(set(devices)) > 1 or len(devices) > 1:
            c.notes.append(f"{len(devices)} GPUs in the log; their buffers are summed")

    # Buffers of the last model load (a log may hold several loads).
    loads = list(t.all(r"llama_model_loader: loaded meta data"))
    start = loads[-1].start() if loads else 0
    m = t.last(r"offloaded (\d+)/(\d+) layers to GPU", start=start)
    if m:
        c.figure("gpu_layers", "offloaded layers to GPU", int(m.group(1)), "layers", m.group(0), m)
        c.setting("n_layers_total", int(m.group(2)))
    sums: dict[str, tuple[int, list[str], re.Match[str]]] = {}
    for what, key, on_gpu in (
        ("model", "model_buffer_bytes", True),
        ("model", "host_model_buffer_bytes", False),
        ("KV", "kv_buffer_bytes", True),
        ("compute", "compute_buffer_bytes", True),
    ):
        total, texts, first = 0, [], None
        pattern = rf"(\S+) {what} buffer size\s*=\s*{_NUM} (MiB)"
        if what == "model":  # builds before mid-2024: "llm_load_tensors:      CUDA0 buffer size = ..."
            pattern = rf"(?:(\S+) model|load_tensors:\s+(\S+)) buffer size\s*=\s*{_NUM} (MiB)"
        for m in t.all(pattern, start):
            device, number = (m.group(1) or m.group(2), m.group(3)) if what == "model" else m.group(1, 2)
            if _is_gpu_buffer(device) == on_gpu:
                total += _bytes(number, "MiB")
                texts.append(f"{device} {number} MiB")
                first = first or m
        if first is not None:
            sums[key] = (total, texts, first)
    if "kv_buffer_bytes" not in sums:
        # Older builds print only the total: "KV self size  = 2944.00 MiB" (all layers, GPU or not).
        m = t.last(rf"KV self size\s*=\s*{_NUM} (MiB)", start=start)
        if m:
            sums["kv_buffer_bytes"] = (_bytes(m.group(1), "MiB"), [m.group(0)], m)
    for key, (total, texts, first) in sums.items():
        what = {"kv_buffer_bytes": "KV", "compute_buffer_bytes": "compute"}.get(key, "model")
        names = list(dict.fromkeys(text.split()[0] for text in texts))
        label = f"{'/'.join(names)} {what} buffer size" if "size =" not in texts[0] else "KV self size"
        c.figure(key, label, total, "bytes", " + ".join(texts), first)
    device = ("model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes")
    if all(k in sums for k in device):
        total = sum(sums[k][0] for k in device)
        text = f"{total / MIB:.2f} MiB"
        c.figure("total_bytes", "model + KV + compute buffers", total, "bytes", text, None)

    failed = next((m for p in _LLAMACPP_FAILED if (m := t.last(p, start=start))), None)
    started = next((m for p in _LLAMACPP_STARTED if (m := t.last(p, start=start))), None)
    if failed is not None:
        c.figure("starts", "failed to load", False, "", failed.group(0), failed)
    elif started is not None:
        c.figure("starts", "started", True, "", started.group(0), started)
    return c


# ---------------------------------------------------------------------------------------------
# Ollama

_OLLAMA_ANY = (
    "msg=offload",
    'msg="offload to',
    "memory.required.full",
    'msg="starting llama server"',
    'msg="inference compute"',
    'msg="server config"',
    "llama runner started in",
)
# Fields of Ollama's placement estimate (llm/memory.go, <= 0.29) -> our Ollama figure keys.
_OLLAMA_FIELDS = {
    "memory.required.full": "required_full_bytes",
    "memory.required.partial": "required_partial_bytes",
    "memory.required.kv": "required_kv_bytes",
    "memory.weights.total": "weights_total_bytes",
    "memory.weights.repeating": "weights_repeating_bytes",
    "memory.weights.nonrepeating": "weights_nonrepeating_bytes",
    "memory.graph.full": "graph_full_bytes",
    "memory.graph.partial": "graph_partial_bytes",
}
_KV_PAIR = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)')
_SIZE = re.compile(rf"^{_NUM} (B|KiB|MiB|GiB)$")


def _ollama_flags(cmd: str) -> dict[str, str]:
    """`--ctx-size 20000 --flash-attn --parallel 1` -> {'--ctx-size': '20000', '--flash-attn': ''}."""
    tokens = cmd.split()
    flags: dict[str, str] = {}
    for i, tok in enumerate(tokens):
        if tok.startswith("-"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            flags[tok] = "" if nxt.startswith("-") else nxt
    return flags


def _ollama(t: _Text) -> _Collector:
    c = _Collector(t)
    c.markers = [p for p in _OLLAMA_ANY if t.has(p)]
    m = t.last(r"\(version ([\w.\-+]+)\)")
    if m:
        c.setting("version", m.group(1))
    m = t.last(r"^time=(\d{4}-\d{2}-\d{2})T")
    if m:
        c.setting("log_date", m.group(1))  # slog timestamps carry the year: a bound on the version
    m = t.last(r'msg="inference compute".*?(?<![\w.])name="([^"]+)"')
    if m:
        c.setting("gpu", m.group(1))
    m = t.last(r'architecture=(\S+) file_type=(\S+) name="([^"]*)"')
    if m:
        c.setting("architecture", m.group(1))
        c.setting("quant", m.group(2))
        c.setting("model", m.group(3) or None)
    m = t.last(r'msg="server config" env="?map\[(.*?)\]')
    if m:
        env = dict(re.findall(r"(OLLAMA_\w+):(\S*)", m.group(1)))
        c.setting("flash_attn", _bool(env.get("OLLAMA_FLASH_ATTENTION", "")))
        c.setting("kv_cache_dtype", env.get("OLLAMA_KV_CACHE_TYPE") or None)
        c.setting(
            "n_seq_max",
            int(env["OLLAMA_NUM_PARALLEL"]) if env.get("OLLAMA_NUM_PARALLEL", "0") != "0" else None,
        )
    m = t.last(r'msg="starting llama server" cmd="(.*)"')
    if m:
        flags = _ollama_flags(m.group(1))
        for key, names in (
            ("n_ctx", ("--ctx-size", "-c")),
            ("n_batch", ("--batch-size", "-b")),
            ("n_ubatch", ("--ubatch-size", "-ub")),
            ("n_seq_max", ("--parallel", "-np")),
            ("n_gpu_layers", ("--n-gpu-layers", "-ngl")),
        ):
            value = next((flags[n] for n in names if flags.get(n, "").isdigit()), None)
            if value is not None:
                c.setting(key, int(value))
        if "--flash-attn" in flags or "-fa" in flags:
            value = flags.get("--flash-attn", flags.get("-fa", ""))
            c.setting("flash_attn", True if value == "" else _bool(value))
        kv = flags.get("--kv-cache-type") or flags.get("--cache-type-k") or flags.get("-ctk")
        c.setting("kv_cache_dtype", kv or None)
    m = t.last(r'msg=(?:offload|"offload[^"\n]*")\s(.*)$')
    if m:
        fields = {k: v.strip('"') for k, v in _KV_PAIR.findall(m.group(1))}
        for name, key in _OLLAMA_FIELDS.items():
            size = _SIZE.match(fields.get(name, ""))
            if size:
                n_bytes = _bytes(size.group(1), size.group(2))
                c.figure(key, name, n_bytes, "bytes", f'{name}="{fields[name]}"', m)
        if fields.get("layers.offload", "").isdigit():
            text = f"layers.offload={fields['layers.offload']}"
            c.figure("layers_offload", "layers.offload", int(fields["layers.offload"]), "layers", text, m)
        if fields.get("layers.model", "").isdigit():
            c.setting("n_layers_total", int(fields["layers.model"]))
        c.setting("library", fields.get("library"))
        c.setting("memory_available", fields.get("memory.available", "").strip("[]") or None)
    if t.has("llama runner process has terminated"):
        m = t.last(r"llama runner process has terminated.*$")
        c.figure("starts", "llama runner process has terminated", False, "", m.group(0) if m else "", m)
    elif (m := t.last(r"llama runner started in [\d.]+ seconds")) is not None:
        c.figure("starts", "llama runner started", True, "", m.group(0), m)

    # The runner's own llama.cpp lines, when Ollama forwards them: settings and names the Ollama
    # lines lack, and its real buffer sizes beside Ollama's estimate (different keys).
    runner = _llamacpp(t, _Collector(t))
    for key, setting in runner.settings.items():
        if key != "version":
            c.setting(key, setting)
    for key, fig in runner.figures.items():
        c.figures.setdefault(key, fig)
    c.notes += runner.notes
    return c


# ---------------------------------------------------------------------------------------------
# Entry point


def detect_engine(t: _Text) -> str | None:
    """Ollama first (it forwards llama.cpp lines), then vLLM, then llama.cpp."""
    if any(t.has(p) for p in _OLLAMA_ANY) and re.search(r"level=\w+ source=\S+ msg=", t.text):
        return "ollama"
    if any(t.has(p) for p in _VLLM_ANY):
        return "vllm"
    if any(t.has(p) for p in _LLAMACPP_ANY):
        return "llama.cpp"
    return None


_COMPARABLE = {
    "vllm": ("weights_bytes_per_gpu", "activation_peak_bytes", "kv_pool_bytes", "num_gpu_blocks",
             "kv_capacity_tokens", "max_concurrency"),
    "llama.cpp": ("model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes"),
    "ollama": ("required_full_bytes", "required_kv_bytes", "weights_total_bytes", "graph_full_bytes",
               "model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes"),
}  # fmt: skip


# What each missing item means, per engine, for the one-line error.
MISSING_HINTS = {
    "model": {
        "vllm": "the model (vLLM's model='...' args or config line; or pass --model)",
        "llama.cpp": "the model (general.name; or pass --model)",
        "ollama": "the model (Ollama's log does not name it: pass --model)",
    },
    "context": {
        "vllm": "max_model_len",
        "llama.cpp": "the context size (n_ctx)",
        "ollama": "the context size (--ctx-size of 'starting llama server', or n_ctx)",
    },
    "gpu": {
        "vllm": "the GPU (vLLM V1 logs neither its name nor its total memory at INFO level: pass --gpu)",
        "llama.cpp": "the GPU (ggml_cuda_init 'Device 0: ...'; or pass --gpu)",
        "ollama": 'the GPU (msg="inference compute" ... name=...; or pass --gpu)',
    },
    "figures": {
        "vllm": "memory figures ('Model loading took', 'Available KV cache memory', '# GPU blocks', ...)",
        "llama.cpp": "buffer sizes ('CUDA0 model/KV/compute buffer size = ... MiB')",
        "ollama": "memory figures (the 'msg=offload ... memory.required.*' line or the runner's buffer sizes)",
    },
}


def _missing(engine: str, c: _Collector) -> list[str]:
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
    t = _Text(text)
    engine = detect_engine(t)
    if engine is None:
        n_lines = len(t.text.splitlines())
        raise SpecError(
            f"{source} is not a vLLM, llama.cpp or Ollama startup log: none of their memory lines "
            f"('Model loading took', 'Available KV cache memory', '# GPU blocks', 'model buffer size', "
            f"'msg=offload') is in its {n_lines:,} lines; paste the engine's output from start to 'ready'"
        )
    c = {"vllm": _vllm, "llama.cpp": _llamacpp, "ollama": _ollama}[engine](t)
    missing = _missing(engine, c)
    version = c.settings.pop("version", None)
    model = c.settings.pop("model", None)
    gpu = c.settings.pop("gpu", None)
    era: str | None = None
    evidence = ""
    if engine == "vllm":
        era, evidence = _vllm_era(t, str(version) if version else None)
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
