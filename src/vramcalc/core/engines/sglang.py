"""SGLang: a static fraction of memory for weights + KV pool; the rest is slack for activations and
CUDA graphs. Only a short list of architectures gets sliding-window savings (not Gemma-2/3)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vramcalc.core.engines.base import Engine, EngineFigure, EnginePlan, EngineSettings, EngineView
from vramcalc.core.engines.common import (
    CUDA_CONTEXT_BYTES,
    RUNTIME_OVERHEAD_BYTES,
    cuda_total_bytes,
    version_at_least,
)
from vramcalc.core.formats import kv_bytes
from vramcalc.core.kv import kv_layers
from vramcalc.units import GIB, MIB

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec

NAME = "sglang"
# How SGLang sizes memory by release, read in each release's wheel (sglang/srt/server_args.py
# ServerArgs.__post_init__ / _handle_gpu_memory_settings; arg_groups/memory_hook.py from 0.5.19):
# 0.4.6: a fixed mem_fraction_static by parallel size (read in 0.4.6.post5; 0.4.7 also gives cards
#   above 180 GB 0.79);
# 0.4.8: a reserve in GiB by memory tier, (2.8 + tp x pp / 10) below 35 GiB (0.4.8-0.5.2);
# 0.5.3: reserve = 512 MiB + 1.5 x chunked prefill + 2 x decode graph batch + tp x pp / 8 GiB, with
#   2,048-token chunks and graphs up to 16 (80 at tp >= 4) on 20-35 GiB cards (0.5.3-0.5.19;
#   0.5.5 took 24 there, +16 MiB);
# 0.5.23: the same reserve with 4,096-token chunks and graphs up to 48 (160) on 20-35 GiB cards
#   (0.5.20 on). A release between two labels behaves like the older one.
VERSIONS = ("0.4.6", "0.4.8", "0.5.3", "0.5.23")
SETTINGS = frozenset({"gpu_util", "max_num_seqs", "max_num_batched_tokens", "tp", "enforce_eager"})

# Source: sglang/srt/configs/model_config.py is_hybrid_swa_model (gpt-oss, Llama-4, ...; not
# Gemma-2/3) and arg_groups/fields/schedule.py swa_full_tokens_ratio 0.8.
HYBRID_SWA_FAMILIES = frozenset({"gpt_oss", "llama4", "llama4_text"})
SWA_FULL_TOKENS_RATIO = 0.8

# Source: sglang logits for the running batch are fp32 (4 B per vocab entry).
LOGIT_BYTES = 4
HIDDEN_TEMPORARIES = 1.0  # fused kernels as in vLLM (flashinfer / sgl-kernel); not calibrated separately
# Source: the decode CUDA-graph batch SGLang captures up to when nothing lowers it (0.4.x-0.5.2:
# "half of the default value 160" in server_args.py's comment on small cards).
DEFAULT_GRAPH_MAX_BS = 160


def _tier(version: str, gpu_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, decode CUDA-graph max_bs) by GPU memory (MiB, nvidia-smi's total),
    as the release sets them (see VERSIONS)."""
    gib = gpu_mib / 1024
    big_tp = tp >= 4
    if not version_at_least(version, "0.5.3"):
        small = gpu_mib < 25_000 if not version_at_least(version, "0.4.8") else gib < 35
        if small:
            return 2048, 80 if big_tp else 8
        large = version_at_least(version, "0.4.8") and gib >= 160
        return (16384 if large else 8192), DEFAULT_GRAPH_MAX_BS
    if gib < 20:
        return 2048, 8
    if gib < 35:
        if version_at_least(version, "0.5.23"):
            return 4096, 160 if big_tp else 48
        return 2048, 80 if big_tp else 16
    if gib < 60:
        return 4096, 160 if big_tp else 32
    if gib < 160:
        return 8192, 512 if big_tp else 256
    return 16384, 512


def mem_fraction_static(version: str, gpu_mib: float, tp: int) -> float:
    """Share of memory for weights + KV pool (gpu_mib: nvidia-smi's total, MiB).

    0.5.3 and 0.5.23: reserved MiB = 512 + 1.5 x max(chunked_prefill, 2048) + 1024 x tp / 8 +
    2 x max_bs, at least 10,240 above 60 GiB; fraction = round((gpu - reserved) / gpu, 3).
    0.4.8: reserved GiB = 2.8 + tp / 10 below 35 GiB, 9.5 + tp / 2 below 90, 12 + tp / 2 below 160,
    else 32; the same rounding.
    0.4.6: 0.88 (tp 1), 0.87 (2), 0.85 (4), 0.81 (8), 0.79 (16) up to 81,920 MiB, else 0.88; above
    96 GiB raised to min(f + 48 GiB x (1 - f) / gpu, (gpu - 18 GiB) / gpu).
    """
    if not version_at_least(version, "0.4.8"):
        if gpu_mib <= 81920:
            f = 0.79 if tp >= 16 else 0.81 if tp >= 8 else 0.85 if tp >= 4 else 0.87 if tp >= 2 else 0.88
        else:
            f = 0.88
        if gpu_mib > 96 * 1024:
            f = min(f + 48 * 1024 * (1 - f) / gpu_mib, (gpu_mib - 18 * 1024) / gpu_mib)
        return f
    if not version_at_least(version, "0.5.3"):
        gib = gpu_mib / 1024
        if gib < 35:
            reserved_gib = 2.8 + tp / 10
        elif gib < 90:
            reserved_gib = 9.5 + tp / 2
        elif gib < 160:
            reserved_gib = 12 + tp / 2
        else:
            reserved_gib = 32
        return round((gpu_mib - reserved_gib * 1024) / gpu_mib, 3)
    chunk, max_bs = _tier(version, gpu_mib, tp)
    reserved = 512 + 1.5 * max(chunk, 2048) + 1024 * tp / 8 + 2 * max_bs
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, 10240)
    return round((gpu_mib - reserved) / gpu_mib, 3)


def _gpu_mib(gpu: GpuSpec | None) -> float:
    # SGLang reads nvidia-smi memory.total (sglang/srt/utils/common.py get_device_memory_capacity).
    if gpu is None:
        return 24 * 1024
    return float(gpu.usable_mib or gpu.memory_gb_marketed * 1024)


def plan(
    model: ModelSpec,
    workload: Workload,
    fmt: WeightFormat,
    kv_dtype: str,
    gpu: GpuSpec | None,
    settings: EngineSettings,
    version: str,
) -> EnginePlan:
    m = model
    chunk, max_bs = _tier(version, _gpu_mib(gpu), settings.tp)
    chunk = settings.max_num_batched_tokens or chunk
    fraction = settings.gpu_util or mem_fraction_static(version, _gpu_mib(gpu), settings.tp)
    hybrid = m.family in HYBRID_SWA_FAMILIES
    graphs = 2 * max_bs * MIB
    reserve = CUDA_CONTEXT_BYTES + RUNTIME_OVERHEAD_BYTES + graphs
    notes = [
        f"SGLang {version}: mem_fraction_static {fraction:g}, chunked_prefill_size {chunk:,}, decode graphs up to "
        f"batch {max_bs}",
    ]
    if m.layer_pattern.kind != "all_global" and not hybrid:
        notes.append(f"SGLang gives {m.family}'s windowed layers full-length KV (not in is_hybrid_swa_model)")
    return EnginePlan(
        engine=NAME,
        version=version,
        kv_frees_windows=hybrid,
        kv_block_tokens=1,  # page_size 1 by default
        kv_prefix_sharing=True,  # radix cache
        prefill_tokens=chunk,
        sampled_rows=min(settings.max_num_seqs or max_bs, max_bs),
        sampler_bytes_per_logit=LOGIT_BYTES,
        hidden_temporaries=HIDDEN_TEMPORARIES,
        fused_moe=True,
        # Source: sglang/srt/server_args.py enable_mixed_chunk (default False) and
        # managers/scheduler.py get_next_batch_to_run: the waiting prompts run as a prefill batch
        # of their own before decoding resumes; --enable-mixed-chunk would mix them.
        prefill_apart=True,
        tp=settings.tp,
        reserve_bytes=reserve,
        reserve_formula=(
            f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB + runtime {RUNTIME_OVERHEAD_BYTES // MIB} MiB + decode "
            f"CUDA graphs 2 MiB x {max_bs} = {reserve:,} B"
        ),
        reserve_source="sglang/srt/arg_groups/memory_hook.py reserve_for_graph_mb (2 MiB per decode batch size)",
        activation_source="chunked prefill of chunked_prefill_size tokens (sglang/srt/arg_groups/memory_hook.py handle_gpu_memory_settings)",
        kv_source="sglang/srt/model_executor/pool_configurator.py _compute_cell_size",
        assumptions=tuple(notes),
        settings={
            "mem_fraction_static": fraction,
            "chunked_prefill_size": chunk,
            "cuda_graph_max_bs": max_bs,
            "context_len": workload.ctx_tokens,
            "tp_size": settings.tp,
            "disable_cuda_graph": bool(settings.enforce_eager),
        },
    )


def view(estimate: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> EngineView:
    """SGLang's KV pool and max_total_num_tokens.

    F_pre = free memory before weights (total - CUDA context); KV = F_pre - weights -
    F_pre x (1 - mem_fraction_static); tokens = KV / cell size, where hybrid-SWA models count
    windowed layers at swa_full_tokens_ratio (kv_cache_configurator.py, engines.md 4.2).
    """
    e, m, p = estimate, estimate.model, estimate.plan
    fraction = float(p.settings["mem_fraction_static"])
    ctx = int(p.settings["context_len"])
    f_pre = cuda_total_bytes(gpu) - CUDA_CONTEXT_BYTES
    slack = int(f_pre * (1 - fraction))
    pool = f_pre - e.weights_bytes - slack
    cell = 0.0
    for layer in kv_layers(m, p.tp):
        per = kv_bytes(e.kv_dtype, layer.elements_per_token)
        cell += per * (SWA_FULL_TOKENS_RATIO if (layer.window_tokens and p.kv_frees_windows) else 1)
    tokens = max(0, math.floor(pool / cell)) if cell else 0
    max_running = int(min(min(max(tokens / ctx * 512, 2048), 4096), tokens / 2)) if tokens else 0
    req_table = max_running * ctx * 4
    starts = pool > 0 and tokens >= ctx
    figures = (
        EngineFigure(
            "mem_fraction_static",
            "mem_fraction_static",
            fraction,
            "",
            "memory_hook.py handle_gpu_memory_settings",
            "sglang/srt/arg_groups/memory_hook.py handle_gpu_memory_settings",
        ),
        EngineFigure(
            "weights_bytes_per_gpu",
            "Load weight end. mem usage",
            e.weights_bytes,
            "bytes",
            "weights per GPU",
            "sglang model loader",
        ),
        EngineFigure(
            "activation_peak_bytes",
            "activations (from the slack)",
            e.activations.bytes,
            "bytes",
            "see activations term",
            p.activation_source,
        ),
        EngineFigure(
            "non_torch_bytes",
            "CUDA context (before F_pre)",
            CUDA_CONTEXT_BYTES,
            "bytes",
            f"{CUDA_CONTEXT_BYTES // MIB} MiB",
            "sglang/srt/distributed/bootstrap.py",
        ),
        EngineFigure(
            "cuda_graph_bytes",
            "CUDA graphs (from the slack)",
            e.reserve_bytes - CUDA_CONTEXT_BYTES - RUNTIME_OVERHEAD_BYTES,
            "bytes",
            "2 MiB x decode max_bs",
            p.reserve_source,
        ),
        EngineFigure(
            "kv_pool_bytes",
            "KV Cache is allocated",
            pool,
            "bytes",
            f"{f_pre:,} - {e.weights_bytes:,} - {f_pre:,} x (1 - {fraction:g}) = {pool:,}",
            "kv_cache_configurator.py _profile_available_bytes",
        ),
        EngineFigure(
            "kv_capacity_tokens",
            "max_total_num_tokens",
            tokens,
            "tokens",
            f"floor({pool:,} / {cell:,.0f} B per token)",
            "pool_configurator.py _compute_cell_size",
        ),
        EngineFigure(
            "max_concurrency",
            f"requests of {ctx:,} tokens",
            round(tokens / ctx, 2),
            "x",
            f"{tokens} / {ctx}",
            "max_total_num_tokens / context_len",
        ),
        EngineFigure(
            "max_running_requests",
            "max_running_requests",
            max_running,
            "",
            "min(clamp(tokens / ctx x 512, 2048, 4096), tokens / 2)",
            "resolve_max_num_reqs",
        ),
        EngineFigure(
            "req_to_token_bytes",
            "req_to_token pool",
            req_table,
            "bytes",
            f"{max_running} x {ctx} x 4 B (from the slack)",
            "sglang/srt/model_executor/pool_configurator.py (req_to_token pool)",
        ),
        EngineFigure(
            "starts",
            "starts",
            starts,
            "",
            "KV pool > 0 and one full-length request fits",
            "SGLang raises 'Not enough memory' otherwise",
        ),
    )
    notes: list[str] = [] if starts else ["SGLang would refuse to start: not enough memory for the KV pool"]
    if slack < e.activations.bytes + req_table:
        notes.append(
            f"the slack ({slack / GIB:.2f} GiB) is below activations + request table: OOM under load"
        )
    return EngineView(NAME, version, starts, figures, tuple(notes))


# Source: sglang --kv-cache-dtype auto | fp8_e4m3 | fp8_e5m2.
ENGINE = Engine(NAME, VERSIONS, SETTINGS, False, ("bf16", "fp16", "fp8"), plan, view, plan_reads_users=False)
