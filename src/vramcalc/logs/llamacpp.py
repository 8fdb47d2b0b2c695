"""Read a llama.cpp startup log (also the runner lines Ollama forwards): model, settings and buffer sizes."""

from __future__ import annotations

import re

from vramcalc.logs.common import DIGITS, NUM, Collector, LogText, after_word, parse_bool, to_bytes
from vramcalc.units import MIB

# llama.cpp prints buffer sizes in MiB (2^20 B) with two decimals.

LLAMACPP_MARKERS = (
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
    "_iswa",  # the sliding-window cache of PR #13194 (llama_kv_cache_unified_iswa, later _iswa)
)
_LLAMACPP_FAILED = (
    r"failed to allocate \S{1,64} buffer",
    r"cudaMalloc failed: out of memory",
    r"unable to allocate \S{1,64} buffer",
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


def read_llamacpp(t: LogText, c: Collector | None = None) -> Collector:
    c = c or Collector(t)
    c.markers += [p for p in LLAMACPP_MARKERS if t.has(p)]
    m = t.last(rf"^build: ({DIGITS}) \((\w{{1,64}})\)")
    if m:
        c.setting("version", f"b{m.group(1)}")
    m = t.last(r"general\.name[ \t]{1,64}(?:str[ \t]{1,64})?=[ \t]{1,64}([^\n]{1,256}?)[ \t]{0,64}$")
    if m:
        c.setting("model", m.group(1))
    m = t.last(
        r"general\.architecture[ \t]{1,64}(?:str[ \t]{1,64})?=[ \t]{1,64}(\S{1,64})",
        after_word("arch") + r"[ \t]{1,64}=[ \t]{1,64}(\S{1,64})",
    )
    if m:
        c.setting("architecture", m.group(1))
    m = t.last(r"(?:model ftype|file type)[ \t]{1,64}=[ \t]{1,64}([^\n]{1,128}?)[ \t]{0,64}$")
    if m:
        c.setting("quant", gguf_ftype_name(m.group(1)))
        c.setting("quant_printed", m.group(1))
    for key in ("n_ctx", "n_ctx_per_seq", "n_seq_max", "n_batch", "n_ubatch"):
        m = t.last(after_word(key) + rf"[ \t]{{0,64}}=[ \t]{{0,64}}({DIGITS})")
        if m:
            c.setting(key, int(m.group(1)))
    m = t.last(
        r"Flash Attention was auto, set to (enabled|disabled)",
        after_word("flash_attn") + r"[ \t]{0,64}=[ \t]{0,64}(\w{1,32})",
    )
    if m:
        c.setting("flash_attn", parse_bool(m.group(1)))
    m = t.last(after_word("kv_unified") + r"[ \t]{0,64}=[ \t]{0,64}(\w{1,32})")
    if m:
        c.setting("kv_unified", parse_bool(m.group(1)))
    m_k = t.last(r"type_k[ \t]{0,64}=[ \t]{0,64}'(\w{1,32})'", rf"K \((\w{{1,32}})\):[ \t]{{0,64}}{NUM} MiB")
    m_v = t.last(r"type_v[ \t]{0,64}=[ \t]{0,64}'(\w{1,32})'", rf"V \((\w{{1,32}})\):[ \t]{{0,64}}{NUM} MiB")
    if m_k:
        c.setting("kv_cache_dtype", m_k.group(1))
    if m_k and m_v and m_k.group(1) != m_v.group(1):
        c.notes.append(f"K cache {m_k.group(1)} and V cache {m_v.group(1)} differ; the K type is modelled")
    # -ot / --cpu-moe / --n-cpu-moe print each expert tensor they move: "tensor blk.3.ffn_up_exps.weight
    # (...) buffer type overriden to CPU" (or "... cannot be used with preferred buffer type CUDA0,
    # using CUDA_Host instead"): the layers whose routed experts stay in RAM.
    moved = {
        int(m.group(1))
        for m in t.all(
            r"blk\.(\d{1,4})\.ffn_(?:gate|up|down|gate_up)_exps\.weight[^\n]{0,256}?(?:overrid|CUDA_Host)"
        )
    }
    if moved:
        c.setting("n_cpu_moe", max(moved) + 1)
    devices = [m.group(1).strip() for m in t.all(r"Device \d{1,4}: ([^\n]{1,256}?), compute capability")]
    devices = devices or [m.group(1) for m in t.all(r"using device \w{1,32} \(([^()\n]{1,256})\)")]
    if devices:
        c.setting("gpu", devices[0])
        if len(set(devices)) > 1 or len(devices) > 1:
            c.notes.append(f"{len(devices)} GPUs in the log; their buffers are summed")

    # Buffers of the last model load (a log may hold several loads).
    loads = list(t.all(r"llama_model_loader: loaded meta data"))
    start = loads[-1].start() if loads else 0
    m = t.last(rf"offloaded ({DIGITS})/({DIGITS}) layers to GPU", start=start)
    if m:
        c.figure("gpu_layers", "offloaded layers to GPU", int(m.group(1)), "layers", m.group(0), m)
        c.setting("n_layers_total", int(m.group(2)))
    # One pass over the "... buffer size = N MiB" lines (literal first, so the scan is fast); the
    # words before it say which buffer: "CUDA0 model", "CUDA0 KV", "CUDA0 compute", or, in builds
    # before mid-2024, "llm_load_tensors:      CUDA0" for the model.
    lines: list[tuple[str, str, str, re.Match[str]]] = []  # (model | KV | compute, device, MiB, match)
    for m in t.all(rf" buffer size[ \t]{{0,64}}=[ \t]{{0,64}}{NUM} (MiB)", start):
        line_start = t.text.rfind("\n", 0, m.start()) + 1
        words = t.text[max(line_start, m.start() - 256) : m.start()].split()
        if len(words) >= 2 and words[-1] in ("model", "KV", "compute"):
            lines.append((words[-1], words[-2], m.group(1), m))
        elif len(words) >= 2 and words[-2].endswith("load_tensors:"):
            lines.append(("model", words[-1], m.group(1), m))
    sums: dict[str, tuple[int, list[str], re.Match[str]]] = {}
    for what, key, on_gpu in (
        ("model", "model_buffer_bytes", True),
        ("model", "host_model_buffer_bytes", False),
        ("KV", "kv_buffer_bytes", True),
        ("compute", "compute_buffer_bytes", True),
    ):
        total, texts, first = 0, [], None
        for kind, name, number, m in lines:
            if kind == what and _is_gpu_buffer(name) == on_gpu:
                total += to_bytes(number, "MiB")
                texts.append(f"{name} {number} MiB")
                first = first or m
        if first is not None:
            sums[key] = (total, texts, first)
    if "kv_buffer_bytes" not in sums:
        # Older builds print only the total: "KV self size  = 2944.00 MiB" (all layers, GPU or not).
        m = t.last(rf"KV self size[ \t]{{0,64}}=[ \t]{{0,64}}{NUM} (MiB)", start=start)
        if m:
            sums["kv_buffer_bytes"] = (to_bytes(m.group(1), "MiB"), [m.group(0)], m)
    gpus = sorted({name for kind, name, _, _ in lines if kind == "model" and _is_gpu_buffer(name)})
    if len(gpus) > 1:
        # Layers split over several GPUs: the sums over the cards, and each card's total (what must
        # fit on it), keyed as the engine model's per-card figures.
        c.setting("n_devices", len(gpus))
        for what, key in (
            ("model", "gpus_model_bytes"),
            ("KV", "gpus_kv_bytes"),
            ("compute", "gpus_compute_bytes"),
        ):
            if (
                gpu_key := {"model": "model_buffer_bytes", "KV": "kv_buffer_bytes"}.get(
                    what, "compute_buffer_bytes"
                )
            ) in sums:
                total, texts, first = sums.pop(gpu_key)
                c.figure(
                    key, f"{what} buffers on the {len(gpus)} GPUs", total, "bytes", " + ".join(texts), first
                )
        for i, name in enumerate(gpus):
            mine = [(number, m) for kind, dev, number, m in lines if dev == name]
            if mine:
                total = sum(to_bytes(number, "MiB") for number, _ in mine)
                text = " + ".join(f"{number} MiB" for number, _ in mine)
                c.figure(
                    f"cuda{i}_total_bytes",
                    f"{name} buffers (model + KV + compute)",
                    total,
                    "bytes",
                    text,
                    mine[0][1],
                )
    for key, (total, texts, first) in sums.items():
        what = {"kv_buffer_bytes": "KV", "compute_buffer_bytes": "compute"}.get(key, "model")
        names = list(dict.fromkeys(text.split()[0] for text in texts))
        label = f"{'/'.join(names)} {what} buffer size" if "size =" not in texts[0] else "KV self size"
        c.figure(key, label, total, "bytes", " + ".join(texts), first)
    device = ("model_buffer_bytes", "kv_buffer_bytes", "compute_buffer_bytes")
    if len(gpus) <= 1 and all(k in sums for k in device):
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
