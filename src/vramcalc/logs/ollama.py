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
    return c
