"""How fast it will feel: decode tokens/s per user, time to first token, and the offload cliff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramcalc.core.estimate import Estimate, UsersRow
from vramcalc.core.kv import kv_layers, tokens_kept
from vramcalc.core.tensors import EXPERT_ROLES, param_counts, tensor_inventory
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GB

if TYPE_CHECKING:
    from vramcalc.core.scenario import Scenario


# Source: fraction of peak DRAM bandwidth a decode step's weight and KV reads achieve, by engine
# family, fitted together with the per-layer overhead below on tests/calibration/throughput.yaml
# (llama.cpp 17 decode figures, vLLM/SGLang/TGI 10, transformers 48; scripts/speed_accuracy.py).
DECODE_BANDWIDTH_EFFICIENCY = {
    "llama.cpp": 0.75,
    "ollama": 0.75,
    "vllm": 0.80,
    "sglang": 0.80,
    "tgi": 0.80,
    "transformers": 0.75,
}
# Source: fixed cost per layer per decode step (kernel launches, Python and scheduling), by engine
# family; calibrated with the bandwidth efficiencies above on tests/calibration/throughput.yaml.
# It is why small quantized models on fast GPUs stay far below the bandwidth roofline.
DECODE_OVERHEAD_PER_LAYER_S = {
    "llama.cpp": 0.00010,
    "ollama": 0.00010,
    "vllm": 0.00008,
    "sglang": 0.00008,
    "tgi": 0.00008,
    "transformers": 0.00100,
}
# Source: transformers' DynamicCache grows by torch.cat every step, so each step reads the old
# cache, writes the new one and reads it again in attention (transformers/cache_utils.py); paged
# engines read each sequence's KV once per step.
KV_PASSES_PER_STEP = {"transformers": 3}

# Source: prefill is compute-bound; 0.5-0.7 x dense peak on NVIDIA datacenter parts for PyTorch
# engines (shared/reference/gpus.yaml estimation_hints; MAMF 0.80 on H100 for the best GEMM shape).
# llama.cpp's pp512 F16/Q4_K_M figures in tests/calibration/throughput.yaml reach 0.23 (H100 PCIe)
# and 0.31 (A100) of the bf16 peak; their geometric mean, 0.27, is used.
PREFILL_COMPUTE_EFFICIENCY = {"llama.cpp": 0.27, "ollama": 0.27}
DEFAULT_PREFILL_COMPUTE_EFFICIENCY = 0.55
# Source: decode FLOPs at large batches run at a lower share of peak than big prefill GEMMs.
DECODE_COMPUTE_EFFICIENCY = 0.45

# Source: PCIe 4.0 x16 = 31.5 GB/s per direction (PCI-SIG); ~25 GB/s achieved by pinned copies.
PCIE_BANDWIDTH_GBS = 25.0
# Source: dual-channel DDR5-5600 = 89.6 GB/s theoretical; llama.cpp's CPU matmuls reach ~50 GB/s.
HOST_MEMORY_BANDWIDTH_GBS = 50.0


@dataclass(frozen=True, slots=True)
class Speed:
    """Decode and prefill speed for one deployment (one replica) at a given concurrency."""

    users: int
    step_s: float
    per_user_tokens_per_s: float
    aggregate_tokens_per_s: float
    ttft_s: float | None
    bound: str  # "memory" or "compute"
    offloaded_bytes: int
    offload_tokens_per_s_penalty: float  # per-user tokens/s lost to offload (0 when all on GPU)


def active_weight_bytes(m: ModelSpec, weights_bytes: int, concurrent_tokens: int) -> int:
    """Weight bytes one decode step reads: all of them for dense models; for MoE, the non-expert
    part plus the experts the batch touches. With u tokens each picking k of E experts, the
    expected distinct experts per layer are E x (1 - (1 - k/E)^u)."""
    if m.moe is None:
        return weights_bytes
    tensors = tensor_inventory(m)
    expert_params = sum(t.params for t in tensors if t.role in EXPERT_ROLES)
    share = expert_params / param_counts(m).total
    e, k = m.moe.num_experts, m.moe.experts_per_token
    touched = e * (1 - (1 - k / e) ** max(1, concurrent_tokens)) / e
    expert_bytes = weights_bytes * share
    return int(weights_bytes - expert_bytes + expert_bytes * touched)


def attention_flops_per_token(m: ModelSpec, context_tokens: int) -> float:
    """Q.K and A.V for one new token against its cache: 4 x heads x head_dim x kept tokens per layer."""
    width = m.num_attention_heads * (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim if m.mla else m.head_dim)
    return sum(4.0 * width * tokens_kept(layer.window_tokens, context_tokens) for layer in kv_layers(m))


def peak_tflops(gpu: GpuSpec, weight_format: str) -> float | None:
    """Dense tensor throughput for the format's compute: fp8 weights on fp8 tensor cores where the
    GPU has them, else 16-bit (int4/GGUF kernels dequantise to 16-bit)."""
    if weight_format in ("fp8",) and gpu.fp8_dense_tflops:
        return gpu.fp8_dense_tflops
    return gpu.bf16_dense_tflops or gpu.fp16_dense_tflops


def speed(
    e: Estimate,
    gpu: GpuSpec,
    users: int,
    *,
    gpus_per_replica: int = 1,
    prompt_tokens: int | None = None,
    offloaded_bytes: int = 0,
    offload_over_pcie: bool = False,
) -> Speed:
    """Per-user decode tokens/s and TTFT for one replica serving `users` sequences.

    step = max(bytes / (bandwidth x eff_bw), FLOPs / (peak x eff_flops)): bytes = active weights +
    every sequence's KV (per GPU, split over the replica's GPUs), FLOPs = 2 x active params x users
    + attention. TTFT = (2 x active params x prompt + attention) / (peak x eff_prefill), at least one
    read of the weights. Offloaded bytes are read each token from host memory (llama.cpp CPU
    layers) or over PCIe (vLLM cpu-offload-gb).
    """
    m, w = e.model, e.workload
    ctx = w.ctx_tokens
    context = max(1, int(w.fill * ctx))
    eff_bw = DECODE_BANDWIDTH_EFFICIENCY.get(e.plan.engine, 0.7)
    bandwidth = gpu.memory_bandwidth_gbs * GB * eff_bw
    on_gpu_weights = max(0, e.weights_bytes - offloaded_bytes // gpus_per_replica)
    weight_read = active_weight_bytes(m, on_gpu_weights, users)
    kv_read = e.kv.bytes * users // max(1, w.users) * KV_PASSES_PER_STEP.get(e.plan.engine, 1)
    mem_s = (weight_read + kv_read) / bandwidth
    active = param_counts(m).active
    flops = (2.0 * active * users + users * attention_flops_per_token(m, context)) / gpus_per_replica
    peak = peak_tflops(gpu, e.weight_format.name)
    compute_s = flops / (peak * 1e12 * DECODE_COMPUTE_EFFICIENCY) if peak else 0.0
    offload_s = 0.0
    if offloaded_bytes:
        host = PCIE_BANDWIDTH_GBS if offload_over_pcie else HOST_MEMORY_BANDWIDTH_GBS
        offload_s = active_weight_bytes(m, offloaded_bytes, users) / (host * GB)
    overhead_s = m.num_hidden_layers * DECODE_OVERHEAD_PER_LAYER_S.get(e.plan.engine, 0.0)
    step = max(mem_s, compute_s) + overhead_s + offload_s
    bound = "compute" if compute_s > mem_s else "memory"
    prompt = prompt_tokens or ctx
    ttft: float | None = None
    if peak:
        prefill_flops = 2.0 * active * prompt + prompt * attention_flops_per_token(m, prompt) / 2
        ttft = max(
            prefill_flops
            / gpus_per_replica
            / (
                peak
                * 1e12
                * PREFILL_COMPUTE_EFFICIENCY.get(e.plan.engine, DEFAULT_PREFILL_COMPUTE_EFFICIENCY)
            ),
            e.weights_bytes / bandwidth,
        ) + offloaded_bytes / ((PCIE_BANDWIDTH_GBS if offload_over_pcie else HOST_MEMORY_BANDWIDTH_GBS) * GB)
    no_offload = max(mem_s, compute_s) + overhead_s
    penalty = (1 / no_offload - 1 / step) if offloaded_bytes and no_offload > 0 else 0.0
    return Speed(users, step, 1 / step, users / step, ttft, bound, offloaded_bytes, penalty)


@dataclass(frozen=True, slots=True)
class Offload:
    """What the engine does when the model does not fit, and how many bytes then live off the GPU."""

    action: str
    offloaded_bytes: int
    over_pcie: bool


@dataclass(frozen=True, slots=True)
class ScenarioSpeed:
    """Speed at the asked load, per row of the concurrency table, and the offload it needs."""

    at_users: Speed
    rows: tuple[Speed, ...]
    offload: Offload | None


def offload_for(sc: Scenario, row: UsersRow | None = None) -> Offload | None:
    """llama.cpp/Ollama keep only `gpu_layers` on the GPU and run the rest from host memory; vLLM
    refuses to start unless --cpu-offload-gb streams the missing weights over PCIe every step.
    `row` sizes the offload for that many users (default: the asked load)."""
    e, view = sc.estimate, sc.view
    if view is None or e.gpu is None:
        return None
    total = row.total_bytes if row else e.total_bytes
    kv = row.kv_bytes if row else e.kv.bytes
    if total <= e.gpu.usable_bytes and view.serves(kv):
        return None
    if sc.engine.gguf:
        off = max(0, e.weights_bytes - int(view.value("model_buffer_bytes")))
        if not off:
            return None
        layers = view.value("gpu_layers")
        return Offload(
            f"{view.engine} keeps {layers} layers on the GPU; the rest run from host memory", off, False
        )
    pool = next((int(f.value) for f in view.figures if f.key == "kv_pool_bytes"), kv)
    short = max(total - e.gpu.usable_bytes, kv - pool)
    if short <= 0 or short >= e.weights_bytes:
        return None
    gib = -(-short // 2**30)
    return Offload(
        f"{view.engine} refuses to start as configured; --cpu-offload-gb {gib} would stream {gib} GiB of "
        "weights over PCIe every step",
        gib * 2**30,
        True,
    )


def scenario_speed(sc: Scenario) -> ScenarioSpeed | None:
    """Speed on the estimate's GPU (one replica of `tp` GPUs) for the asked load and each row of the
    concurrency table, with the offload each needs."""
    from vramcalc.core.scenario import engine_rows

    e = sc.estimate
    if e.gpu is None:
        return None

    def at(users: int, row: UsersRow | None) -> tuple[Speed, Offload | None]:
        off = offload_for(sc, row)
        spd = speed(
            e,
            e.gpu.gpu if e.gpu else None,  # type: ignore[arg-type]
            users,
            gpus_per_replica=e.plan.tp,
            offloaded_bytes=off.offloaded_bytes if off else 0,
            offload_over_pcie=off.over_pcie if off else False,
        )
        return spd, off

    main, off = at(e.workload.users, None)
    rows = tuple(at(r.users, r)[0] for r in engine_rows(e, sc.view))
    return ScenarioSpeed(main, rows, off)
