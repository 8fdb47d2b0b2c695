"""Read a vLLM (V0 or V1) startup log: version, era, model, settings and memory figures."""

from __future__ import annotations

import re

from vramcalc.logs.common import DIGITS, INT, NUM, Collector, LogText, after_word, parse_int, to_bytes

# vLLM prints GiB (bytes / 2^30). Its weights line before ~0.8 says "Loading model weights took
# 14.9888 GB", but the figure is bytes / 2^30 too (vllm/worker/model_runner.py divides
# `model_memory_usage` by `float(2**30)`; tests/calibration/measurements.yaml records the same), so
# "GB" on that line, and on "Model loading took", is read as GiB. V0's "memory_usage_post_profile=...Gib"
# typo is GiB as well.

_UTIL = r"\d{0,20}\.?\d{1,20}(?!\d)"  # 0.9, .9, 1

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
    "Memory after warmup:",
    "GPU KV cache size:",
    "torch peak memory increase",
    "non-torch forward increase memory",
    "EngineCore",
)
# V0 wording of PR #10511's memory profiling (v0.6.5 and later); 0.6.4 printed "Memory profiling
# results: total_gpu_memory=... initial_memory_usage=...".
VLLM_V0_BASELINE = ("non_torch_memory takes", "Memory profiling results, duration=")
VLLM_MARKERS = (
    *_VLLM_V0,
    *_VLLM_V1,
    *VLLM_V0_BASELINE,
    "vLLM API server version",
    "Maximum concurrency for",
    "Model loading took",
)

# vLLM refuses to start with these (V0 worker/cache_engine checks, V1 kv_cache_utils
# check_enough_kv_cache_memory, gpu_worker request_memory).
_VLLM_REFUSALS = (
    r"max seq len \(\d{1,20}\) is larger than the maximum number of tokens that can be stored in KV cache",
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


def read_vllm(t: LogText) -> Collector:
    c = Collector(t)
    c.markers = [p for p in VLLM_MARKERS if t.has(p)]

    m = t.last(
        r"vLLM API server version (\S{1,64})", r"Initializing an? (?:V\d )?LLM engine \(v([^)\s]{1,64})\)"
    )
    if m:
        c.setting("version", m.group(1))
    m = t.last(
        r"with config: model='([^'\n]{1,1024})'",
        after_word("model") + r"='([^'\n]{1,1024})'",
        r"'model': '([^'\n]{1,1024})'",
        after_word("model_tag") + r"='([^'\n]{1,1024})'",
        r"'model_tag': '([^'\n]{1,1024})'",
        r"Starting to load model (\S{1,1024}?)(?:\.\.\.)?$",
    )
    if m:
        c.setting("model", m.group(1).strip())
    m = t.last(
        rf"max_seq_len=({DIGITS})",
        after_word("max_model_len") + rf"=({DIGITS})",
        rf"'max_model_len': ({DIGITS})",
        rf"Using max model len ({DIGITS})",
        rf"Maximum concurrency for {INT} tokens per request",
        rf"max seq len \(({DIGITS})\)",
    )
    if m:
        c.setting("max_model_len", parse_int(m.group(1)))
    m = t.last(
        rf"Desired GPU memory utilization is \(({_UTIL}), ",
        rf"Requested memory: ({_UTIL}) \(util\)",
        rf"gpu_memory_utilization \(({_UTIL})\)",
        after_word("gpu_memory_utilization") + rf"(?:=|': )({_UTIL})",
    )
    if m:
        c.setting("gpu_memory_utilization", float(m.group(1)))
    c.arg("tensor_parallel_size", "tensor_parallel_size")
    c.arg("max_num_seqs", "max_num_seqs")
    c.arg("max_num_batched_tokens", "max_num_batched_tokens")
    m = t.last(
        after_word("dtype") + r"=torch\.(\w{1,32})",
        after_word("dtype") + r"='(\w{1,32})'",
        r"'dtype': '(\w{1,32})'",
    )
    if m:
        c.setting("dtype", m.group(1))
    c.arg("kv_cache_dtype", "kv_cache_dtype", kind=str)
    c.arg("quantization", "quantization", kind=str)
    # Source: vllm/v1/sample/ops/topk_topp_sampler.py logs the top-k/top-p path it takes.
    if t.has("Using FlashInfer for top-p & top-k sampling"):
        c.setting("sampler", "flashinfer")
    elif t.has("Falling back to the PyTorch-native implementation of top-p & top-k sampling"):
        c.setting("sampler", "pytorch")
    # Source: vllm/distributed/device_communicators/custom_all_reduce.py warns when the ranks cannot
    # reach each other peer to peer, or sit on different nodes: NCCL's buffers are then host memory
    # (vllm_engine.default_p2p). Its "more than two PCIe-only GPUs" warning is about itself alone.
    # Terminal captures wrap these long lines, so the reason is read with the whitespace taken out.
    for m in t.all(r"Custom allreduce is disabled"):
        reason = "".join(t.text[m.end() : m.end() + 120].split())
        if reason.startswith(("becauseyourplatformlacksGPUP2P", "becausethisprocessgroupspansacrossnodes")):
            c.setting("gpu_p2p", False)
            break
    # Source: vllm/model_executor/layers/quantization/mxfp4.py get_mxfp4_backend logs the MoE kernel
    # ("Using Marlin backend", "Using Triton backend" from mxfp4.py, "Using FlashInfer MXFP4 ...");
    # marlin_utils_fp4.py warns when Marlin serves FP4 weights on a GPU without FP4 hardware. The
    # attention backend's "Using Triton backend on V1 engine" (cuda.py) is another line.
    if t.has("marlin_utils_fp4") or t.has("Using Marlin backend"):
        c.setting("mxfp4_backend", "marlin")
    elif t.has("Using FlashInfer MXFP4"):
        c.setting("mxfp4_backend", "flashinfer")
    elif t.last(r"mxfp4\.py:\d+\] Using Triton backend"):
        c.setting("mxfp4_backend", "triton")

    # Figures, most precise wording first.
    c.size(
        "weights_bytes_per_gpu",
        "Loading model weights took",
        t.last(rf"Loading model weights took {NUM} ?(GB|GiB)"),
    )
    c.size("weights_bytes_per_gpu", "Model loading took", t.last(rf"Model loading took {NUM} ?(GB|GiB)"))
    c.size("weights_bytes_per_gpu", "model weights take", t.last(rf"model weights take {NUM} ?(GiB)"))
    c.size("weights_bytes_per_gpu", "weights memory", t.last(rf"weights memory: {NUM} ?(GiB)"))
    weights_fig = c.figures.get("weights_bytes_per_gpu")
    if weights_fig is not None and weights_fig.text.endswith("GB"):
        c.notes.append(f"'{weights_fig.text}': vLLM prints GB but divides by 2^30, so it is read as GiB")
    c.size(
        "cuda_total_bytes",
        "total_gpu_memory",
        t.last(rf"total_gpu_memory={NUM}(GiB)", rf"total_gpu_memory \({NUM} ?(GiB)\)"),
    )
    m = t.last(rf"Requested memory: {_UTIL} \(util\), {NUM} ?(GiB)")
    c.size("requested_bytes", "Requested memory", m)
    m = t.last(rf"gpu_memory_utilization \({_UTIL}\) = {NUM} ?(GiB)")
    c.size("requested_bytes", "total_gpu_memory x gpu_memory_utilization", m)
    c.size(
        "activation_peak_bytes",
        "torch peak memory increase",
        t.last(rf"torch peak memory increase: {NUM} ?(GiB)"),
    )
    c.size(
        "activation_peak_bytes",
        "PyTorch activation peak memory takes",
        t.last(rf"PyTorch activation peak memory takes {NUM} ?(GiB)"),
    )
    peak = t.last(rf"peak_torch_memory={NUM}(GiB)")
    weights = c.figures.get("weights_bytes_per_gpu")
    if peak is not None and weights is not None and "activation_peak_bytes" not in c.figures:
        # V0 (0.6) prints torch's allocated-bytes peak, weights included (vllm/worker/worker.py
        # determine_num_available_blocks): the activation peak is that minus the weights.
        value = to_bytes(peak.group(1), "GiB") - int(weights.value)
        c.figure(
            "activation_peak_bytes",
            f"peak_torch_memory - {weights.label}",
            value,
            "bytes",
            f"{peak.group(0)} - {weights.text}",
            None,
        )
    c.size("non_torch_bytes", "non_torch_memory", t.last(rf"non_torch_memory={NUM}(GiB)"))
    c.size("non_torch_bytes", "non_torch_memory takes", t.last(rf"non_torch_memory takes {NUM} ?(GiB)"))
    c.size(
        "non_torch_bytes",
        "non-torch forward increase memory",
        t.last(rf"non-torch forward increase memory: {NUM} ?(GiB)"),
    )
    c.size(
        "cuda_graph_bytes",
        "Graph capturing finished ... took",
        t.last(rf"Graph capturing finished in \d{{1,20}}(?:\.\d{{1,20}})? secs?, took {NUM} ?(GiB)"),
    )
    # Source: vllm/v1/worker/gpu_worker.py (0.10.2 on) sums up the budget it found in one line:
    # "Free memory on device (F/T GiB) on startup. Desired GPU memory utilization is (u, R GiB).
    # Actual usage is W GiB for weight, A GiB for peak activation, N GiB for non-torch memory, and
    # G GiB for CUDAGraph memory" (later "W GiB for consumed memory (weights + non-torch)"), then
    # "Current kv cache memory in use is K GiB" (or "K bytes"). Read after the older wordings.
    usage = "Actual usage is "
    c.size(
        "activation_peak_bytes",
        "for peak activation",
        t.last_line(usage, rf"{usage}[^\n]{{0,300}}?{NUM} ?(GiB) for peak activation"),
    )
    c.size(
        "non_torch_bytes",
        "for non-torch memory",
        t.last_line(usage, rf"{usage}[^\n]{{0,300}}?{NUM} ?(GiB) for non-torch memory"),
    )
    consumed = t.last_line(usage, rf"{usage}{NUM} ?(GiB) for consumed memory \(weights \+ non-torch\)")
    weights = c.figures.get("weights_bytes_per_gpu")
    if consumed is not None and weights is not None and "non_torch_bytes" not in c.figures:
        c.figure(
            "non_torch_bytes",
            f"consumed memory (weights + non-torch) - {weights.label}",
            to_bytes(consumed.group(1), "GiB") - int(weights.value),
            "bytes",
            f"{consumed.group(0)} - {weights.text}",
            consumed,
        )
    c.size(
        "cuda_graph_bytes",
        "for CUDAGraph memory",
        t.last_line(usage, rf"{usage}[^\n]{{0,400}}?{NUM} ?(GiB) for CUDAGraph memory"),
    )
    # Source: vllm/v1/worker/extensible_kv_cache.py measure_kv_cache_blocks (0.34+): "Memory after
    # warmup: F GiB free, C GiB committed to the KV cache, T GiB kept for transient activations (...);
    # N KV cache blocks (K GiB) fit within the requested R GiB." is the cache as sized; its
    # "Available KV cache memory" line, printed before warmup, is the tentative plan.
    m = t.last(rf"Memory after warmup: [^\n]{{0,400}}?; ({DIGITS}) KV cache blocks \({NUM} ?(GiB)\)")
    if m:
        c.size("kv_pool_bytes", "Memory after warmup: ... KV cache blocks", m, 2, 3)
        c.figure("num_gpu_blocks", "KV cache blocks (after warmup)", int(m.group(1)), "blocks", m.group(0), m)
        c.size(
            "kv_budget_bytes",
            "Available KV cache memory (before warmup)",
            t.last(rf"Available KV cache memory: {NUM} ?(GiB)"),
        )
    c.size("kv_pool_bytes", "kv_cache_size", t.last(rf"kv_cache_size={NUM}(GiB)"))
    c.size("kv_pool_bytes", "reserved for KV Cache", t.last(rf"reserved for KV Cache is {NUM} ?(GiB)"))
    c.size("kv_pool_bytes", "Available KV cache memory", t.last(rf"Available KV cache memory: {NUM} ?(GiB)"))
    c.size(
        "kv_pool_bytes",
        "available KV cache memory",
        t.last(rf"larger than the available KV cache memory \({NUM} ?(GiB)\)"),
    )
    c.size(
        "kv_pool_bytes",
        "Current kv cache memory in use",
        t.last(rf"Current kv cache memory in use is {NUM} ?(GiB|bytes)"),
    )
    m = t.last(rf"# (?:GPU|CUDA|cuda) blocks: ({DIGITS})")
    if m:
        c.figure("num_gpu_blocks", m.group(0).split(":")[0], int(m.group(1)), "blocks", m.group(0), m)
    m = t.last(rf"GPU KV cache size: {INT} tokens")
    if m:
        c.figure("kv_capacity_tokens", "GPU KV cache size", parse_int(m.group(1)), "tokens", m.group(0), m)
    m = t.last(
        rf"max seq len \({DIGITS}\) is larger than the maximum number of tokens that can be stored in KV cache \({INT}\)"
    )
    if m:
        text = f"maximum number of tokens that can be stored in KV cache ({m.group(1)})"
        c.figure(
            "kv_capacity_tokens",
            "tokens that can be stored in KV cache",
            parse_int(m.group(1)),
            "tokens",
            text,
            m,
        )
    m = t.last(rf"Maximum concurrency for {INT} tokens per request: {NUM} ?x")
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


def vllm_era(t: LogText, version: str | None) -> tuple[str | None, str]:
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
        numbers = re.match(r"([0-9]{1,6})\.([0-9]{1,6})", version)
        if numbers is not None:
            # V1 became the default engine in vLLM 0.8.0.
            return ("V1" if (int(numbers.group(1)), int(numbers.group(2))) >= (0, 8) else "V0"), (
                f"version {version}"
            )
    if v0 and v1:
        return None, f"the log mixes V0 ({v0[0]!r}) and V1 ({v1[0]!r}) wording"
    return None, "no V0- or V1-only wording"
