"""Read an Ollama server log: its placement estimate, settings, and the runner's llama.cpp lines."""

from __future__ import annotations

import re

from vramcalc.logs.common import NUM, Collector, LogText, after_word, is_int, parse_bool, to_bytes
from vramcalc.logs.llamacpp import read_llamacpp

# Ollama's `memory.*` fields use Go `format.HumanBytes2`: B, KiB, MiB, GiB (powers of 1024).

OLLAMA_MARKERS = (
    "msg=offload",
    'msg="offload to',
    "memory.required.full",
    'msg="starting llama server"',
    'msg="inference compute"',
    'msg="server config"',
    "llama runner started in",
    'msg="model weights"',  # the new memory layout's per-device lines (0.11-0.29)
    'msg="total memory"',
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
# key=value or key="quoted \"value\"" (slog text); a key starts after a non-key character.
_KV_PAIR = re.compile(r'(?<![\w.])([\w.]{1,128})=("(?:[^"\\\n]|\\.){0,4096}"|\S{1,4096})')
_QUOTED = r'"((?:[^"\\\n]|\\.){0,16384})"'  # a slog quoted value, up to a line's length
_SIZE = re.compile(rf"^{NUM} (B|KiB|MiB|GiB)$")


def _ollama_flags(cmd: str) -> dict[str, str]:
    """`--ctx-size 20000 --flash-attn --parallel 1` -> {'--ctx-size': '20000', '--flash-attn': ''}."""
    tokens = cmd.split()
    flags: dict[str, str] = {}
    for i, tok in enumerate(tokens):
        if tok.startswith("-"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            flags[tok] = "" if nxt.startswith("-") else nxt
    return flags


def read_ollama(t: LogText) -> Collector:
    c = Collector(t)
    c.markers = [p for p in OLLAMA_MARKERS if t.has(p)]
    m = t.last(r"\(version ([\w.\-+]{1,64})\)")
    if m:
        c.setting("version", m.group(1))
    m = t.last(r"^time=(\d{4}-\d{2}-\d{2})T")
    if m:
        c.setting("log_date", m.group(1))  # slog timestamps carry the year: a bound on the version
    m = t.last_line('msg="inference compute"', after_word("name") + r'="([^"\n]{1,256})"')
    if m:
        c.setting("gpu", m.group(1))
    m = t.last(r'architecture=(\S{1,64}) file_type=(\S{1,64}) name="([^"\n]{0,256})"')
    if m:
        c.setting("architecture", m.group(1))
        c.setting("quant", m.group(2))
        c.setting("model", m.group(3) or None)
    m = t.last_line('msg="server config"', r'env="?map\[([^\]\n]{0,16384})\]')
    if m:
        env = dict(re.findall(r"(OLLAMA_\w{1,64}):(\S{0,256})", m.group(1)))
        c.setting("flash_attn", parse_bool(env.get("OLLAMA_FLASH_ATTENTION", "")))
        c.setting("kv_cache_dtype", env.get("OLLAMA_KV_CACHE_TYPE") or None)
        c.setting(
            "n_seq_max",
            int(env["OLLAMA_NUM_PARALLEL"])
            if is_int(env.get("OLLAMA_NUM_PARALLEL", "0").lstrip("0"))
            else None,
        )
    m = t.last_line('msg="starting llama server"', "cmd=" + _QUOTED)
    if m:
        flags = _ollama_flags(m.group(1))
        for key, names in (
            ("n_ctx", ("--ctx-size", "-c")),
            ("n_batch", ("--batch-size", "-b")),
            ("n_ubatch", ("--ubatch-size", "-ub")),
            ("n_seq_max", ("--parallel", "-np")),
            ("n_gpu_layers", ("--n-gpu-layers", "-ngl")),
        ):
            value = next((flags[n] for n in names if is_int(flags.get(n, ""))), None)
            if value is not None:
                c.setting(key, int(value))
        if "--flash-attn" in flags or "-fa" in flags:
            value = flags.get("--flash-attn", flags.get("-fa", ""))
            c.setting("flash_attn", True if value == "" else parse_bool(value))
        kv = flags.get("--kv-cache-type") or flags.get("--cache-type-k") or flags.get("-ctk")
        c.setting("kv_cache_dtype", kv or None)
    m = t.last(r'msg=(?:offload|"offload[^"\n]{0,256}")\s([^\n]*)$')
    if m:
        fields = {k: v.strip('"') for k, v in _KV_PAIR.findall(m.group(1))}
        for name, key in _OLLAMA_FIELDS.items():
            size = _SIZE.match(fields.get(name, ""))
            if size:
                n_bytes = to_bytes(size.group(1), size.group(2))
                c.figure(key, name, n_bytes, "bytes", f'{name}="{fields[name]}"', m)
        if is_int(fields.get("layers.offload", "")):
            text = f"layers.offload={fields['layers.offload']}"
            c.figure("layers_offload", "layers.offload", int(fields["layers.offload"]), "layers", text, m)
        if is_int(fields.get("layers.model", "")):
            c.setting("n_layers_total", int(fields["layers.model"]))
        c.setting("library", fields.get("library"))
        c.setting("memory_available", fields.get("memory.available", "").strip("[]") or None)
        split = [x for x in fields.get("layers.split", "").split(",") if x.strip()]
        if len(split) > 1:
            c.setting("n_devices", len(split))  # layers.split=11,11,11,11: one count per GPU
    if t.has("llama runner process has terminated"):
        m = t.last(r"llama runner process has terminated[^\n]*$")
        c.figure("starts", "llama runner process has terminated", False, "", m.group(0) if m else "", m)
    elif (m := t.last(rf"llama runner started in {NUM} seconds")) is not None:
        c.figure("starts", "llama runner started", True, "", m.group(0), m)

    # The runner's own llama.cpp lines, when Ollama forwards them: settings and names the Ollama
    # lines lack, and its real buffer sizes beside Ollama's estimate (different keys).
    runner = read_llamacpp(t, Collector(t))
    for key, setting in runner.settings.items():
        if key != "version":
            c.setting(key, setting)
    for key, fig in runner.figures.items():
        c.figures.setdefault(key, fig)
    c.notes += runner.notes
    _device_lines(t, c)
    return c


# Source: ollama ml/device.go BackendMemory.Log (from the new memory layout, 0.11 on, until 0.29):
# 'msg="model weights" device=CUDA0 size="18.5 GiB"', 'msg="kv cache" device=...', 'msg="compute
# graph" device=...' per device, then 'msg="total memory" size=...'; July 2025 builds print the
# weights as 'buffer=CUDA0' and the graph as 'backend=CUDA0 buffer_type=CUDA0' (ml/backend/ggml).
# The sizes are format.HumanBytes2 (one decimal). The runner's own llama.cpp lines, when forwarded,
# are more precise and win; the last layout the log prints is the one loaded.
_DEVICE_LINE = re.compile(
    r'msg="(model weights|kv cache|compute graph)"[^\n]{0,256}?\b(?:device|buffer|backend)=("[^"\n]{1,128}"|\S{1,128})'
    r'[^\n]{0,256}?\bsize="([^"\n]{1,32})"'
)
_DEVICE_KEYS = {
    "model weights": "model_buffer_bytes",
    "kv cache": "kv_buffer_bytes",
    "compute graph": "compute_buffer_bytes",
}


def _device_lines(t: LogText, c: Collector) -> None:
    totals = list(t.all(r'msg="total memory"'))
    start = totals[-2].end() if len(totals) > 1 else 0
    sums: dict[str, tuple[int, list[str], re.Match[str]]] = {}
    for m in t.all(_DEVICE_LINE.pattern, start):
        size = _SIZE.match(m.group(3))
        if size is None:
            continue
        device = m.group(2).strip('"')
        on_gpu = not device.upper().startswith("CPU")
        key = (
            _DEVICE_KEYS[m.group(1)]
            if on_gpu
            else "host_model_buffer_bytes"
            if m.group(1) == "model weights"
            else ""
        )
        if not key:
            continue  # KV and graph on the CPU: no figure of ours
        total, texts, first = sums.get(key, (0, [], m))
        sums[key] = (
            total + to_bytes(size.group(1), size.group(2)),
            [*texts, f'{device} size="{m.group(3)}"'],
            first,
        )
    labels = {
        "model_buffer_bytes": 'msg="model weights" (GPUs)',
        "host_model_buffer_bytes": 'msg="model weights" device=CPU',
        "kv_buffer_bytes": 'msg="kv cache" (GPUs)',
        "compute_buffer_bytes": 'msg="compute graph" (GPUs)',
    }
    for key, (total, texts, first) in sums.items():
        c.figure(key, labels[key], total, "bytes", " + ".join(texts), first)
    gpu = ("model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes")
    if sums and all(k in sums for k in gpu) and "total_bytes" not in c.figures:
        texts = [t_ for k in gpu for t_ in sums[k][1]]
        c.figure(
            "total_bytes",
            "model + KV + compute (GPUs)",
            sum(sums[k][0] for k in gpu),
            "bytes",
            " + ".join(texts),
            None,
        )
