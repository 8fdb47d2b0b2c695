"""vLLM: a share of the whole card is pre-allocated, and what weights and the profiled peak leave
becomes a pool of 16-token KV blocks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vramcalc.core.engines.base import Engine, EngineFigure, EnginePlan, EngineSettings, EngineView
from vramcalc.core.engines.common import (
    CUDA_CONTEXT_BYTES,
    NVLINK_CLASS_GBS,
    cuda_total_bytes,
    default_p2p,
    version_at_least,
)
from vramcalc.core.estimate import plan_activations
from vramcalc.core.formats import kv_bytes
from vramcalc.core.kv import kv_layer_groups
from vramcalc.core.types import Measured
from vramcalc.errors import SpecError
from vramcalc.units import GIB, MIB

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec

NAME = "vllm"
# Behaviour changes we model, oldest first; the last is the default ("current vLLM").
# 0.6: V0 engine. 0.6.5: V0 with PR #10511's memory profiling (a baseline taken after the CUDA
# context: non-torch memory is this process's own, 0.01-0.11 GiB in published logs, where 0.6.4
# counted the context and other processes too). 0.9.0: V1, sliding windows as full attention.
# 0.9.1: hybrid KV manager (PR #17996). 0.11.1: the FlashInfer sampler off by default (PR
# #26859). 0.19: NCCL outside the budget, graphs still outside. 0.20: gpu_memory_utilization 0.92 by
# default (was 0.9). 0.33: FlashInfer sampler on again,
# CUDA-graph estimate inside the budget (from 0.20), async scheduling doubles in-flight
# tokens, >=160 GiB tier.
# 0.34: the extensible KV cache (on by default on CUDA and ROCm) is sized after warmup and real
# CUDA-graph capture from the memory then free, gpu_memory_utilization unset means 1.0, and KV
# blocks hold 64 tokens (was 16).
# 0.7.1: MLA with matrix absorption (fp8 re-quantized absorbed copies beside the raw weights) until
# 0.8, which dropped the absorbed copies. The 0.8 label is our V0 profile: 0.8.x ran V1 by default
# on Ampere and later, and calibrate models such a V1 log as 0.9.0, our oldest V1 profile.
VERSIONS = ("0.6", "0.6.5", "0.7.1", "0.8", "0.9.0", "0.9.1", "0.11.1", "0.19", "0.20", "0.33", "0.34")
BASELINE_PROFILING_SINCE = "0.6.5"
SETTINGS = frozenset(
    {
        "gpu_util",
        "max_num_seqs",
        "max_num_batched_tokens",
        "tp",
        "cpu_offload_gb",
        "enforce_eager",
        "sampler",
        "mxfp4_backend",
        "nccl_nvls",
        "gpu_p2p",
    }
)

# Source: vllm/config/cache.py CacheConfig (gpu_memory_utilization 0.9, block_size 16); the default
# utilization is 0.92 from 0.20.0 on (read in the release sdists: 0.9 in 0.11.0-0.19.1, 0.92 in
# 0.20.0-0.33.0).
DEFAULT_GPU_UTIL = 0.9
DEFAULT_GPU_UTIL_SINCE_0_20 = 0.92
BLOCK_TOKENS = 16

# Source: vLLM 0.34.0 (sdist from PyPI). vllm/config/vllm.py _resolve_extensible_kv_cache turns
# the extensible KV cache on where it is supported (CUDA and ROCm) unless kv_cache_memory_bytes,
# num_gpu_blocks_override, elastic EP or some KV connectors rule it out; vllm/config/cache.py
# resolved_gpu_memory_utilization is then 1.0 when none is given, and DEFAULT_BLOCK_SIZE is 64.
# vllm/v1/worker/extensible_kv_cache.py measure_kv_cache_bytes sizes the cache after warmup and
# CUDA-graph capture: KV = min(R - used, I - used - margin) - max(T, torch growth), with R =
# ceil(util x total), I = free memory at init (total - CUDA context), used = what the engine holds
# then (weights, non-torch, captured graphs), T = the profiled transient peak + the CUDA-graph
# estimate (gpu_worker.py peak_activation_memory, kept as reserved_headroom_bytes, raised by the
# sizing warmup's own peak when larger) and margin = max(1 GiB (3 GiB on ROCm), 0.75 x T).
EXTENSIBLE_KV_SINCE = "0.34"
EXTENSIBLE_UTIL = 1.0
BLOCK_TOKENS_SINCE_0_34 = 64
KV_MARGIN_FLOOR_BYTES = 1 * GIB
KV_MARGIN_FLOOR_ROCM_BYTES = 3 * GIB
KV_MARGIN_FRACTION = 0.75

# Source: calibrated on the five vLLM V1 records in tests/calibration/measurements.yaml
# (llm-d H100 logs: peak activation / (1024 rows x vocab) = 38.4, 38.5, 38.9, 38.9, 39.6 B for
# vocabularies of 151,936, 201,088 and 128,256); the median is used. It matches the PyTorch
# sort-based top-k/top-p sampler path in vllm/v1/sample: fp32 logits, sorted values, int64
# indices, softmax, cumsum, mask, scattered logits, probabilities, exponential noise (~41 B).
SAMPLER_BYTES_PER_LOGIT = 38.9
# Source: vllm/v1/sample/ops/topk_topp_sampler.py flashinfer_sample (FlashInfer
# top_k_top_p_sampling_from_logits: a top-k-masked copy of the fp32 logits, then softmax
# probabilities; no sort) after vllm/v1/sample/sampler.py's fp32 copy of the bf16 logits:
# 2 + 4 + 4 + 4 = 14 B per logit, counted from the code (no published log of this path to
# calibrate on; the PyTorch path's count, 35 B, sits 10% under its calibrated 38.9).
# Which path a running server takes depends on the install (FlashInfer present, the vLLM release's
# VLLM_USE_FLASHINFER_SAMPLER default), so unless --sampler pins it the figures carry both as a
# range. Two published 0.10.1.1 logs (A100 80GB, tests/fixtures/logs/published/vllm-b-01/02) show
# FlashInfer's peak (KV pool within 0.8% with it, 4-19% low with the sort path).
FLASHINFER_SAMPLER_BYTES_PER_LOGIT = 14.0
# The path a release's standard images take (the vllm/vllm-openai images ship FlashInfer): V1 used
# FlashInfer's kernels from #11394 (v0.7.0) until #26859 turned the default off (2025-10-15,
# v0.11.1: "flashinfer-python is a default dep of vLLM CUDA now"). vllm/envs.py
# VLLM_USE_FLASHINFER_SAMPLER defaults to True again from 0.21.0 (release sdists), but from 0.22
# the V2 model runner is the default for more and more models, and until 0.32 its profile samples
# the dummy rows without top-k/top-p (V2_PROFILE_SINCE below). 0.11.1-0.24 keep the sort path's
# 38.9 B as the main value (V1 runner; FlashInfer's the other end). From 0.33 the V2 profile adds
# a pass with every sampling feature on (an fp32 copy, FlashInfer's fused top-k/top-p, logprobs),
# counted at about FlashInfer's 14 B: its main value again.
SAMPLER_OFF_SINCE = "0.11.1"
# Source: vllm/v1/worker/gpu/model_runner.py _dummy_sampler_run (0.25.0-0.32.0 sdists): the V2
# model runner's profile computes the dummy rows' logits in the model dtype and samples them with
# no top-k/top-p, penalties or logprobs ("the sampler may skip top_k, top_p, and logprobs"): 2 B
# per logit. It is the default from 0.25 for every model but most MoE ones (vllm/config/vllm.py
# _is_default_v2_model_runner_model: listed architectures or not is_moe; Qwen3-MoE and gpt-oss
# are not listed), and for all from 0.29 (no list). 0.22-0.24 defaulted to it for fewer models and
# keep the V1 figures here. Published 0.27.1 logs measure that warm-start peak: 0.08 GiB for
# Qwen2.5-0.5B (256 rows x 151,936 x 2 B = 0.07) and 0.19 GiB for Qwen3-8B on an RTX 4090, and
# Qwen3-32B at TP 2 on RTX PRO 6000s leaves 1.66 GiB for peak, non-torch and graphs together with
# 1,024 rows. A cold start's torch.compile raises the same profile's peak (1.18 GiB for that
# Qwen3-8B; vllm#54383): the 38.9 B figure, which three V2-era logs sit near (0.27.1, 0.28, 0.31),
# is the range's other end and the verdict's side.
V2_PROFILE_SINCE = "0.25"
V2_PROFILE_MOE_SINCE = "0.29"
V2_PROFILE_UNTIL = "0.33"
V2_PROFILE_BYTES_PER_LOGIT = 2.0
# Source: vllm/envs.py VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS, "1" from 0.20.0 ("0" in 0.19.1).
GRAPHS_INSIDE_SINCE = "0.20"
# Source: vllm/engine/arg_utils.py get_batch_defaults: the >= 160 GiB tier appears in 0.28.0 (not in
# 0.27.0), the GB10 exclusion in 0.33.0 (not in 0.32.0); release sdists.
LARGEST_TIER_SINCE = "0.28"
GB10_TIER_EXCLUDED_SINCE = "0.33"
# Source (release sdists): vllm/config/vllm.py VllmConfig.max_in_flight_tokens (max_concurrent_batches
# x max_num_batched_tokens; 2 batches with async scheduling, on by default where supported) is what
# a sliding-window spec keeps from 0.26.0 (0.25.0 kept one max_num_batched_tokens);
# vllm/v1/core/kv_cache_utils.py get_kv_cache_capacity reports "GPU KV cache size" as
# int(max_concurrency x max_model_len) from 0.21.0 (0.20.0: blocks // groups x block size).
IN_FLIGHT_TWO_BATCHES_SINCE = "0.26"
CAPACITY_FROM_CONCURRENCY_SINCE = "0.21"
SAMPLER_ON_AGAIN_SINCE = "0.33"

# Source: vLLM V0 profile (RTX 3090 records, vllm-project/vllm#10517): peak minus weights at
# max_model_len 20,000 / 29,000 = 2.07 / 2.99 GiB: a slope of one hidden buffer per token beside
# the fused gate_up/activation/qkv outputs, plus fp32 logits for 256 sampled rows.
HIDDEN_TEMPORARIES = 1.0
V0_LOGIT_BYTES = 4
# Source: V0's profile run samples its dummy rows with top_p 0.99 and top_k vocab - 1
# (vllm/worker/model_runner.py profile_run), so vllm/model_executor/layers/sampler.py takes the
# sort path (_apply_top_k_top_p: sorted fp32 values, int64 indices, masks, the scattered logits,
# softmax and log-softmax, the exponential noise), after the forward has freed its temporaries:
# the peak is max(forward + fp32 logits, the sort path). The sort path is priced at V1's
# calibrated SAMPLER_BYTES_PER_LOGIT (the same operations); on five published V0 logs with short
# contexts, where it dominates (Phi-4-mini, Llama-3.2-3B, Qwen2.5-0.5B/7B, Llama-3.1-70B FP8 with
# 4,096 rows; tests/fixtures/logs/published), the activation peak is within 2.1% (it was 20-83%
# low when the sampler was counted as 4 B of fp32 logits added to the forward).
V0_SAMPLER_BYTES_PER_LOGIT = 38.9

# Source: non_torch_memory in the vLLM records (tests/calibration): 0.13-0.14 GiB on one H100
# (V1, and V0 from 0.6.5: the same memory_profiling baseline), 0.35 GiB on the RTX 3090 log
# (V0 0.6.4: CUDA context and other processes counted), 0.55 GiB per rank at TP=2 (NCCL +
# custom all-reduce).
NON_TORCH_V1_BYTES = int(0.13 * GIB)
NON_TORCH_V0_BYTES = int(0.35 * GIB)
NON_TORCH_TP_EXTRA_BYTES = int(0.42 * GIB)
# Source: NCCL keeps those ring buffers on the GPU only over its P2P transport (NVIDIA/nccl
# src/transport/p2p.cc allocates them in device memory). GPUs that cannot reach each other peer to
# peer talk over the SHM transport, whose buffers are host memory (src/transport/shm.cc:
# hostMem / remHostMem; SHM_USE_CUDA_MEMCPY off by default), or across nodes over the network
# transport; vLLM's custom all-reduce is then off too (custom_all_reduce.py: "Custom allreduce is
# disabled because your platform lacks GPU P2P capability" / "... spans across nodes"), so such a
# rank holds no TP extra. GeForce cards have no P2P with NVIDIA's stock driver (NVIDIA/nccl#1127:
# RTX 4090; nccl-tests#117: RTX 2080 Ti); datacenter and workstation cards have it.
# Check (hold-out logs, tests/fixtures/logs/published): four A100 runs that print the line
# (TP 2 in two pods, TP 4 across nodes) had KV pools 0.31-0.41 GiB larger than ours with the
# extra counted; without it they are within +0.1..+1.0%.

# NCCL's NVLink SHARP (NVLS) buffer, which every rank of a communicator of 3 or more GPUs behind an
# NVSwitch with multicast (Hopper and later SXM boards) allocates whole, nvlsTotalSize =
# ranks x channels x 2 x per-channel buffer (NVIDIA/nccl src/transport/nvls.cc; `gpuCount <= 2`
# returns early, so TP 2 never has it). vLLM never sets NCCL_NVLS_ENABLE, and each tensor-parallel
# rank holds two NCCL communicators (its PyNcclCommunicator and torch's device group:
# vllm/distributed/parallel_state.py GroupCoordinator, device_communicators/cuda_communicator.py).
# Source: the per-channel buffer by the NCCL that vLLM's torch brings: NCCL 2.20 (torch 2.4,
# vLLM 0.6.3 and before): BUFFSIZE 4 MiB + 2 MiB memSize = 6 MiB, x 2 = 12 MiB per channel;
# NCCL 2.21.5 (pinned for vLLM 0.6.6-0.8.5): 8 x NVLS_CHUNKSIZE 128 KiB = 1 MiB + 2 MiB = 3 MiB,
# x 2 = 6 MiB; NCCL 2.22+ (vLLM 0.10.2+ pins 2.27.3): 1 MiB, x 2 = 2 MiB, over 16 NVLS channels,
# and connected only on first use since vLLM stopped setting NCCL_CUMEM_ENABLE=0 (0.8.5 set it,
# 0.10.2 does not): one communicator (PyNccl's all-reduce) at most.
# Source: 24 collective channels on 8-GPU H100/H200 boards (NCCL INFO "24 coll channels, ...,
# 16 nvls channels" in published nccl-tests logs; vllm#9699 prints nvlsPerRankSize 301,989,888 =
# 24 x 2 x 6 MiB and nvlsTotalSize 2,415,919,104 for 8 H200s on NCCL 2.20). Check: vllm#9699's
# blocks with NVLS on and off differ by 4.9-5.0 GiB per rank; 2 x 2,304 MiB = 4.5 GiB here.
NVLS_COLL_CHANNELS = 24
NVLS_CHANNELS_SINCE_2_22 = 16
NVLS_CHANNEL_BYTES = {"0.6": 12 * MIB, "0.6.5": 6 * MIB, "0.9.0": 2 * MIB}  # by vLLM label, oldest first
NCCL_COMMUNICATORS_PER_RANK = 2
NCCL_LAZY_SINCE = "0.9.0"  # our first label after 0.8.5, the last release that set NCCL_CUMEM_ENABLE=0

# Source: shared/reference/engines.md section 1.8 (0.2-1 GiB for dense 7-30B models); the
# positive values in the records are 0.10, 0.39, 0.60 and 1.03 GiB (median 0.5).
CUDA_GRAPH_BYTES = 512 * MIB


_SAMPLER_NAMES = {
    "flashinfer": "FlashInfer's kernels",
    "pytorch": "the PyTorch sort path",
    "v2": "the V2 model runner's logits-only profile (a warm start)",
}
# The other end of each path's range: FlashInfer's and the sort path bound each other; the V2
# runner's light profile is bounded by a cold start, near the sort path's figure.
_OTHER_SAMPLER = {"flashinfer": "pytorch", "pytorch": "flashinfer", "v2": "pytorch"}

# Source: vllm/model_executor/layers/quantization/mxfp4.py Mxfp4MoEMethod: create_weights
# allocates the expert matrices padded for the MoE kernel (per rank: intermediate width multiple,
# hidden width multiple). Marlin: "n % 256 == 0 and k % 128 == 0" -> intermediate to 128, hidden to
# 256; Triton: intermediate to 64; FlashInfer (SM100 TRT-LLM / BF16): both to 256. MXFP4 stores
# 4 bits + one 8-bit scale per 32 weights = 17/32 B per weight. process_weights_after_loading:
# Triton and FlashInfer turn the bf16 expert biases into float32; Triton swizzles the scales into
# a new tensor (PrecisionConfig) and never frees layer.w13/w2_weight_scale, so it holds the
# scales twice (1 B more per 32 weights). Checked on published logs: A100 TP4 Marlin 17.22 GiB
# (ours 17.24), H100 Marlin 65.97 GiB (vllm#23278; ours 65.91), H100 Triton 64.38 GiB
# (vllm#33155, llm-d; ours 64.19).
MXFP4_PAD = {"marlin": (128, 256), "triton": (64, 1), "flashinfer": (256, 256)}
MXFP4_BYTES_PER_WEIGHT = 17 / 32
_MXFP4_FP32_BIAS = frozenset({"triton", "flashinfer"})


MLA_ABSORPTION_SINCE = "0.7.1"
MLA_ABSORPTION_UNTIL = "0.8"


def mla_absorption_bytes(m: ModelSpec, fmt: WeightFormat, tp: int, version: str) -> int:
    """Bytes one rank holds beside the checkpoint's MLA weights.

    Source: vllm/attention/backends/mla/utils.py (0.7.x) MLACommonImpl.process_weights_after_loading
    (VLLM_MLA_PERFORM_MATRIX_ABSORPTION, on by default): "we end up with absorbed weights for
    decode and another copy of raw weights for prefill". Per layer, N = heads / tp: W_QR
    (q_lora_rank x N x rope dim, bf16); a quantized kv_b_proj dequantized to bf16 (kv_lora_rank x
    N x (nope + v dims)), kept through its W_UK / W_UV views; W_Q_UK (q_lora_rank x N x
    kv_lora_rank) and W_UV_O (N x kv_lora_rank x hidden), re-quantized to fp8 (1 B) when the
    weights are fp8, else bf16 (2 B); their block scales (~17 KB a layer) are left out. The V1 MLA
    backend (vllm/v1/attention/backends/mla/common.py) keeps only W_UK_T / W_UV, views of the
    dequantized kv_b_proj: that copy alone, for quantized weights. The 0.8 label is where we take
    the absorbed copies to be gone (the release that made V1 the default).
    """
    mla = m.mla
    if mla is None or not version_at_least(version, MLA_ABSORPTION_SINCE):
        return 0
    n = m.num_attention_heads // tp
    quantized = fmt.rules not in ("bf16", "fp16")
    kv_b = mla.kv_lora_rank * n * (mla.qk_nope_head_dim + mla.v_head_dim) * 2 if quantized else 0
    if version_at_least(version, MLA_ABSORPTION_UNTIL):
        return m.num_hidden_layers * kv_b
    q = mla.q_lora_rank or m.hidden_size
    absorbed = 1 if fmt.rules == "fp8" else 2
    w_qr = q * n * mla.qk_rope_head_dim * 2
    w_q_uk = q * n * mla.kv_lora_rank * absorbed
    w_uv_o = n * mla.kv_lora_rank * m.hidden_size * absorbed
    return m.num_hidden_layers * (w_qr + kv_b + w_q_uk + w_uv_o)


def mxfp4_backends(gpu: GpuSpec | None) -> tuple[str, ...]:
    """The MXFP4 MoE kernels vLLM may take on `gpu`, the standard images' first; () where the
    catalog gives no CUDA compute capability (other vendors: the checkpoint layout is used).

    Source: mxfp4.py get_mxfp4_backend (0.10.1+): FlashInfer on SM100 when installed (the images
    ship it); triton_kernels only for 9.0 <= capability < 11.0 and when installed (with torch
    >= 2.8), else Marlin, the only kernel before Hopper and on SM12x (RTX 50, RTX PRO 6000, GB10).
    On Hopper, Triton (images with triton_kernels) or Marlin (without): unknown, a range.
    """
    sm = gpu.cuda_sm if gpu is not None else None
    if sm is None:
        return ()
    if sm < 90 or sm >= 110:
        return ("marlin",)
    if sm < 100:
        return ("triton", "marlin")
    return ("flashinfer", "triton")


def _mxfp4_unknown(taken: str, others: list[str]) -> str:
    """The one sentence (assumptions and range reason) for an MXFP4 kernel the install decides."""
    return (
        f"MXFP4 MoE kernel unknown (depends on the install): {taken} is the main value, "
        f"{' or '.join(others)} the range's other end (--mxfp4-backend pins it)"
    )


def mxfp4_padding_bytes(m: ModelSpec, tp: int, backend: str) -> int:
    """Bytes one rank holds beyond the checkpoint's MXFP4 experts in `backend`'s layout.

    Per expert and MoE layer: 3 matrices of (I' x H' - I x H) x 17/32 B, I = expert width / tp
    (vLLM shards each expert's intermediate dimension), I' and H' padded to the kernel's multiples;
    Triton: + 3 x I' x H' / 32 B of scales held twice; expert biases (2 I' + H') x 4 B in float32
    (Triton, FlashInfer) or x 2 B (Marlin), less the checkpoint's (2 I + H) x 2 B.
    """
    moe = m.moe
    if moe is None:
        return 0
    i = moe.expert_intermediate_size / tp
    h = m.hidden_size
    pad_i, pad_h = MXFP4_PAD[backend]
    ip, hp = pad_i * math.ceil(i / pad_i), pad_h * math.ceil(h / pad_h)
    per_expert = 3 * (ip * hp - i * h) * MXFP4_BYTES_PER_WEIGHT
    if backend == "triton":
        per_expert += 3 * ip * hp / 32  # the checkpoint's scales, kept beside the swizzled copy
    if moe.expert_bias:
        bias_bytes = 4 if backend in _MXFP4_FP32_BIAS else 2
        per_expert += (2 * ip + hp) * bias_bytes - (2 * i + h) * 2
    layers = m.num_hidden_layers - moe.first_dense_layers
    return round(moe.num_experts * layers * per_expert)


def default_sampler(version: str, m: ModelSpec | None = None) -> str:
    """The sampler path a release's standard images take in the profile run: the V2 model runner's
    logits-only profile where it is the default (V2_PROFILE_SINCE), else the top-k/top-p path."""
    if (
        m is not None
        and version_at_least(version, V2_PROFILE_SINCE)
        and not version_at_least(version, V2_PROFILE_UNTIL)
        and (m.moe is None or version_at_least(version, V2_PROFILE_MOE_SINCE))
    ):
        return "v2"
    on = not version_at_least(version, SAMPLER_OFF_SINCE) or version_at_least(version, SAMPLER_ON_AGAIN_SINCE)
    return "flashinfer" if on else "pytorch"


def _sampler_bytes(sampler: str) -> float:
    return {"flashinfer": FLASHINFER_SAMPLER_BYTES_PER_LOGIT, "v2": V2_PROFILE_BYTES_PER_LOGIT}.get(
        sampler, SAMPLER_BYTES_PER_LOGIT
    )


def extensible_kv(version: str, gpu: GpuSpec | None) -> bool:
    """Whether the release sizes an extensible KV cache after warmup (0.34+, CUDA and ROCm)."""
    on_platform = gpu is None or gpu.vendor in ("NVIDIA", "AMD")
    return version_at_least(version, EXTENSIBLE_KV_SINCE) and on_platform


def block_tokens(version: str) -> int:
    """Tokens per KV block by default (vllm/config/cache.py DEFAULT_BLOCK_SIZE)."""
    return BLOCK_TOKENS_SINCE_0_34 if version_at_least(version, EXTENSIBLE_KV_SINCE) else BLOCK_TOKENS


def default_gpu_util(version: str, gpu: GpuSpec | None = None) -> float:
    """vLLM's gpu_memory_utilization when none is given: 0.9, 0.92 from 0.20, 1.0 with the
    extensible KV cache (0.34+ on CUDA and ROCm)."""
    if extensible_kv(version, gpu):
        return EXTENSIBLE_UTIL
    return DEFAULT_GPU_UTIL_SINCE_0_20 if version_at_least(version, "0.20") else DEFAULT_GPU_UTIL


def extensible_kv_bytes(requested: int, free_at_init: int, used: int, transient: int, rocm: bool) -> int:
    """The KV cache vLLM 0.34+ commits after warmup (EXTENSIBLE_KV_SINCE, measure_kv_cache_bytes):
    min(requested - used, free at init - used - margin) - the transient peak, where margin =
    max(1 GiB (3 on ROCm), 0.75 x transient). Torch's reservation growth is taken to stay within
    the transient peak."""
    floor = KV_MARGIN_FLOOR_ROCM_BYTES if rocm else KV_MARGIN_FLOOR_BYTES
    margin = max(floor, int(transient * KV_MARGIN_FRACTION))
    return min(requested - used, free_at_init - used - margin) - transient


def _non_torch_tp1(version: str) -> int:
    """Non-torch memory of one rank: V0 before PR #10511 counted the CUDA context and other
    processes; from 0.6.5 (V0 and V1) only what this process holds outside PyTorch."""
    return NON_TORCH_V1_BYTES if version_at_least(version, BASELINE_PROFILING_SINCE) else NON_TORCH_V0_BYTES


def nvls_bytes(gpu: GpuSpec | None, tp: int, version: str) -> int:
    """NCCL's NVLS buffers one rank holds (0 where NCCL does not set them up): ranks x channels x
    the per-channel bytes of the NCCL this vLLM release runs, for each communicator that
    allocates them (NVLS_CHANNEL_BYTES and the sources above)."""
    if gpu is None or tp <= 2 or gpu.cuda_sm is None or gpu.cuda_sm < 90:
        return 0
    if (gpu.link_gbs or 0) < NVLINK_CLASS_GBS:  # PCIe and bridged cards: no NVSwitch multicast
        return 0
    per_channel = next(b for v, b in reversed(NVLS_CHANNEL_BYTES.items()) if version_at_least(version, v))
    if version_at_least(version, NCCL_LAZY_SINCE):
        return tp * NVLS_CHANNELS_SINCE_2_22 * per_channel
    return NCCL_COMMUNICATORS_PER_RANK * tp * NVLS_COLL_CHANNELS * per_channel


def non_torch_bytes(
    gpu: GpuSpec | None, tp: int, version: str, nvls: bool | None = None, p2p: bool | None = None
) -> int:
    """One rank's non-torch memory: the process's own (_non_torch_tp1), with tensor parallelism over
    peer-to-peer GPUs (`p2p`, default_p2p when None) the NCCL ring buffers and custom all-reduce
    (NON_TORCH_TP_EXTRA_BYTES), and NVLS (nvls_bytes) unless `nvls` is False (NCCL_NVLS_ENABLE=0)."""
    if tp <= 1 or not (default_p2p(gpu) if p2p is None else p2p):
        return _non_torch_tp1(version)
    shared = 0 if nvls is False else nvls_bytes(gpu, tp, version)
    return _non_torch_tp1(version) + NON_TORCH_TP_EXTRA_BYTES + shared


def _batch_defaults(version: str, gpu: GpuSpec | None) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) of `vllm serve` by device memory.

    Source: vllm/engine/arg_utils.py EngineArgs.get_batch_defaults (engines.md section 1.5), read in
    the release sdists: >= 160 GiB 1024/16384 from 0.28.0 (absent in 0.27.0); >= 70 GiB and not an
    A100 1024/8192 (0.9.0 on), and not a GB10 (DGX Spark, compute capability 12.1) from 0.33.0
    (absent in 0.32.0); else 256/2048.
    """
    if gpu is None:
        return 256, 2048
    total_gib = cuda_total_bytes(gpu) / GIB
    name = gpu.name.lower()
    if version_at_least(version, LARGEST_TIER_SINCE) and total_gib >= 160:
        return 1024, 16384
    gb10 = "gb10" in name and version_at_least(version, GB10_TIER_EXCLUDED_SINCE)
    if total_gib >= 70 and "a100" not in name and not gb10:
        return 1024, 8192
    return 256, 2048


def _resolved(
    m: ModelSpec, w: Workload, gpu: GpuSpec | None, s: EngineSettings, version: str
) -> dict[str, int | float]:
    seqs, batched = _batch_defaults(version, gpu)
    max_len = w.ctx_tokens
    if version_at_least(version, "0.9.0"):
        seqs = s.max_num_seqs or seqs
        batched = s.max_num_batched_tokens or batched
        batched = min(batched, seqs * max_len)
        seqs = min(seqs, batched)
    else:
        # V0: chunked prefill only above 32K context; otherwise one prefill of max_model_len.
        seqs = s.max_num_seqs or 256
        default_batched = 512 if max_len > 32768 else max(max_len, 2048)
        batched = s.max_num_batched_tokens or default_batched
    return {
        "gpu_memory_utilization": s.gpu_util or default_gpu_util(version, gpu),
        "max_num_seqs": seqs,
        "max_num_batched_tokens": batched,
        "max_model_len": max_len,
        "tensor_parallel_size": s.tp,
        "block_size": block_tokens(version),
        "enforce_eager": bool(s.enforce_eager),
    }


def _measured_settings(measured: Measured, gpu: GpuSpec | None) -> dict[str, int]:
    """The profile's byte terms as resolved settings (the view reads them from there too). A
    negative graph figure (what capture freed as vLLM printed it) is kept as the figure and
    counts as 0 in every sum."""
    out: dict[str, int] = {}
    if measured.non_torch_bytes is not None:
        out["non_torch_bytes"] = measured.non_torch_bytes
    if measured.cuda_graph_bytes is not None:
        out["cuda_graph_bytes"] = measured.cuda_graph_bytes
    if measured.cuda_total_bytes is not None and gpu is not None:
        out["cuda_total_bytes"] = measured.cuda_total_bytes
    return out


def _measured_words(measured: Measured, non_torch: int, graphs: int, scale: float) -> str:
    parts = [f"non-torch {non_torch / GIB:.2f} GiB", f"CUDA graphs {graphs / GIB:.2f} GiB"]
    if measured.activation_scale is not None:
        parts.append(f"activation peak x {scale:.4f} of our formula")
    if measured.weights_bytes_per_gpu is not None:
        parts.append(f"weights {measured.weights_bytes_per_gpu / GIB:.4f} GiB")
    if measured.cuda_total_bytes is not None:
        parts.append(f"CUDA total {measured.cuda_total_bytes / GIB:.2f} GiB")
    return f"calibrated from {measured.source} (vllm {measured.version}): " + ", ".join(parts)


def _hma(m: ModelSpec, version: str) -> bool:
    """The hybrid KV-cache manager gives windowed layers their own groups (0.9.1+), except for
    chunked local attention, where it is turned off by default (vllm/config/vllm.py)."""
    return version_at_least(version, "0.9.1") and m.layer_pattern.local_attention != "chunked"


def _in_flight(version: str, batched: int) -> int:
    # Source: vllm/v1/kv_cache_interface.py SlidingWindowSpec: window - 1 + in-flight tokens;
    # from 0.26 max_concurrent_batches (2 with async scheduling) x max_num_batched_tokens
    # (IN_FLIGHT_TWO_BATCHES_SINCE).
    return (2 if version_at_least(version, IN_FLIGHT_TWO_BATCHES_SINCE) else 1) * batched


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
    r: dict[str, int | float | bool | str] = dict(_resolved(m, workload, gpu, settings, version))
    v0 = not version_at_least(version, "0.9.0")
    batched, seqs = int(r["max_num_batched_tokens"]), int(r["max_num_seqs"])
    rotary = m.mla.qk_rope_head_dim if m.mla else m.head_dim
    rope_bytes = m.max_position_embeddings * rotary * 2
    non_torch = non_torch_bytes(gpu, settings.tp, version, settings.nccl_nvls, settings.gpu_p2p)
    # --enforce-eager captures no CUDA graphs (and 0.20+ estimates none).
    graphs = 0 if settings.enforce_eager else CUDA_GRAPH_BYTES
    if settings.enforce_eager:
        r["cuda_graph_bytes"] = 0
    scale = 1.0
    extra_weights, extra_formula = (
        rope_bytes,
        (f"rotary cos/sin cache {m.max_position_embeddings:,} positions x {rotary} x 2 B = {rope_bytes:,} B"),
    )
    absorbed = mla_absorption_bytes(m, fmt, settings.tp, version)
    if absorbed:
        extra_weights += absorbed
        extra_formula += f" + MLA's dequantized / absorbed copies {absorbed:,} B"
    backends = mxfp4_backends(gpu) if fmt.rules == "mxfp4-moe" and m.moe is not None else ()
    if settings.mxfp4_backend is not None and not backends:
        raise SpecError(
            f"--mxfp4-backend applies to MXFP4 MoE weights on an NVIDIA GPU (gpt-oss as released); "
            f"here the weights are {fmt.name}"
            + ("" if gpu is None or gpu.cuda_sm is not None else f" on {gpu.name}")
            + ": drop it"
        )
    mxfp4_words = ""
    unread = 0
    if backends:
        backend = settings.mxfp4_backend or backends[0]
        if backend not in backends:
            assert gpu is not None
            raise SpecError(
                f"--mxfp4-backend {backend}: vLLM does not take it on {gpu.name} (sm_{gpu.cuda_sm}); "
                f"it takes {' or '.join(backends)} there"
            )
        r["mxfp4_backend"] = backend
        pad = mxfp4_padding_bytes(m, settings.tp, backend)
        extra_weights += pad
        unread = pad
        extra_formula += f" + MXFP4 experts in {backend}'s padded layout {pad:,} B"
        if settings.mxfp4_backend is None and len(backends) > 1:
            mxfp4_words = _mxfp4_unknown(backend, [b for b in backends if b != backend])
    assumptions = [
        f"vLLM {version} defaults: max_num_seqs {seqs}, max_num_batched_tokens {batched:,}, "
        f"gpu_memory_utilization {r['gpu_memory_utilization']:g}",
        f"activation peak = the profile run: max of forward{' (+ fp32 logits)' if v0 else ''} and sampler over "
        f"{min(seqs, batched)} rows",
    ]
    if extensible_kv(version, gpu):
        util = r["gpu_memory_utilization"]
        assumptions.append(
            f"vLLM {version} sizes its KV cache after warmup and CUDA-graph capture from the memory then "
            "free, keeping the profiled peak plus graphs and a margin of max(1 GiB, 0.75 x that) free"
            + (
                f"; gpu_memory_utilization {util:g} caps it (vLLM warns when that withholds 1 GiB or more: "
                "leave it unset unless other processes share the GPU)"
                if settings.gpu_util is not None and float(util) < 1
                else " (gpu_memory_utilization unset: the whole card)"
            )
        )
    if settings.tp <= 1 and (settings.gpu_p2p is not None or settings.nccl_nvls is not None):
        assumptions.append(
            "one GPU: --gpu-p2p and --nccl-nvls change nothing (NCCL's buffers exist with tensor parallelism)"
        )
    if v0 and settings.sampler is not None:
        assumptions.append("V0's profile run always takes the PyTorch sort path: --sampler changes nothing")
    elif not v0:
        sampler = settings.sampler or default_sampler(version, m)
        r = {**r, "sampler": sampler}
        if settings.sampler is None:
            other = _OTHER_SAMPLER[sampler]
            assumptions.append(
                f"sampler path unknown (depends on the install): vLLM {version}'s standard images take "
                f"{_SAMPLER_NAMES[sampler]} ({_sampler_bytes(sampler):g} B per logit), the figures' main value; "
                f"{_SAMPLER_NAMES[other]} ({_sampler_bytes(other):g} B) is the range's other end; the verdict "
                "counts the smaller KV pool; --sampler pins it"
            )
    if mxfp4_words:
        assumptions.append(mxfp4_words)
    measured = settings.measured
    if measured is not None and not measured.has_memory_terms:
        measured = None  # speed factors only (bench --save): nothing for the memory terms
    if measured is not None and measured.model == m.id and gpu is not None and measured.gpu == gpu.id:
        if measured.tp != settings.tp:
            measured = None
            assumptions.append(
                "the calibration profile was measured at another tensor-parallel size: not used"
            )
    elif measured is not None:
        measured = None  # a profile applies where it was measured: its own model and GPU
    if measured is not None:
        # A calibration profile from this engine, model, GPU and tensor-parallel size: its
        # measured terms replace our defaults; what depends on settings still follows them.
        r = {**r, **_measured_settings(measured, gpu)}
        # The measured terms hold the install's own sampler path: no range around them.
        r["calibrated_from"] = measured.source
        non_torch = int(r.get("non_torch_bytes", non_torch))
        graphs = max(0, int(r.get("cuda_graph_bytes", graphs)))
        scale = measured.activation_scale or 1.0
        if measured.weights_bytes_per_gpu is not None and measured.weights_format == fmt.name:
            from vramcalc.core.estimate import weight_bytes

            extra_weights = measured.weights_bytes_per_gpu - weight_bytes(m, fmt, settings.tp).gpu_bytes
            extra_formula = f"measured weights {measured.weights_bytes_per_gpu:,} B (calibration profile)"
            unread = min(unread, max(0, extra_weights))
        assumptions.append(_measured_words(measured, non_torch, graphs, scale))
    reserve = CUDA_CONTEXT_BYTES + non_torch + graphs
    return EnginePlan(
        engine=NAME,
        version=version,
        kv_frees_windows=_hma(m, version),
        kv_window_extra_tokens=_in_flight(version, batched),
        kv_block_tokens=block_tokens(version),
        prefill_tokens=batched,
        sampled_rows=min(seqs, batched),
        sampler_bytes_per_logit=V0_SAMPLER_BYTES_PER_LOGIT if v0 else _sampler_bytes(str(r["sampler"])),
        forward_logit_bytes=V0_LOGIT_BYTES if v0 else 0.0,
        hidden_temporaries=HIDDEN_TEMPORARIES,
        fused_moe=True,
        # Source: V0's scheduler (vllm/core/scheduler.py _schedule_default) runs waiting prompts
        # first, in a step of their own, unless chunked prefill is on (by default only above 32K
        # context: the V0 branch of _resolved); V1 always chunks them into the decode steps.
        prefill_apart=v0 and int(r["max_model_len"]) <= 32768 and batched >= int(r["max_model_len"]),
        gpu_p2p=settings.gpu_p2p,
        activation_scale=scale,
        tp=settings.tp,
        extra_weight_bytes=extra_weights,
        unread_weight_bytes=unread,
        # Source: vllm/model_executor/models/utils.py maybe_offload_to_cpu: parameters up to
        # cpu_offload_gb x 1024**3 bytes stay in pinned host memory and are read over PCIe (UVA)
        # in every forward pass; only when --cpu-offload-gb is given.
        offload_weight_bytes=int((settings.cpu_offload_gb or 0) * GIB),
        extra_weight_formula=extra_formula,
        reserve_bytes=reserve,
        reserve_formula=(
            f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB + non-torch {non_torch / GIB:.2f} GiB + CUDA graphs "
            f"{graphs // MIB} MiB = {reserve:,} B"
        ),
        reserve_source=(
            "CUDA context: pytorch#107667/#20532; non-torch and graphs: vLLM records in tests/calibration "
            "(vllm/v1/worker/gpu_worker.py Worker.determine_available_memory)"
        ),
        activation_source=(
            "vllm/v1/worker/gpu_model_runner.py profile_run + _dummy_sampler_run; sampler bytes per logit "
            "calibrated on tests/calibration vLLM records"
        ),
        kv_source=(
            f"vllm/v1/kv_cache_interface.py (page = {block_tokens(version)} tokens x kv_heads x head_dim x 2 x "
            "dtype; sliding window keeps window - 1 + in-flight tokens + 1 block); hybrid manager since 0.9.1"
        ),
        assumptions=tuple(assumptions),
        settings=dict(r),
    )


def view(estimate: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> EngineView:
    """The startup figures vLLM logs, from the same weights, activation and reserve terms.

    KV pool = ceil(util x total) - weights - activation peak - non-torch (- graphs since 0.20);
    blocks = floor(pool / (page x layers per group)); capacity and concurrency as
    vllm/v1/core/kv_cache_utils.py reports them (engines.md sections 1.1-1.4).
    """
    e, m, p = estimate, estimate.model, estimate.plan
    r = p.settings
    util = float(r["gpu_memory_utilization"])
    max_len = int(r["max_model_len"])
    total = int(r.get("cuda_total_bytes", cuda_total_bytes(gpu)))
    requested = math.ceil(util * total)
    v0 = not version_at_least(version, "0.9.0")
    non_torch = int(
        r.get("non_torch_bytes", non_torch_bytes(gpu, p.tp, version, settings.nccl_nvls, settings.gpu_p2p))
    )
    # gpu_worker.py subtracts the estimate from the KV budget when it is on (GRAPHS_INSIDE_SINCE);
    # 0.20's own log line says "default since v0.21.0", but its code is already on.
    graphs_inside = version_at_least(version, GRAPHS_INSIDE_SINCE)
    graph_bytes = int(r.get("cuda_graph_bytes", CUDA_GRAPH_BYTES))
    graphs = max(0, graph_bytes) if graphs_inside else 0
    extensible = extensible_kv(version, gpu)
    rocm = gpu.vendor == "AMD"

    def budget_of(act: int, weights: int, non_torch: int) -> int:
        """What the profile leaves of the requested memory (the pool; from 0.34 the plan before warmup)."""
        return requested - weights - act - non_torch - graphs

    def pool_of(act: int, weights: int, non_torch: int) -> int:
        """The KV pool: the budget, or the extensible cache sized after warmup (extensible_kv_bytes)."""
        if not extensible:
            return budget_of(act, weights, non_torch)
        used = weights + non_torch + graphs
        return extensible_kv_bytes(requested, total - CUDA_CONTEXT_BYTES, used, act + graphs, rocm)

    budget = budget_of(e.activations.bytes, e.weights_bytes, non_torch)
    pool = pool_of(e.activations.bytes, e.weights_bytes, non_torch)
    budget_text = (
        f"{requested:,} - {e.weights_bytes:,} - {e.activations.bytes:,} - {non_torch:,}"
        + (f" - {graphs:,}" if graphs else "")
        + f" = {budget:,}"
    )

    bt = block_tokens(version)
    groups = kv_layer_groups(m, p.tp)
    page = bt * kv_bytes(e.kv_dtype, groups[0][0].elements_per_token)
    n_layers = sum(n for _, n in groups)
    n_full = sum(n for lay, n in groups if lay.window_tokens is None or not p.kv_frees_windows)
    n_local = n_layers - n_full
    if n_local and n_full:
        small, large = min(n_full, n_local), max(n_full, n_local)
        group = large if large < 1.5 * small else small
        full_groups, local_groups = math.ceil(n_full / group), math.ceil(n_local / group)
    else:
        group, full_groups, local_groups = n_layers, 1, 0
    per_request = full_groups * math.ceil(max_len / bt)
    if local_groups:
        window = next(lay.window_tokens for lay, _ in groups if lay.window_tokens is not None)
        assert window is not None
        span = min(window - 1 + p.kv_window_extra_tokens, max_len)
        per_request += local_groups * (math.ceil(span / bt) + 1)
    n_groups = full_groups + local_groups

    def from_pool(pool: int) -> tuple[int, int, float]:
        """Blocks, token capacity and concurrency a KV pool of `pool` bytes gives."""
        blocks = max(0, pool // (page * group))
        concurrency = blocks / per_request if per_request else 0.0
        if version_at_least(version, CAPACITY_FROM_CONCURRENCY_SINCE):
            return blocks, math.floor(concurrency * max_len), concurrency
        return blocks, (blocks // n_groups) * bt, concurrency

    blocks, capacity, concurrency = from_pool(pool)
    # Regimes the tool cannot know (the install's sampler path, its MXFP4 MoE kernel): each one's
    # other ends give the range; the pool's low end takes every unknown at its larger peak.
    calibrated = "calibrated_from" in p.settings
    unknown: list[str] = []
    acts = [e.activations.bytes]
    if not v0 and settings.sampler is None and not calibrated:
        taken = str(p.settings.get("sampler"))
        other = _sampler_bytes(_OTHER_SAMPLER[taken])
        acts.append(plan_activations(m, p, other).bytes)
        unknown.append(
            f"sampler path unknown: {_SAMPLER_NAMES[taken]} is the main value (--sampler flashinfer|pytorch|v2 pins it)"
        )
    weights = [e.weights_bytes]
    taken_backend = p.settings.get("mxfp4_backend")
    if taken_backend is not None and settings.mxfp4_backend is None and not calibrated:
        others = [b for b in mxfp4_backends(gpu) if b != taken_backend]
        here = mxfp4_padding_bytes(m, p.tp, str(taken_backend))
        weights += [e.weights_bytes - here + mxfp4_padding_bytes(m, p.tp, b) for b in others]
        if others:
            unknown.append(_mxfp4_unknown(str(taken_backend), others))
    # NCCL's buffers where the install decides: NVLS (vLLM's default, gone where NCCL_NVLS_ENABLE=0
    # or the fabric has no multicast: the main value counts them) and the ring buffers, on the GPU
    # only when the GPUs reach each other peer to peer (default_p2p: the main value).
    non_torchs = [non_torch]
    p2p = default_p2p(gpu) if settings.gpu_p2p is None else settings.gpu_p2p
    nvls = 0
    if not calibrated and "non_torch_bytes" not in r and p.tp > 1:
        if settings.nccl_nvls is None and p2p:
            nvls = nvls_bytes(gpu, p.tp, version)
        if nvls:
            non_torchs.append(non_torch - nvls)
            unknown.append(
                f"NCCL's NVLS buffers {nvls / GIB:.2f} GiB per GPU counted (vLLM's default on an NVSwitch board); "
                "NCCL_NVLS_ENABLE=0 frees them (--nccl-nvls/--no-nccl-nvls pins it)"
            )
        if settings.gpu_p2p is None:
            non_torchs.append(non_torch_bytes(gpu, p.tp, version, settings.nccl_nvls, not p2p))
            unknown.append(
                "peer-to-peer between the GPUs unknown: the main value takes "
                + (
                    "it (datacenter and workstation cards have it)"
                    if p2p
                    else "none (GeForce cards lack it with the stock driver; RCCL takes it over PCIe only "
                    "with HSA_FORCE_FINE_GRAIN_PCIE=1)"
                )
                + "; "
                f"NCCL keeps {NON_TORCH_TP_EXTRA_BYTES / GIB:.2f} GiB of ring buffers per GPU only over P2P "
                "(--gpu-p2p/--no-gpu-p2p pins it)"
            )
    ranges: list[tuple[str, float, float]] = []
    if unknown:
        pool_low = pool_of(max(acts), max(weights), max(non_torchs))
        pool_high = pool_of(min(acts), min(weights), min(non_torchs))
        low, high = from_pool(pool_low), from_pool(pool_high)
        for key, lo, hi in (
            ("weights_bytes_per_gpu", min(weights), max(weights)),
            ("activation_peak_bytes", min(acts), max(acts)),
            ("non_torch_bytes", min(non_torchs), max(non_torchs)),
            ("kv_pool_bytes", pool_low, pool_high),
            ("num_gpu_blocks", low[0], high[0]),
            ("kv_capacity_tokens", low[1], high[1]),
            ("max_concurrency", round(low[2], 2), round(high[2], 2)),
            ("starts", pool_low > 0 and low[2] >= 1, pool_high > 0 and high[2] >= 1),
        ):
            if lo != hi:
                ranges.append((key, lo, hi))
    starts = pool > 0 and concurrency >= 1
    if extensible:
        # The cache is committed after warmup: the process holds what it measured, the cache, and
        # at its peak the transient activations.
        process = (
            CUDA_CONTEXT_BYTES + e.weights_bytes + non_torch + graphs + max(0, pool) + e.activations.bytes
        )
    else:
        process = requested + CUDA_CONTEXT_BYTES + (0 if graphs_inside else max(0, graph_bytes))
    usable = (gpu.usable_mib or 0) * MIB or total
    figures = (
        EngineFigure(
            "cuda_total_bytes",
            "total_gpu_memory",
            total,
            "bytes",
            f"{total:,} B as CUDA reports it",
            "catalog cuda_total_mib, or nvidia-smi total - 480 MiB",
        ),
        EngineFigure(
            "requested_bytes",
            "requested memory (gpu_memory_utilization x total)",
            requested,
            "bytes",
            f"ceil({util:g} x {total:,})",
            "vllm/v1/worker/utils.py request_memory",
        ),
        EngineFigure(
            "weights_bytes_per_gpu",
            "Model loading took",
            e.weights_bytes,
            "bytes",
            "weights per GPU + rotary cache",
            "vllm/v1/worker/gpu_model_runner.py load_model",
        ),
        EngineFigure(
            "activation_peak_bytes",
            "torch peak memory increase",
            e.activations.bytes,
            "bytes",
            "see activations term",
            p.activation_source,
        ),
        EngineFigure(
            "non_torch_bytes",
            "non-torch memory",
            non_torch,
            "bytes",
            f"{non_torch / GIB:.2f} GiB" + (f" (NCCL NVLS {nvls / GIB:.2f} GiB included)" if nvls else ""),
            "vLLM records in tests/calibration; NVLS: NVIDIA/nccl src/transport/nvls.cc",
        ),
        EngineFigure(
            "cuda_graph_bytes",
            "CUDA graph memory (estimated)",
            graph_bytes,
            "bytes",
            "inside the budget" if graphs_inside else "captured after the KV cache, outside the budget",
            "vllm/envs.py VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS (default on from 0.20.0)",
        ),
        EngineFigure(
            "kv_budget_bytes",
            "Available KV cache memory" + (" (the plan before warmup)" if extensible else ""),
            budget,
            "bytes",
            budget_text,
            "vllm/v1/worker/gpu_worker.py determine_available_memory",
        ),
        EngineFigure(
            "kv_pool_bytes",
            "KV cache after warmup" if extensible else "Available KV cache memory",
            pool,
            "bytes",
            (
                f"min({requested:,} - used, {total - CUDA_CONTEXT_BYTES:,} free at init - used - margin) - "
                f"transient {e.activations.bytes + graphs:,}, used {e.weights_bytes + non_torch + graphs:,} = {pool:,}"
            )
            if extensible
            else budget_text,
            "vllm/v1/worker/extensible_kv_cache.py measure_kv_cache_bytes"
            if extensible
            else "vllm/v1/worker/gpu_worker.py determine_available_memory",
        ),
        EngineFigure(
            "num_gpu_blocks",
            "GPU blocks",
            blocks,
            "blocks",
            f"floor({pool:,} / ({page:,} B page x {group} layers))",
            "vllm/v1/core/kv_cache_utils.py get_num_blocks",
        ),
        EngineFigure(
            "kv_capacity_tokens",
            "GPU KV cache size",
            capacity,
            "tokens",
            f"{'max_concurrency x max_model_len' if version_at_least(version, CAPACITY_FROM_CONCURRENCY_SINCE) else f'{blocks} // {n_groups} groups x {bt}'}",
            "vllm/v1/core/kv_cache_utils.py _report_kv_cache_config",
        ),
        EngineFigure(
            "max_concurrency",
            f"Maximum concurrency for {max_len:,} tokens per request",
            round(concurrency, 2),
            "x",
            f"{blocks} blocks / {per_request} blocks per request",
            "get_max_concurrency_for_kv_cache_config",
        ),
        EngineFigure(
            "process_bytes",
            "GPU memory the process holds",
            process,
            "bytes",
            "CUDA context + weights + non-torch + graphs + KV cache + activation peak"
            if extensible
            else "requested + CUDA context" + ("" if graphs_inside else " + CUDA graphs"),
            "vllm/v1/worker/gpu_worker.py Worker.determine_available_memory",
        ),
        EngineFigure(
            "starts",
            "starts",
            starts,
            "",
            "KV pool > 0 and one request of max_model_len fits",
            "vLLM raises at startup otherwise",
        ),
    )
    notes: list[str] = []
    if not starts:
        notes.append(
            "vLLM would refuse to start: "
            + (
                "no memory left for KV blocks"
                if pool <= 0
                else f"max_model_len {max_len:,} exceeds the KV pool"
            )
        )
    if process > usable:
        notes.append(
            f"the process would hold {process / GIB:.2f} GiB, more than the card's {usable / GIB:.2f} GiB"
        )
    return EngineView(
        NAME,
        version,
        starts and process <= usable,
        figures,
        tuple(notes),
        tuple(ranges),
        "; ".join(unknown) if ranges else "",
    )


# Source: vllm/config/cache.py CacheDType (auto = model dtype; fp8, fp8_e4m3, fp8_e5m2).
ENGINE = Engine(NAME, VERSIONS, SETTINGS, False, ("bf16", "fp16", "fp8"), plan, view, plan_reads_users=False)
