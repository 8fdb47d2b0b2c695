"""Text Generation Inference: after a warm-up prefill, every block of free memory but 10% of the
card becomes KV; every layer is full size (no sliding-window savings)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vramcalc.core.engines.base import Engine, EngineFigure, EnginePlan, EngineSettings, EngineView
from vramcalc.core.engines.common import CUDA_CONTEXT_BYTES, RUNTIME_OVERHEAD_BYTES, cuda_total_bytes
from vramcalc.core.formats import kv_bytes
from vramcalc.core.kv import kv_layers
from vramcalc.units import MIB

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec

NAME = "tgi"
VERSIONS = ("3.3.7",)
SETTINGS = frozenset({"gpu_util", "max_num_batched_tokens", "tp"})

# Source: server/text_generation_server/models/globals.py TGI_WIGGLE_ROOM 0.90 and
# CUDA_MEMORY_FRACTION 1.0 (--cuda-memory-fraction): keep (1 - fraction x 0.9) of total free.
WIGGLE_ROOM = 0.90
# Source: launcher/src/main.rs default max_batch_prefill_tokens 4096 (8000 for gemma3).
DEFAULT_PREFILL_TOKENS = 4096
GEMMA3_PREFILL_TOKENS = 8000
# Source: flashinfer attention backend (the default) uses BLOCK_SIZE = 1.
BLOCK_TOKENS = 1
# Source: warm-up residue estimate, engines.md section 6 (~0.5 GiB held after the warm-up batch).
WARMUP_RESIDUE_BYTES = 512 * MIB
LOGIT_BYTES = 4


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
    default = GEMMA3_PREFILL_TOKENS if m.family.startswith("gemma3") else DEFAULT_PREFILL_TOKENS
    prefill = min(settings.max_num_batched_tokens or default, m.max_position_embeddings)
    fraction = settings.gpu_util or 1.0
    reserve = CUDA_CONTEXT_BYTES + RUNTIME_OVERHEAD_BYTES
    notes = [
        f"TGI {version}: warm-up prefill of {prefill:,} tokens (max_batch_prefill_tokens); all layers full-length KV",
    ]
    return EnginePlan(
        engine=NAME,
        version=version,
        kv_frees_windows=False,
        kv_block_tokens=BLOCK_TOKENS,
        prefill_tokens=prefill,
        sampled_rows=1,
        sampler_bytes_per_logit=LOGIT_BYTES,
        tp=settings.tp,
        reserve_bytes=reserve,
        reserve_formula=f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB + runtime {RUNTIME_OVERHEAD_BYTES // MIB} MiB",
        reserve_source="pytorch#107667 (CUDA context); TGI counts it inside its 90% (flash_causal_lm.py FlashCausalLM.warmup)",
        activation_source="warm-up prefill of max_batch_prefill_tokens (flash_causal_lm.py FlashCausalLM.warmup)",
        kv_source="layers/attention/kv_cache.py KVCache: [blocks, BLOCK_SIZE, kv_heads, head_size] per layer",
        assumptions=tuple(notes),
        settings={
            "cuda_memory_fraction": fraction,
            "max_batch_prefill_tokens": prefill,
            "max_total_tokens": workload.ctx_tokens,
        },
    )


def view(estimate: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> EngineView:
    """max_batch_total_tokens: free memory after warm-up minus (1 - fraction x 0.9) of the total,
    over bytes per token with every layer full (flash_causal_lm.py FlashCausalLM.warmup)."""
    e, m, p = estimate, estimate.model, estimate.plan
    total = cuda_total_bytes(gpu)
    fraction = float(p.settings["cuda_memory_fraction"])
    ctx = int(p.settings["max_total_tokens"])
    free = total - CUDA_CONTEXT_BYTES - e.weights_bytes - WARMUP_RESIDUE_BYTES
    pool = free - int((1 - fraction * WIGGLE_ROOM) * total)
    per_token = sum(kv_bytes(e.kv_dtype, lay.elements_per_token) for lay in kv_layers(m, p.tp))
    tokens = max(0, math.floor(pool / per_token)) * BLOCK_TOKENS
    per_request = min(tokens, m.max_position_embeddings)
    starts = pool > 0 and tokens >= ctx
    figures = (
        EngineFigure(
            "weights_bytes_per_gpu",
            "model weights",
            e.weights_bytes,
            "bytes",
            "weights per GPU",
            "text_generation_server model loading",
        ),
        EngineFigure(
            "activation_peak_bytes",
            "warm-up residue",
            WARMUP_RESIDUE_BYTES,
            "bytes",
            "held after the warm-up batch (estimate)",
            "text_generation_server/models/flash_causal_lm.py FlashCausalLM.warmup",
        ),
        EngineFigure(
            "non_torch_bytes",
            "CUDA context",
            CUDA_CONTEXT_BYTES,
            "bytes",
            "inside the 90%",
            "pytorch#107667 (CUDA context); flash_causal_lm.py FlashCausalLM.warmup",
        ),
        EngineFigure(
            "cuda_graph_bytes",
            "CUDA graphs [1, 2, 4, 8, 16, 32]",
            0,
            "bytes",
            "captured after the KV allocation, from the 10% headroom",
            "globals.py CUDA_GRAPHS",
        ),
        EngineFigure(
            "kv_pool_bytes",
            "KV cache memory",
            pool,
            "bytes",
            f"{free:,} free - (1 - {fraction:g} x 0.9) x {total:,} = {pool:,}",
            "FlashCausalLM.warmup",
        ),
        EngineFigure(
            "kv_capacity_tokens",
            "max_batch_total_tokens",
            tokens,
            "tokens",
            f"floor({pool:,} / {per_token:,} B per token)",
            "FlashCausalLM.warmup",
        ),
        EngineFigure(
            "max_concurrency",
            f"requests of {ctx:,} tokens",
            round(tokens / ctx, 2),
            "x",
            f"{tokens} / {ctx}",
            "max_batch_total_tokens / max_total_tokens",
        ),
        EngineFigure(
            "max_total_tokens",
            "max_total_tokens (per request)",
            per_request,
            "tokens",
            "min(KV tokens, max_position_embeddings)",
            "launcher/src/main.rs",
        ),
        EngineFigure(
            "starts",
            "starts",
            starts,
            "",
            "KV pool > 0 and one full-length request fits",
            "warm-up fails otherwise",
        ),
    )
    notes = () if starts else ("TGI would fail its warm-up: not enough memory for one full-length request",)
    return EngineView(NAME, version, starts, figures, notes)


# Source: TGI --kv-cache-dtype fp8 (e4m3fn / e5m2); default the model dtype.
ENGINE = Engine(NAME, VERSIONS, SETTINGS, False, ("bf16", "fp16", "fp8"), plan, view, plan_reads_users=False)
