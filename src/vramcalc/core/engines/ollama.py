"""Ollama: llama.cpp underneath (a vendored runner, from 0.30 upstream llama-server; the Ollama
engine for some architectures), with Ollama's own defaults, placement estimate and batch size.

Versions (shared/reference/engines.md section 3):

* 0.6 - Era A (llm/memory.go estimator, vendored llama.cpp runner): num_ctx 2048 by default,
  OLLAMA_NUM_PARALLEL auto (tries 4), flash attention off unless OLLAMA_FLASH_ATTENTION=1, and
  every layer's KV counted at full length in the estimate.
* 0.12 - Era A as last released in v0.12.10 (llm/memory.go was removed in v0.12.11): num_ctx 4096,
  one slot, gemma3 sliding layers estimated at slots x window + batch (since 0.7), gpt-oss even
  layers at slots x 4096 + batch; flash attention on by default for gemma3, gpt-oss and qwen3.
* 0.30 - Era C (PR #16031): GGML models run in upstream llama-server with --fit (1 GiB free),
  -b = -ub = num_batch chosen automatically, and a default num_ctx by VRAM tier.

Era B (0.12.11-0.29, the Ollama engine's measured layouts) is not modelled separately: those
versions take the 0.12 profile. Versions between two labels behave like the older one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vramcalc.core.engines.base import Engine, EngineFigure, EnginePlan, EngineSettings, EngineView
from vramcalc.core.engines.common import CUDA_CONTEXT_BYTES, version_at_least
from vramcalc.core.engines.llamacpp import (
    CELL_PAD_EAGER,
    CELL_PAD_FLASH,
    FIT_MARGIN_BYTES,
    QUANTIZED_KV,
    Runner,
    buffer_figures,
    check_flash_for_kv,
    compute_margin_bytes,
    device_buffers,
    fit_expert_figures,
    fit_gpu_layers,
    fit_moe_first,
    layer_split,
    runner_plan,
)
from vramcalc.core.estimate import estimate as estimate_memory
from vramcalc.core.estimate import usable_gpu_bytes, weight_bytes
from vramcalc.core.formats import model_tensor_bytes
from vramcalc.core.kv import kv_layers
from vramcalc.core.tensors import tensor_inventory
from vramcalc.errors import SpecError
from vramcalc.units import GIB, MIB, plural

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec

NAME = "ollama"
VERSIONS = ("0.6", "0.12", "0.30")
# num_batch is Ollama's -ub; there is no tensor parallelism (layers are split over GPUs).
SETTINGS = frozenset({"max_num_seqs", "ubatch", "flash_attn"})
# Source: envconfig/config.go OLLAMA_KV_CACHE_TYPE (f16 default, q8_0, q4_0).
KV_DTYPES = ("fp16", "q8_0", "q4_0")

# Source: ml/device.go DeviceInfo.MinimumMemory (formerly discover/gpu.go cudaMinimumMemory):
# 457 MiB reserved per CUDA/ROCm GPU.
MINIMUM_MEMORY_BYTES = 457 * MIB
# Source: envconfig/config.go OLLAMA_GPU_OVERHEAD (bytes per GPU, default 0).
GPU_OVERHEAD_BYTES = 0
# Source: api/types.go DefaultOptions NumBatch 512.
DEFAULT_NUM_BATCH = 512
# Source: fs/ggml/ggml.go kvCacheBytesPerElement (q8_0 1, q4_0 0.5: below llama.cpp's 34/32 and 18/32).
ESTIMATE_KV_BYTES_PER_ELEMENT = {"fp16": 2.0, "q8_0": 1.0, "q4_0": 0.5}
# Source: fs/ggml/ggml.go GGML.GraphSize: gemma3 "every 6th layer is a global layer"; gpt-oss even
# layers sized slots x 4096 + batch.
GEMMA3_GLOBAL_EVERY = 6
GPTOSS_ESTIMATE_WINDOW = 4096
# Source: server/sched.go (llamaServerGenerationBatch* 512/256/1024/2048, headroom 75 % / 60 %,
# load headroom 80 %, surcharge 768 MiB / 2 GiB, llamaServerDefaultFitTargetMiB 1024,
# constrained CUDA cards <= 8 GiB), automaticGenerationBatch.
BATCH_CONSTRAINED = 256
BATCH_MEDIUM = 1024
BATCH_LARGE = 2048
MEDIUM_HEADROOM = 0.75
LARGE_HEADROOM = 0.60
LOAD_HEADROOM = 0.80
MEDIUM_SURCHARGE_BYTES = 768 * MIB
LARGE_SURCHARGE_BYTES = 2 * GIB
CONSTRAINED_CARD_BYTES = 8 * GIB
# Source: server/routes.go Server.Serve: default num_ctx by total VRAM (>= 47 GiB 262144, >= 23 GiB
# 32768, else 4096), clamped to the trained context.
CTX_TIERS = ((47 * GIB, 262144), (23 * GIB, 32768), (0, 4096))

# Families (config model_type) Ollama serves with its own engine, whose cache keeps only the window
# (+ batch) on sliding layers. Source: fs/ggml/ggml.go KV.OllamaEngineRequired (gemma3 since 0.6,
# llama4 since 0.6.6, gpt-oss since 0.11, qwen3 since 0.9, deepseek2 later).
_OLLAMA_ENGINE_06 = frozenset({"gemma3_text"})
_OLLAMA_ENGINE_12 = frozenset({"gemma3_text", "llama4_text", "gpt_oss", "qwen3", "qwen3_moe"})
_OLLAMA_ENGINE_30 = _OLLAMA_ENGINE_12 | {"deepseek_v3"}
# Source: fs/ggml/ggml.go GGML.FlashAttention (architectures with flash attention on by default).
_FLASH_DEFAULT = frozenset({"gemma3_text", "gpt_oss", "qwen3", "qwen3_moe"})
# Source: fs/ggml/ggml.go SupportsFlashAttention ("gemma2" explicitly unsupported, <= 0.29).
_NO_FLASH = frozenset({"gemma2"})
# GGUF general.architecture of our families, for the per-architecture cases of GGML.GraphSize.
_GGUF_ARCH = {
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "llama4_text": "llama4",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "qwen2": "qwen2",
    "gpt_oss": "gptoss",
}


@dataclass(frozen=True, slots=True)
class _Era:
    llama_server: bool  # Era C: GGML models in upstream llama-server
    default_num_ctx: int  # 0: by VRAM tier
    default_parallel: int
    windowed_estimate: bool  # memory.go credits gemma3 / gpt-oss sliding layers
    ollama_engine: frozenset[str]
    flash_default: frozenset[str]
    streams_per_slot: bool  # the llama.cpp underneath gives each slot its own KV stream


_ERAS = {
    "0.6": _Era(False, 2048, 4, False, _OLLAMA_ENGINE_06, frozenset(), streams_per_slot=False),
    "0.12": _Era(False, 4096, 1, True, _OLLAMA_ENGINE_12, _FLASH_DEFAULT, streams_per_slot=True),
    "0.30": _Era(True, 0, 1, True, _OLLAMA_ENGINE_30, _FLASH_DEFAULT, streams_per_slot=True),
}


def _era(version: str) -> _Era:
    known = [v for v in VERSIONS if version_at_least(version, v)]
    return _ERAS[known[-1] if known else VERSIONS[0]]


def default_num_ctx(m: ModelSpec, gpu: GpuSpec | None, version: str) -> int:
    """Ollama's num_ctx when neither the request, the Modelfile nor OLLAMA_CONTEXT_LENGTH sets it."""
    era = _era(version)
    if era.default_num_ctx:
        return era.default_num_ctx
    total = usable_gpu_bytes(gpu)[0] - GPU_OVERHEAD_BYTES if gpu is not None else 0
    tier = next(ctx for floor, ctx in CTX_TIERS if total >= floor)
    return min(tier, m.max_position_embeddings)


def preflight_bytes(m: ModelSpec, fmt: WeightFormat, ctx_tokens: int) -> int:
    """llm/llama_server.go PredictServerVRAM: GGUF file size + 2 x layers x min KV heads x
    (embedding / heads) x context x 2 B (hidden/heads as head_dim, no sliding-window credit)."""
    head_dim = m.hidden_size // m.num_attention_heads
    kv = 2 * m.num_hidden_layers * m.num_key_value_heads * head_dim * ctx_tokens * 2
    return weight_bytes(m, fmt).checkpoint_bytes + kv


def _batch_fits(batch: int, predicted: int, available: int) -> bool:
    # Source: server/sched.go generationBatchFits / generationBatchHasHeadroom.
    if predicted == 0 or available == 0:
        return True
    threshold = int(available * LOAD_HEADROOM)
    if predicted > threshold:
        return False
    headroom = LARGE_HEADROOM if batch >= BATCH_LARGE else MEDIUM_HEADROOM
    if predicted > available * headroom:
        return False
    surcharge = LARGE_SURCHARGE_BYTES if batch >= BATCH_LARGE else MEDIUM_SURCHARGE_BYTES
    return surcharge <= threshold - predicted


def automatic_num_batch(
    m: ModelSpec, fmt: WeightFormat, effective_ctx: int, gpu: GpuSpec | None, flash_attn: bool
) -> tuple[int, int, int]:
    """(num_batch, preflight bytes, available bytes) as server/sched.go automaticGenerationBatch picks it.

    512 up to 4096 context tokens (all slots), 1024 above, 2048 above 32768; each step falls back
    while the preflight exceeds 75 % (1024) / 60 % (2048) of the available memory or the surcharge
    does not fit under 80 %. Without flash attention on CUDA: 512 (256 on cards <= 8 GiB above 4096).
    Available = free memory - MinimumMemory - max(OLLAMA_GPU_OVERHEAD, fit target 1024 MiB).
    """
    predicted = preflight_bytes(m, fmt, effective_ctx)
    free = usable_gpu_bytes(gpu)[0] if gpu is not None else 0
    reserve = MINIMUM_MEMORY_BYTES + max(GPU_OVERHEAD_BYTES, FIT_MARGIN_BYTES)
    available = max(0, free - reserve) if gpu is not None else 0
    if not flash_attn and (gpu is None or gpu.vendor == "NVIDIA"):
        constrained = effective_ctx > 4096 and 0 < free <= CONSTRAINED_CARD_BYTES
        return (BATCH_CONSTRAINED if constrained else DEFAULT_NUM_BATCH), predicted, available
    batch = (
        BATCH_LARGE if effective_ctx > 32768 else BATCH_MEDIUM if effective_ctx > 4096 else DEFAULT_NUM_BATCH
    )
    while batch > DEFAULT_NUM_BATCH and not _batch_fits(batch, predicted, available):
        batch = BATCH_MEDIUM if batch > BATCH_MEDIUM else DEFAULT_NUM_BATCH
    return batch, predicted, available


def _runner_kind(m: ModelSpec, era: _Era) -> str:
    if m.family in era.ollama_engine:
        return "Ollama engine"
    return "llama-server" if era.llama_server else "llama.cpp runner"


def plan(
    model: ModelSpec,
    workload: Workload,
    fmt: WeightFormat,
    kv_dtype: str,
    gpu: GpuSpec | None,
    settings: EngineSettings,
    version: str,
) -> EnginePlan:
    """Ollama with num_ctx = --ctx per slot and OLLAMA_NUM_PARALLEL = --users: the runner gets
    -c num_ctx x slots -np slots, so every slot holds the full num_ctx."""
    m, w = model, workload
    era = _era(version)
    # OLLAMA_NUM_PARALLEL: one slot per user unless --max-num-seqs caps the slots (the rest queue).
    slots = min(w.users, settings.max_num_seqs or w.users)
    kind = _runner_kind(m, era)
    notes = [
        f"Ollama {version}: {kind} runs {m.family}; num_ctx {w.ctx_tokens:,} per slot, {plural(slots, 'slot')}"
    ]
    flash_supported = era.llama_server or m.family not in _NO_FLASH
    default_flash = (era.llama_server and kind == "llama-server") or m.family in era.flash_default
    flash = default_flash if settings.flash_attn is None else settings.flash_attn
    if flash and not flash_supported:
        flash = False
        notes.append(f"Ollama {version} runs {m.family} without flash attention (SupportsFlashAttention)")
    if kv_dtype in QUANTIZED_KV:
        if not flash_supported:
            raise SpecError(
                f"Ollama {version} cannot use flash attention for {m.family}, so it ignores "
                f"OLLAMA_KV_CACHE_TYPE={kv_dtype} and stores f16 KV; use --kv-dtype fp16"
            )
        if settings.flash_attn is None and not flash:
            flash = True
            notes.append(
                f"OLLAMA_KV_CACHE_TYPE={kv_dtype} takes effect only with flash attention: assumed on"
            )
        check_flash_for_kv(NAME, kv_dtype, flash)
    effective_ctx = min(w.ctx_tokens, m.max_position_embeddings) * slots
    auto_batch = settings.ubatch is None and kind == "llama-server"
    if settings.ubatch is not None:
        num_batch = settings.ubatch
    elif auto_batch:
        num_batch, predicted, available = automatic_num_batch(m, fmt, effective_ctx, gpu, flash)
        notes.append(
            f"num_batch {num_batch} chosen automatically for {effective_ctx:,} context tokens "
            f"(preflight {predicted / GIB:.2f} GiB"
            + (f", available {available / GIB:.2f} GiB)" if gpu is not None else ", no GPU given)")
        )
    else:
        num_batch = DEFAULT_NUM_BATCH
    # The estimate (what the workload needs) is sized at the batch the automatic choice falls back
    # to when memory is short: Ollama keeps 1024 / 2048 only while its preflight leaves headroom,
    # and a context growing past that headroom drops the batch (and the compute buffer) again, so
    # sizing the need at the chosen batch would make a longer context need less. The batch Ollama
    # picks on the given card sizes what it holds there (view()).
    sized_batch = DEFAULT_NUM_BATCH if auto_batch else num_batch
    if sized_batch != num_batch:
        notes.append(
            f"memory needed is sized at num_batch {sized_batch} (where the automatic batch falls back when "
            f"memory is short); Ollama picks {num_batch}"
            + (" on this GPU and holds the larger compute buffer there" if gpu is not None else "")
        )
    if m.family in era.ollama_engine or kind == "llama-server":
        swa_extra: int | None = sized_batch
    else:
        swa_extra = None  # the llama.cpp runner keeps llama_context_default_params' swa_full = true
    runner = Runner(
        engine=NAME,
        version=version,
        slots=slots,
        ctx_per_slot=w.ctx_tokens,
        cell_pad=CELL_PAD_FLASH if flash or era.llama_server else CELL_PAD_EAGER,
        n_batch=sized_batch if kind == "llama-server" else sized_batch * slots,
        n_ubatch=sized_batch,
        flash_attn=flash,
        streams_per_slot=era.streams_per_slot,
        swa_extra_tokens=swa_extra,
        fit=kind == "llama-server",
        fit_margin_bytes=FIT_MARGIN_BYTES if kind == "llama-server" else 0,
    )
    margin = compute_margin_bytes(m, runner.reserve_tokens)
    reserve = MINIMUM_MEMORY_BYTES + GPU_OVERHEAD_BYTES + margin
    default_ctx = default_num_ctx(m, gpu, version)
    if w.ctx_tokens != default_ctx:
        notes.append(
            f"num_ctx {w.ctx_tokens:,} set explicitly (Ollama {version} would default to {default_ctx:,})"
        )
    if slots != era.default_parallel:
        notes.append(
            f"OLLAMA_NUM_PARALLEL={slots} set explicitly (Ollama {version} default: "
            + ("auto, tries 4 slots then 1)" if era.default_parallel == 4 else "1)")
        )
    resolved: dict[str, int | float | bool | str] = {
        "num_ctx": w.ctx_tokens,
        "num_parallel": slots,
        "num_batch": num_batch,
        "num_batch_auto": auto_batch,
        "num_batch_sized": sized_batch,
        "flash_attention": flash,
        "kv_cache_type": "f16" if kv_dtype == "fp16" else kv_dtype,
        "runner": kind,
        "n_ctx": w.ctx_tokens * slots,
    }
    return runner_plan(
        m,
        runner,
        reserve_bytes=reserve,
        reserve_formula=(
            f"MinimumMemory {MINIMUM_MEMORY_BYTES // MIB} MiB + OLLAMA_GPU_OVERHEAD {GPU_OVERHEAD_BYTES} + compute "
            f"buffer beyond the activation peak ({runner.reserve_tokens:,} x {m.hidden_size:,} x 4 B = {margin:,} B) "
            f"= {reserve:,} B"
        ),
        reserve_source=(
            "ml/device.go DeviceInfo.MinimumMemory (457 MiB per CUDA GPU), envconfig OLLAMA_GPU_OVERHEAD (0); "
            "compute margin as for llama.cpp (vramcalc.core.engines.llamacpp.OUTPUT_INPUT_ROWS)"
        ),
        assumptions=notes,
        settings=resolved,
        kv_source=(
            "Ollama engine kvcache (causal cache; sliding layers keep window + batch per sequence, as "
            "recalled, not re-read) with llama.cpp's cell sizes"
            if kind == "Ollama engine"
            else ""
        ),
    )


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Ollama's own estimate (llm/memory.go estimateGPULayers, <= v0.12.10), as its log prints it."""

    kv_bytes: tuple[int, ...]  # memory.required.kv, per layer
    block_bytes: tuple[int, ...]
    output_bytes: int  # output_norm + output (or the tied token_embd)
    graph_full_bytes: int
    graph_partial_bytes: int
    layers_offload: int  # blocks + output layer placed on the GPU
    required_partial_bytes: int  # what it allocates on the GPU (memory.required.partial)
    required_full_bytes: int  # + what did not fit (memory.required.full)

    @property
    def weights_total_bytes(self) -> int:
        """memory.weights.total: blocks with their KV (v0.6 accounting, checked against the record
        ollama-gemma3-27b-q4km-4090-ctx20k-fa-q8kv); the output layer is not in it."""
        return sum(self.block_bytes) + sum(self.kv_bytes)


def _graph_size(
    m: ModelSpec,
    arch: str,
    batch: int,
    ctx: int,
    kv: list[int],
    default_kv_total: int,
    slots: int,
    flash: bool,
) -> tuple[int, int]:
    """(full, partial) offload graph bytes of fs/ggml/ggml.go GGML.GraphSize (Go integer arithmetic)."""
    b, c = batch, ctx
    e, h, d, v = m.hidden_size, m.num_attention_heads, m.head_dim, m.vocab_size
    kvh = m.num_key_value_heads
    full = partial = 0
    if arch in ("llama", "llama4"):
        full = max(4 * b * (1 + 4 * e + c * (1 + h)), 4 * b * (e + v))
        partial = 4 * b * e + max(
            4 * b * (1 + e + max(c, e)) + e * e * 9 // 16 + 4 * c * (b * h + d * kvh),
            4 * b * (e + v) + e * v * 105 // 128,
        )
    elif arch in ("gemma2", "gemma3"):
        full = max(4 * b * (e + v), 4 * b * (2 + c + c * h + 2 * e + 2 * d * h))
        partial = max(
            4 * e * b + e * v * 105 // 128 + 4 * v * b,
            4 * b * (2 * e + 1 + 2 * d * h + c + c * h) + 4 * d * c * 8 + e * d * h * 9 // 16,
        )
    elif arch == "qwen2":
        full = max(4 * b * (e + v), 4 * b * (1 + 2 * e + c + c * h))
        partial = max(4 * b * (e + v) + e * v * 105 // 128, 4 * (b * (1 + 2 * e + c * (1 + h)) + e * (1 + c)))
    elif arch == "gptoss":
        partial = 2 * h // max(kvh, 1) * default_kv_total // 6
        if flash:
            partial = (4 * slots + (c >> 10) + 110) * MIB
    if partial == 0:
        # Source: llm/memory.go: unknown architectures get (heads / kv heads) x KV / 6.
        partial = h // max(kvh, 1) * sum(kv) // 6
    if full == 0:
        full = partial
    return full, partial


def memory_estimate(e: Estimate, version: str, free_bytes: int, gpus: int = 1) -> MemoryEstimate:
    """Reproduce llm/memory.go for `gpus` identical GPUs with `free_bytes` free each (engines.md
    section 3.2; the loop of estimateGPULayers, read in ollama v0.6.0 and v0.12.10).

    KV per layer = ctx x slots x (head_dim_k + head_dim_v) x kv_heads x Ollama's bytes per element;
    each GPU that can hold max(graph) + MinimumMemory + OLLAMA_GPU_OVERHEAD + two layers reserves
    MinimumMemory + one layer (blk.0 + its KV); layers are placed from the last, layer i on GPU
    i mod (GPUs still with room), while free > its allocation + max(graph) + the layer (a GPU
    without room leaves the list); the output layer last; each GPU with layers adds graph_full when
    all fit, graph_partial otherwise (several GPUs always take the partial graph); memory.required.full
    adds what stayed in RAM.
    """
    m, p = e.model, e.plan
    era = _era(version)
    arch = _GGUF_ARCH.get(m.family, m.family)
    slots, num_ctx = int(p.settings["num_parallel"]), int(p.settings["num_ctx"])
    batch = min(num_ctx, int(p.settings["num_batch"]))
    ctx = num_ctx * slots
    bpe = ESTIMATE_KV_BYTES_PER_ELEMENT[e.kv_dtype]
    # Elements per token per layer from the shared KV geometry; Ollama's own part is bytes per element.
    per_token = kv_layers(m)[0].elements_per_token
    n = m.num_hidden_layers
    kv = [int(ctx * per_token * bpe)] * n
    default_kv_total = sum(kv)
    if era.windowed_estimate and arch == "gemma3" and m.layer_pattern.window_tokens is not None:
        local = int((slots * m.layer_pattern.window_tokens + batch) * per_token * bpe)
        kv = [kv[i] if (i + 1) % GEMMA3_GLOBAL_EVERY == 0 else local for i in range(n)]
    elif era.windowed_estimate and arch == "gptoss":
        kv = [
            int(per_token * bpe) * (slots * GPTOSS_ESTIMATE_WINDOW + batch) if i % 2 == 0 else kv[i]
            for i in range(n)
        ]
    full, partial = _graph_size(
        m, arch, batch, ctx, kv, default_kv_total, slots, bool(p.settings["flash_attention"])
    )

    split = layer_split(e)
    blocks = split.layer_weight_bytes
    tensors = tensor_inventory(m)
    final_norm = sum(
        s
        for t, s in zip(tensors, model_tensor_bytes(e.weight_format, m), strict=True)
        if t.layer is None and t.role == "norm"
    )
    output = split.output_bytes + final_norm
    layer = [blocks[i] + kv[i] for i in range(n)]
    if gpus > 1:
        full = partial  # memory.go: "multigpu should always use the partial graph size"
    graph = max(full, partial)
    # A GPU that cannot hold the graph, the reserve and two layers gets nothing (not even the reserve);
    # the others reserve MinimumMemory and one layer (OLLAMA_GPU_OVERHEAD is checked, not allocated).
    included = free_bytes >= GPU_OVERHEAD_BYTES + graph + MINIMUM_MEMORY_BYTES + 2 * layer[0]
    room = list(range(gpus)) if included else []
    alloc = [MINIMUM_MEMORY_BYTES + layer[0] if included else 0 for _ in range(gpus)]
    counts = [0] * gpus
    count = overflow = 0
    for i in reversed(range(n)):
        for j in range(len(room), 0, -1):
            g = room[i % j]
            if free_bytes > GPU_OVERHEAD_BYTES + alloc[g] + graph + layer[i]:
                alloc[g] += layer[i]
                counts[g] += 1
                count += 1
                break
            room.pop(i % j)
        else:
            overflow += layer[i]  # no GPU has room: the layer stays in RAM
    for j in range(len(room), 0, -1):
        g = room[count % j]
        if free_bytes > GPU_OVERHEAD_BYTES + alloc[g] + graph + output:
            alloc[g] += output
            counts[g] += 1
            count += 1
            break
    fully = count == n + 1
    if not fully:
        overflow += output
    for g in range(gpus):
        if counts[g]:
            alloc[g] += full if fully else partial
    placed = sum(alloc)
    return MemoryEstimate(tuple(kv), blocks, output, full, partial, count, placed, placed + overflow)


def _estimate_figures(est: MemoryEstimate, n: int) -> list[EngineFigure]:
    src = "llm/memory.go estimateGPULayers + fs/ggml/ggml.go GraphSize (<= v0.12.10)"
    kv_total = sum(est.kv_bytes)
    return [
        EngineFigure("required_full_bytes", "memory.required.full", est.required_full_bytes, "bytes",
                     "MinimumMemory + blk.0 buffer + layers with KV + output + graph (+ what stays in RAM)", src),
        EngineFigure("required_partial_bytes", "memory.required.partial", est.required_partial_bytes, "bytes",
                     "what Ollama plans to place on the GPU", src),
        EngineFigure("required_kv_bytes", "memory.required.kv", kv_total, "bytes",
                     "ctx x slots x (head_dim_k + head_dim_v) x kv_heads x Ollama bytes per element, per layer", src),
        EngineFigure("weights_total_bytes", "memory.weights.total", est.weights_total_bytes, "bytes",
                     f"blocks {sum(est.block_bytes):,} + their KV {kv_total:,}", src),
        EngineFigure("weights_repeating_bytes", "memory.weights.repeating",
                     est.weights_total_bytes - est.output_bytes, "bytes", "weights.total - nonrepeating", src),
        EngineFigure("weights_nonrepeating_bytes", "memory.weights.nonrepeating", est.output_bytes, "bytes",
                     "output_norm + output (or the tied token_embd)", src),
        EngineFigure("graph_full_bytes", "memory.graph.full", est.graph_full_bytes, "bytes",
                     "GraphSize, all layers on the GPU", src),
        EngineFigure("graph_partial_bytes", "memory.graph.partial", est.graph_partial_bytes, "bytes",
                     "GraphSize, partial offload", src),
        EngineFigure("layers_offload", "layers.offload", est.layers_offload, f"of {n + 1}",
                     "blocks from the last down while they fit, then the output layer", src),
    ]  # fmt: skip


def _held(e: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> Estimate:
    """The estimate at the num_batch Ollama picks on `gpu`, when plan() sized the need at the
    fallback batch: the compute buffer (and sliding-window cache) the runner really allocates."""
    chosen = int(e.plan.settings["num_batch"])
    if chosen == int(e.plan.settings["num_batch_sized"]):
        return e
    picked = plan(
        e.model, e.workload, e.weight_format, e.kv_dtype, gpu, replace(settings, ubatch=chosen), version
    )
    return estimate_memory(e.model, e.workload, e.weight_format, e.kv_dtype, picked, gpu)


def view(estimate: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> EngineView:
    """What Ollama reports and does on `gpu` (free memory = the nvidia-smi total: nothing else loaded).

    Era A: its memory.go estimate decides the GPU layers (-ngl) of the runner, whose real buffers
    follow. Era C: llama-server's --fit decides them (1 GiB free); Ollama reports the sum of the
    buffer-size lines. Ollama-engine architectures: layers that fit beside MinimumMemory.
    """
    e, p = _held(estimate, gpu, settings, version), estimate.plan
    era = _era(version)
    split = layer_split(e)
    free, _ = usable_gpu_bytes(gpu)
    n = split.n_layers
    kind = str(p.settings["runner"])
    figures: list[EngineFigure] = []
    notes: list[str] = []
    cards = max(1, settings.pp)
    if not era.llama_server:
        # llm/memory.go decides the layers, on one GPU or spread over several (then the runner
        # splits them with --tensor-split in those counts: equal shares of identical cards).
        est = memory_estimate(e, version, free, cards)
        ngl = est.layers_offload
        figures += _estimate_figures(est, n)
        where = "the GPU" if cards == 1 else f"the {cards} GPUs"
        if ngl < n + 1:
            notes.append(
                f"Ollama's estimate places {ngl} of {n + 1} layers on {where}; the rest run on the CPU"
            )
    elif cards > 1:
        # Several GPUs: llama.cpp's layer split in equal shares, each card keeping MinimumMemory free.
        ngl = fit_gpu_layers(e, split, free - MINIMUM_MEMORY_BYTES, 0, cards)
        notes.append(
            f"Ollama over {cards} GPUs: modelled as llama.cpp's layer split in equal shares (each card its "
            "own buffers and CUDA context); Ollama's own placement by free memory can move a layer or two"
            + (f"; {ngl} of {n + 1} layers on the GPUs" if ngl < n + 1 else "")
        )
    elif kind == "llama-server":
        device = free - CUDA_CONTEXT_BYTES
        ngl = fit_gpu_layers(e, split, device, FIT_MARGIN_BYTES)
        split, ngl, moe_layers = fit_moe_first(e, split, ngl, device)
        figures += fit_expert_figures(e, moe_layers)
        if moe_layers:
            notes.append(
                f"llama-server --fit keeps 1024 MiB free with MoE dense weights first: the routed experts of "
                f"the first {moe_layers} of {n} layers stay in RAM; {ngl} of {n + 1} layers on the GPU"
            )
        elif ngl < n + 1:
            notes.append(f"llama-server --fit keeps 1024 MiB free: {ngl} of {n + 1} layers on the GPU")
    else:
        ngl = fit_gpu_layers(e, split, free - MINIMUM_MEMORY_BYTES, 0)
        if ngl < n + 1:
            notes.append(f"the Ollama engine places {ngl} of {n + 1} layers on the GPU")
    per_card = device_buffers(e, split, ngl, cards)
    b = max(per_card, key=lambda x: x.total_bytes)
    figures += buffer_figures(
        e,
        split,
        b,
        ollama_engine=kind == "Ollama engine",
        gpu_layers=ngl,
        devices=per_card if cards > 1 else (),
    )
    starts = all(x.total_bytes + MINIMUM_MEMORY_BYTES <= free for x in per_card)
    if era.llama_server and kind == "llama-server":
        effective_ctx = min(int(p.settings["num_ctx"]), e.model.max_position_embeddings) * int(
            p.settings["num_parallel"]
        )
        batch = int(p.settings["num_batch"])
        predicted = preflight_bytes(e.model, e.weight_format, effective_ctx)
        surcharge = (
            LARGE_SURCHARGE_BYTES
            if batch >= BATCH_LARGE
            else MEDIUM_SURCHARGE_BYTES
            if batch >= BATCH_MEDIUM
            else 0
        )
        figures.append(
            EngineFigure(
                "predicted_vram_bytes",
                "predicted (llama-server preflight)",
                predicted + surcharge,
                "bytes",
                f"GGUF size + f16 KV at hidden/heads head_dim for {effective_ctx:,} tokens + batch surcharge "
                f"{surcharge:,}",
                "llm/llama_server.go PredictServerVRAM; server/sched.go generationBatchSurcharge",
            )
        )
    figures += [
        EngineFigure("num_ctx", "num_ctx", int(p.settings["num_ctx"]), "tokens", "--ctx (per slot)",
                     "api/types.go Options.NumCtx"),
        EngineFigure("default_num_ctx", "default num_ctx on this GPU", default_num_ctx(e.model, gpu, version), "tokens",
                     "version default, or the VRAM tier from 0.16", "envconfig/config.go, server/routes.go Server.Serve"),
        EngineFigure("num_parallel", "OLLAMA_NUM_PARALLEL", int(p.settings["num_parallel"]), "slots", "--users",
                     "envconfig/config.go"),
        EngineFigure("num_batch", "num_batch", int(p.settings["num_batch"]), "tokens",
                     "automatic (server/sched.go automaticGenerationBatch)" if p.settings["num_batch_auto"] else
                     "--ubatch or api/types.go default 512", "server/sched.go, api/types.go"),
        EngineFigure("gpu_layers", "offloaded layers to GPU", ngl, f"of {n + 1}", f"{kind} placement",
                     "llm/memory.go (<= 0.12) / llama-server --fit (>= 0.30)"),
        EngineFigure("starts", "starts", starts, "", "GPU buffers + MinimumMemory <= free memory",
                     "the runner fails with out of memory otherwise"),
    ]  # fmt: skip
    if not starts:
        notes.append(
            f"the runner's GPU buffers ({b.total_bytes / MIB:,.0f} MiB) + MinimumMemory exceed the "
            f"{free / MIB:,.0f} MiB free: expect an out-of-memory load failure"
        )
    return EngineView(NAME, version, starts, tuple(figures), tuple(notes))


ENGINE = Engine(NAME, VERSIONS, SETTINGS, True, KV_DTYPES, plan, view)
