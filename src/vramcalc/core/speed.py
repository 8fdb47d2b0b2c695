"""How fast it will feel: decode tokens/s per user, time to first token, and the offload cliff."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

from vramcalc.core.engines.common import NVLINK_CLASS_GBS, default_p2p, version_at_least
from vramcalc.core.estimate import Estimate
from vramcalc.core.formats import WeightFormat, model_tensor_bytes, model_tensor_types, routed_expert_bytes
from vramcalc.core.kv import kv_layer_groups, tokens_kept
from vramcalc.core.tensors import DECODER_MATRIX_ROLES, EXPERT_ROLES, param_counts, tensor_inventory
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GB

# Source: fraction of peak DRAM bandwidth a decode step's weight and KV reads achieve, by engine
# family, fitted together with the per-layer overhead below by scripts/fit_speed.py on the fit half
# (split by source) of tests/calibration/throughput.yaml, serving.yaml and single_user.yaml
# (2026-12-02). vLLM's 0.98 sits at the search's upper bound: CUDA-graph decode of one model reads
# its weights near the peak; what it misses lies in the per-layer cost.
DECODE_BANDWIDTH_EFFICIENCY = {
    "llama.cpp": 0.746,
    "ollama": 0.746,
    "vllm": 0.98,
    "sglang": 0.98,
    "tgi": 0.98,
    "transformers": 0.802,
}
# Source: fixed cost per layer per decode step (kernel launches, Python and scheduling), by engine
# family; fitted with the bandwidth efficiencies above (scripts/fit_speed.py, fit half).
# It is why small quantized models on fast GPUs stay far below the bandwidth roofline.
DECODE_OVERHEAD_PER_LAYER_S = {
    "llama.cpp": 0.0000395,
    "ollama": 0.0000395,
    "vllm": 0.0000856,
    "sglang": 0.0000856,
    "tgi": 0.0000856,
    "transformers": 0.00093,
}
# Source: per-layer cost of a step run eagerly (vLLM --enforce-eager, SGLang --disable-cuda-graph):
# every kernel launched from Python, about 10 launches per decoder layer at ~10 us each (PyTorch
# eager launch latency); no published eager run in tests/calibration to fit it on.
EAGER_OVERHEAD_PER_LAYER_S = {"vllm": 0.00010, "sglang": 0.00010}
# Source: the extra fixed cost of a MoE layer in a llama.cpp decode step (router, top-k, the expert
# ids, mul_mat_id launches and the weighted sum: about ten more kernels than a dense FFN), per MoE
# layer; fitted by scripts/fit_speed.py on the fit half (split by source) of the one-user decode
# records (2026-12-08; flat from 35 to 40 us). Published llama-bench runs on an RTX 4090 decode
# gpt-oss-20b and Qwen3-30B-A3B 35-80 us per layer slower than their bytes and the dense per-layer
# cost give; on the test half, gpt-oss-20b on an RTX 4090 went from +45-49% to +17-20% and Ollama's
# Qwen3-Coder-30B-A3B from +59-65% to +17%, while the bandwidth-bound DGX Spark runs moved from
# -15..+2% to -23..-7% (there the launches overlap the long kernels; not modelled).
MOE_DECODE_OVERHEAD_PER_LAYER_S = {"llama.cpp": 0.00004, "ollama": 0.00004}
# Source: fixed cost per step outside the layers (scheduler, sampler, output processing): none
# apart from the per-layer cost; the fit found no better split (scripts/fit_speed.py).
STEP_OVERHEAD_S: dict[str, float] = {}
# Source: transformers' DynamicCache grows by torch.cat every step, so each step reads the old
# cache, writes the new one and reads it again in attention (transformers/cache_utils.py); paged
# engines read each sequence's KV once per step.
KV_PASSES_PER_STEP = {"transformers": 3}

# Source: what a GPU's best dense GEMM reaches, as a share of its spec where no measurement is
# published: 0.807, the median of the NVIDIA BF16 rows of the maximum achievable matmul FLOPS (MAMF)
# table (A100 SXM 0.869, A100 PCIe 0.811, GH200 0.838, H100 SXM 0.803, B200 0.776, B300 0.786;
# github:stas00/ml-engineering compute/accelerator/README.md via shared/reference/gpus.yaml
# estimation_hints). Cards with a published MAMF use it (GpuSpec.bf16_achievable_tflops): the
# MI300X reaches 668 of its 1,307 spec TFLOPS (0.51), below what 0.55 x spec would have assumed.
ACHIEVABLE_SHARE_OF_SPEC = 0.807
# Source: the same for FP8 GEMMs: 0.745, the median of the table's NVIDIA FP8 rows (H100 SXM 0.709,
# H200 0.734, B300 0.745, B200 0.763, GH200 0.776); cards with a published FP8 MAMF use it
# (GpuSpec.fp8_achievable_tflops).
ACHIEVABLE_FP8_SHARE_OF_SPEC = 0.745

# Source: prefill is compute-bound; 0.5-0.7 x dense spec on NVIDIA datacenter parts for PyTorch
# engines (shared/reference/gpus.yaml estimation_hints.suggested_defaults), i.e. 0.55 / 0.807 = 0.68
# of the achievable GEMM rate (achievable_tflops): on a card with no MAMF figure, 0.55 x spec as
# before. llama.cpp and Ollama take the GGUF kernel paths below instead (gguf_prefill_gemm_s).
# The serving engines keep that prior: the fit (scripts/fit_speed.py) pulled it to 0.25 x spec to
# match TTFT measured under load, which also holds scheduling we do not model, and that would put
# a 27B prompt on an RTX 4090 at half of llama.cpp's measured prompt rate. transformers' 0.062 of
# the achievable GEMM (0.050 x spec) is fitted on the fit half, split by source (scan of 0.05-0.09
# by scripts/fit_speed.py's loss, 2026-12-08, when the rates moved from spec to achievable; it was
# 0.069 x spec): eager/SDPA prefill without fused kernels.
_PAGED_PREFILL = 0.55 / ACHIEVABLE_SHARE_OF_SPEC
PREFILL_COMPUTE_EFFICIENCY = {
    "vllm": _PAGED_PREFILL,
    "sglang": _PAGED_PREFILL,
    "tgi": _PAGED_PREFILL,
    "transformers": 0.062,
}

# Which kernel multiplies a GGUF weight matrix during prompt processing (ggml-cuda).
# Source: ggml-org/llama.cpp ggml/src/ggml-cuda/ggml-cuda.cu ggml_cuda_op_mul_mat_cublas: F16
# weights, and quantized ones first dequantized to F16 (to_fp16_cuda), multiply in cublasGemmEx
# with CUBLAS_COMPUTE_16F (FP16 accumulate) on NVIDIA Volta and newer; only AMD CDNA/RDNA4 use
# CUBLAS_COMPUTE_32F. Read in ggerganov/llama.cpp ggml-cuda.cu (commit 005de593, early 2024) and
# in a 2025 copy of ggml/src/ggml-cuda/ggml-cuda.cu: the same branch in both.
# Source: ggml_cuda_mul_mat at commit 005de593: quantized weights used MMQ only for batches of at
# most MMQ_MAX_BATCH_SIZE (32) tokens when FP16 tensor cores were available, so a 512-token
# ubatch took dequantize + cuBLAS. PR #8075 "CUDA: use MMQ instead of cuBLAS by default" (merged
# 2024-06-24) moved that choice to ggml_cuda_should_use_mmq, which (ggml/src/ggml-cuda/mmq.cu,
# commit 027ef876) returns true at every batch size where int8 tensor cores exist (Turing and
# newer): quantized prompt processing runs the int8 MMQ kernels. Builds from July 2024 on
# (this label) and every Ollama profile (0.6+, 2025) take MMQ.
MMQ_DEFAULT_SINCE = "2024.07"
GGUF_ENGINES = frozenset({"llama.cpp", "ollama"})
SIXTEEN_BIT_GGML = frozenset({"F16", "BF16", "F32"})
# Source: share of a kernel's tensor peak that llama.cpp's prompt GEMMs reach at ubatch 512 (cuBLAS
# FP16 and MMQ int8 alike), and the most they reach per board watt, fitted together (least squares
# on log error) on the even-numbered half of the 30 NVIDIA llama.cpp prefill records in
# tests/calibration/throughput.yaml (llama-bench pp512, May/June 2024 builds, 12 GPUs); the odd
# half tests them (tests/speed_records.py prefill_split: fit median 7%, worst 21%; test median 8%,
# worst 24%, or 34% counting the A100 SXM 8B record it xfails). The per-watt cap is why parts
# with a high spec peak per watt (H100 PCIe 756 TFLOPS at 350 W, RTX 6000 Ada 364 at 300 W, A100
# PCIe 312 at 300 W) and int8 MMQ (twice the FP16 peak; 1.33x the cuBLAS speed on an RTX 4090,
# llama.cpp PR #7676) stay well below their spec: sustained tensor GEMMs run at the board power
# limit, where GPU Boost lowers clocks until power <= TDP. The figure is specific to these kernels
# and shapes: large bf16 GEMMs reach more per watt (MAMF 253 TFLOPS on a 300 W A100 PCIe,
# shared/reference/gpus.yaml).
GGUF_PREFILL_GEMM_EFFICIENCY = 0.44
GGUF_PREFILL_TFLOPS_PER_WATT = 0.387
# Source: ggml/src/ggml-cuda/mmq.cu ggml_cuda_mul_mat_q with ids (MoE, mul_mat_id) and mmq.cuh
# mul_mat_q_case (read in ollama's vendored ggml, v0.7 to v0.24, May 2025 - May 2026): one MMQ
# kernel multiplies every expert, its tile width mmq_x chosen for the whole ubatch (128 tokens,
# get_mmq_x_max_host, on tensor-core GPUs), and each expert's tokens fill whole tiles of that width
# (expert_bounds): an expert that gets n tokens costs ceil(n / 128) full tiles. A ubatch of u tokens
# gives each of E experts u x k / E of them on average.
MOE_MMQ_TILE_TOKENS = 128
# Source: what the expert GEMMs of a llama.cpp prompt reach, at full tiles, as a share of the dense
# kernel rate above (sorting rows by expert, quantizing each expert's activations, the MXFP4 and
# k-quant MoE kernels); fitted by scripts/fit_speed.py on the fit half (split by source) of the MoE
# prompt records (tests/calibration/single_user_moe.yaml and single_user.yaml, 2026-12-08; the loss
# is flat from 0.6 to 0.65). With it, MoE prompt processing on the test half went from +327%
# (gpt-oss-20b pp512 on an RTX 3090) to +52%, and Qwen3-30B-A3B in Ollama from +718% to +161%.
MOE_PREFILL_EFFICIENCY = {"llama.cpp": 0.6, "ollama": 0.6}
# Source: decode FLOPs at large batches run at a lower share of peak than big prefill GEMMs (few
# rows per weight matrix). A prior, not the fit's choice: 0.30 x spec (0.372 of the achievable
# GEMM rate, 0.30 / 0.807). scripts/fit_speed.py drives it to its lower bound by absorbing regimes
# it does not model (MoE expert GEMMs, B200 kernels); at its 0.10 x spec a dense 70B AWQ on an A100
# at 16 users would decode at a third of what a dense GEMM at batch 16 reaches, so the prior stays
# until the data has dense records past the compute crossover.
DECODE_COMPUTE_EFFICIENCY = 0.3 / ACHIEVABLE_SHARE_OF_SPEC

# Source: how far published benchmarks fall from our figure where the regime they ran in cannot
# be known from a plan (engine build, kernel path, MoE kernels, scheduler settings): the lowest and
# highest measured / ours (as a rate: ours / measured for a time) on the fit half, split by
# source, of tests/calibration/serving.yaml, single_user.yaml and throughput.yaml, xfails left out;
# printed by scripts/fit_speed.py --ranges (2026-12-08; the GGUF decode high end 1.279 -> 1.589 when
# the MoE records joined: gpt-oss-20b on an RTX PRO 6000 decodes 1.59x our MoE step; 2026-12-09,
# the load low end 0.717 -> 0.53 when request-rate runs joined: SGLang at 4 requests/s on an A100
# PCIe has a TPOT 1.9x ours, the prompts of a random arrival stream bunching up; the load and TTFT
# high ends 1.14 -> 1.176 and 1.192 -> 1.255 when serving_2.yaml's sources joined: vLLM's 20k-token
# prompts on an H100 in the vLLM blog's FP8 KV runs; then 0.598-1.308 once SGLang's prompts ran in
# steps of their own, core/serving.py _apart; TTFT 0.124-1.773 when serving_3.yaml joined: a blog's
# Mistral-7B on one RTX 4090 at concurrency 48 waits 0.84 s for its first token where ours is 0.10;
# its 14B on two RTX 4090s at TP 2 decoded 2.2x slower than ours, 1.2x once all-reduces without
# peer-to-peer went through host memory, SHM_ALL_REDUCE_GBS), which also prints how many test-half
# figures fall inside. Kinds: decode (one user), load (2+ users: per-user decode, throughput,
# TPOT), ttft. A family with fewer than MIN_SPREAD_ROWS fit rows takes the pooled ("all") spread.
SPREAD_KINDS = ("decode", "load", "ttft")
MIN_SPREAD_ROWS = 5
SPEED_SPREAD: dict[tuple[str, str], tuple[float, float]] = {
    ("decode", "all"): (0.701, 1.756),
    ("decode", "gguf"): (0.701, 1.589),
    ("decode", "paged"): (0.769, 1.119),
    ("decode", "transformers"): (0.847, 1.756),
    ("load", "all"): (0.598, 1.308),
    ("load", "paged"): (0.598, 1.308),
    ("ttft", "all"): (0.124, 1.773),
    ("ttft", "paged"): (0.124, 1.773),
}

# Source: PCIe 4.0 x16 = 31.5 GB/s per direction (PCI-SIG); ~25 GB/s achieved by pinned copies.
PCIE_BANDWIDTH_GBS = 25.0
# Source: ggml-backend.cpp ggml_backend_sched (op_offload, on by default in llama.cpp): a matmul of
# at least 32 tokens whose weights sit in host memory runs on the GPU, the weights copied over
# PCIe for it (ggml-cuda.cu ggml_backend_cuda_device_offload_op: min_batch_size = 32; read in
# ollama's vendored ggml v0.24). A prompt on --n-cpu-moe moves its experts once per ubatch.
OP_OFFLOAD_MIN_BATCH = 32
# Source: dual-channel DDR5-5600 = 89.6 GB/s theoretical; llama.cpp's CPU matmuls reach ~50 GB/s.
HOST_MEMORY_BANDWIDTH_GBS = 50.0


# Source: tensor parallelism all-reduces the hidden state twice per layer (after attention and after
# the MLP; vllm/model_executor/layers/linear.py RowParallelLinear). A ring all-reduce sends
# 2 (n - 1) / n of the buffer through each GPU's link (NCCL ring algorithm).
ALL_REDUCES_PER_LAYER = 2
# Source: small-message all-reduce latency: ~6 us for 2 H100 over NVLink (NVIDIA/nccl#1259,
# all_reduce_perf -g 2 with CUDA graphs); ~20 us for NCCL over a PCIe switch (4 x V100 inside a
# CUDA graph, haohervchb/sglang-V100 PR #2: "NCCL costs about 20 us per all-reduce").
ALL_REDUCE_LATENCY_NVLINK_S = 6e-6
ALL_REDUCE_LATENCY_PCIE_S = 20e-6
# Source: PCIe 4.0 x16 per direction (PCI-SIG: 16 GT/s x 16 lanes x 128/130 / 8), for cards whose
# catalog entry has no link_gbs.
DEFAULT_LINK_GBS = 31.5
# Source: what an all-reduce moves per second where the GPUs have no peer-to-peer and NCCL stages
# through host memory (SHM transport): the median of four published 2-GPU all_reduce_perf tables
# at 1 MB (decode all-reduces are 10 KB-1 MB): 2 A100 SXM with NCCL_P2P_DISABLE=1, "via
# SHM/direct/direct", 7.68 GB/s (github:Dre1896/NCCL-Multi-GPU-Benchmark degraded_run.log
# @8e43dff; 22.76 GB/s with P2P on the same box); 2 RTX 4090 in docker 1.95 and in a Kubernetes
# pod 3.49 GB/s (github:kalavai-net/kalavai-client scripts/README.md @9588f6d); 2 RTX 2080 Ti,
# topo -p2p NS, 3.75 GB/s (github:Anthony-Hoo/Anthony-Hoo.github.io AutoDL post @37e805e).
SHM_ALL_REDUCE_GBS = 3.6


def all_reduce_s(m: ModelSpec, gpu: GpuSpec, tokens: int, gpus: int, p2p: bool | None = None) -> float:
    """Time one forward of `tokens` tokens spends in tensor-parallel all-reduces over the link:
    layers x 2 x ((n - 1) x latency + 2 (n - 1) / n x tokens x hidden x 2 B / bandwidth); 0 for
    one GPU. A ring all-reduce takes 2 (n - 1) steps, each paying the link latency (NCCL ring
    algorithm); the latency constants were measured with 2 GPUs (n - 1 = 1). Without peer-to-peer
    (`p2p` False, or default_p2p's GeForce default) the bytes go through host memory at
    SHM_ALL_REDUCE_GBS."""
    if gpus <= 1:
        return 0.0
    link = gpu.link_gbs or DEFAULT_LINK_GBS
    latency = ALL_REDUCE_LATENCY_NVLINK_S if link >= NVLINK_CLASS_GBS else ALL_REDUCE_LATENCY_PCIE_S
    if not (default_p2p(gpu) if p2p is None else p2p):
        link = min(link, SHM_ALL_REDUCE_GBS)
    payload = 2 * (gpus - 1) / gpus * tokens * m.hidden_size * 2
    return m.num_hidden_layers * ALL_REDUCES_PER_LAYER * ((gpus - 1) * latency + payload / (link * GB))


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


def expert_share(m: ModelSpec) -> float:
    """The routed experts' share of a MoE model's parameters (0 for dense models)."""
    if m.moe is None:
        return 0.0
    expert_params = sum(t.params for t in tensor_inventory(m) if t.role in EXPERT_ROLES)
    return expert_params / param_counts(m).total


def touched_share(m: ModelSpec, concurrent_tokens: int) -> float:
    """The share of a MoE layer's experts a step of u tokens reads: with each token picking k of E,
    the expected distinct experts are E x (1 - (1 - k/E)^u)."""
    if m.moe is None:
        return 1.0
    e, k = m.moe.num_experts, m.moe.experts_per_token
    return 1 - (1 - k / e) ** max(1, concurrent_tokens)


def active_weight_bytes(
    m: ModelSpec, weights_bytes: int, concurrent_tokens: int, expert_bytes: int | None = None
) -> int:
    """Weight bytes one decode step reads: all of them for dense models; for MoE, the non-expert
    part plus the experts the batch touches (touched_share). `expert_bytes` is the routed experts'
    part of `weights_bytes` (default: their share of the parameters)."""
    if m.moe is None:
        return weights_bytes
    experts = weights_bytes * expert_share(m) if expert_bytes is None else min(expert_bytes, weights_bytes)
    return int(weights_bytes - experts + experts * touched_share(m, concurrent_tokens))


@lru_cache(maxsize=4096)
def attention_flops_per_token(m: ModelSpec, context_tokens: int) -> float:
    """Q.K and A.V for one new token against its cache: 4 x heads x head_dim x kept tokens per layer
    (summed once per group of identical layers)."""
    width = m.num_attention_heads * (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim if m.mla else m.head_dim)
    return sum(
        4.0 * width * n * tokens_kept(layer.window_tokens, context_tokens) for layer, n in kv_layer_groups(m)
    )


def achievable_tflops(gpu: GpuSpec, weight_format: str) -> float | None:
    """The best dense GEMM rate for the format's compute: fp8 weights on fp8 tensor cores where the
    GPU has them, else 16-bit (int4 kernels dequantise to 16-bit). The card's measured MAMF where
    published, else its spec x the median share of the cards that have one."""
    if weight_format in ("fp8",) and gpu.fp8_dense_tflops:
        return gpu.fp8_achievable_tflops or gpu.fp8_dense_tflops * ACHIEVABLE_FP8_SHARE_OF_SPEC
    if gpu.bf16_achievable_tflops:
        return gpu.bf16_achievable_tflops
    spec = gpu.bf16_dense_tflops or gpu.fp16_dense_tflops
    return spec * ACHIEVABLE_SHARE_OF_SPEC if spec else None


@dataclass(frozen=True, slots=True)
class PrefillKernel:
    """The kernel that multiplies one GGUF tensor type in prompt processing, and its tensor peak."""

    path: str  # "cublas-f16", "dequantize+cublas-f16" or "mmq-int8"
    peak_tflops: float
    dequantizes: bool  # writes an F16 copy of the weights before each ubatch's GEMM


def prefill_kernel(e: Estimate, gpu: GpuSpec, ggml_type: str) -> PrefillKernel | None:
    """The kernel for `ggml_type` weights of `e`'s engine and version on `gpu` (_kernel)."""
    return _kernel(e.plan.engine, e.plan.version, gpu, ggml_type)


@cache
def _kernel(engine: str, version: str, gpu: GpuSpec, ggml_type: str) -> PrefillKernel | None:
    """ggml-cuda's path for `ggml_type` weights at a prompt-sized batch: F16 in cuBLAS with FP16
    accumulate (the FP16-accumulate rate, twice the FP32-accumulate one on GeForce cards); quantized
    types in the int8 MMQ kernels (int8 tensor rate) since MMQ_DEFAULT_SINCE, before that
    dequantized to F16 and multiplied by cuBLAS. None without a tensor figure (Apple/Metal)."""
    fp16 = gpu.fp16_acc_dense_tflops or gpu.fp16_dense_tflops or gpu.bf16_dense_tflops
    if fp16 is None:
        return None
    if ggml_type == "BF16" and gpu.bf16_dense_tflops:
        return PrefillKernel("cublas-bf16", gpu.bf16_dense_tflops, False)  # CUBLAS_COMPUTE_32F
    if ggml_type in SIXTEEN_BIT_GGML:
        return PrefillKernel("cublas-f16", fp16, False)
    mmq = engine != "llama.cpp" or version_at_least(version, MMQ_DEFAULT_SINCE)
    if mmq and gpu.int8_dense_tops:
        return PrefillKernel("mmq-int8", gpu.int8_dense_tops, False)
    return PrefillKernel("dequantize+cublas-f16", fp16, True)


def _gguf_rate(gpu: GpuSpec, kernel: PrefillKernel) -> float:
    """FLOP/s a prompt GEMM reaches on `kernel`: min(eff x kernel peak, TFLOPS-per-watt x TDP)."""
    achieved = GGUF_PREFILL_GEMM_EFFICIENCY * kernel.peak_tflops
    cap = GGUF_PREFILL_TFLOPS_PER_WATT * gpu.tdp_w if gpu.tdp_w else None
    return (min(achieved, cap) if cap else achieved) * 1e12


def gguf_prefill_gemm_s(e: Estimate, gpu: GpuSpec, prompt: int) -> float | None:
    """Prompt GEMM time on llama.cpp's GPU kernels, seconds, summed over the decoder matrices:
    2 x params x prompt / rate (for MoE, the routed experts' FLOPs x k/E), and attention FLOPs on
    the 16-bit path. The output matrix runs for the last token only (llama-bench and servers ask
    for one row of logits). None when a kernel has no tensor figure."""
    attention = prefill_kernel(e, gpu, "F16")
    ubatch = max(1, min(prompt, e.plan.prefill_tokens))
    per_token_s = _gguf_matrix_s_per_token(
        e.model,
        e.weight_format,
        gpu,
        e.plan.engine,
        e.plan.version,
        moe_expert_share(e.model, e.plan.engine, ubatch),
    )
    if attention is None or per_token_s is None:
        return None
    attention_s = prompt * attention_flops_per_token(e.model, prompt) / 2 / _gguf_rate(gpu, attention)
    return attention_s + prompt * per_token_s


def moe_expert_share(m: ModelSpec, engine: str, ubatch_tokens: int) -> float:
    """The share of the dense prompt rate a llama.cpp MoE model's expert GEMMs reach in a ubatch of
    `ubatch_tokens`: each expert's u x k / E tokens fill whole MOE_MMQ_TILE_TOKENS-wide tiles,
    n / (ceil(n / 128) x 128), times MOE_PREFILL_EFFICIENCY. 1 for dense models and other engines."""
    if m.moe is None or engine not in MOE_PREFILL_EFFICIENCY:
        return 1.0
    n = ubatch_tokens * m.moe.experts_per_token / m.moe.num_experts
    tiles = math.ceil(n / MOE_MMQ_TILE_TOKENS)
    return MOE_PREFILL_EFFICIENCY[engine] * n / (tiles * MOE_MMQ_TILE_TOKENS)


@cache
def _gguf_matrix_s_per_token(
    m: ModelSpec, fmt: WeightFormat, gpu: GpuSpec, engine: str, version: str, expert_share: float = 1.0
) -> float | None:
    """Seconds per prompt token of the decoder matrices' GEMMs, each on its type's kernel (linear in
    the prompt, so the per-tensor walk runs once per model, format, GPU, engine version and MoE
    tile share); expert matrices at `expert_share` of their kernel's rate (moe_expert_share)."""
    routed = m.moe.experts_per_token / m.moe.num_experts if m.moe else 1.0
    total_s = 0.0
    for t, ggml_type in zip(tensor_inventory(m), model_tensor_types(fmt, m), strict=True):
        if t.role not in DECODER_MATRIX_ROLES:
            continue
        kernel = _kernel(engine, version, gpu, ggml_type)
        if kernel is None:
            return None
        share = routed / expert_share if t.role in EXPERT_ROLES else 1.0
        total_s += 2.0 * t.params * share / _gguf_rate(gpu, kernel)
    return total_s


def gguf_dequantize_s(e: Estimate, gpu: GpuSpec, prompt: int) -> float:
    """On the dequantize + cuBLAS path, ceil(prompt / ubatch) writes of an F16 copy of each
    quantized matrix (stored bytes read + 2 B per weight written) at the decode bandwidth."""
    dequant_bytes = _dequantized_bytes(e.model, e.weight_format, gpu, e.plan.engine, e.plan.version)
    bandwidth = gpu.memory_bandwidth_gbs * GB * DECODE_BANDWIDTH_EFFICIENCY[e.plan.engine]
    ubatches = -(-prompt // max(1, e.plan.prefill_tokens))
    return ubatches * dequant_bytes / bandwidth


@cache
def _dequantized_bytes(m: ModelSpec, fmt: WeightFormat, gpu: GpuSpec, engine: str, version: str) -> int:
    """Bytes one ubatch moves to write F16 copies of the matrices whose kernel dequantizes."""
    total = 0
    tensors = tensor_inventory(m)
    for t, ggml_type, size in zip(
        tensors, model_tensor_types(fmt, m), model_tensor_bytes(fmt, m), strict=True
    ):
        kernel = _kernel(engine, version, gpu, ggml_type)
        if t.role in DECODER_MATRIX_ROLES and kernel is not None and kernel.dequantizes:
            total += size + 2 * t.params
    return total


@dataclass(frozen=True, slots=True)
class Stepper:
    """The cost of one forward step of one replica as a function of what runs in it: `seqs`
    decoding sequences and `prefill_tokens` prompt tokens chunked into the same step (continuous
    batching with chunked prefill, as vLLM V1, SGLang, TGI and llama-server schedule)."""

    e: Estimate
    gpu: GpuSpec
    gpus_per_replica: int
    bandwidth_bytes_per_s: float
    weights_on_gpu_bytes: int
    kv_per_sequence_bytes: float
    host_kv_share: float
    offloaded_bytes: int
    host_bytes_per_s: float
    gemm_tflops: float | None  # achievable dense GEMM rate (achievable_tflops)
    overhead_s: float
    prefill_factor: float = 1.0  # a benchmark's prompt speed over ours (calibration profile)
    host_expert_bytes: int = 0  # routed experts kept in RAM (llama.cpp --n-cpu-moe), part of offloaded_bytes
    gpu_expert_bytes: int | None = (
        None  # the routed experts left on the GPU (None: their share of the weights)
    )

    def kv_read_bytes(self, seqs: float) -> float:
        passes = KV_PASSES_PER_STEP.get(self.e.plan.engine, 1)
        return self.kv_per_sequence_bytes * seqs * (1 - self.host_kv_share) * passes

    def memory_s(self, seqs: float, prefill_tokens: float = 0.0) -> float:
        """Bytes the step reads from GPU memory / achieved bandwidth: the weights once (for MoE,
        the experts the step's tokens touch) + every running sequence's KV."""
        tokens = max(1, math.ceil(seqs + prefill_tokens))
        weights = active_weight_bytes(self.e.model, self.weights_on_gpu_bytes, tokens, self.gpu_expert_bytes)
        return (weights + self.kv_read_bytes(seqs)) / self.bandwidth_bytes_per_s

    def decode_compute_s(self, seqs: float) -> float:
        """2 x active params x seqs + attention FLOPs at the context, at decode efficiency."""
        if not self.gemm_tflops:
            return 0.0
        m = self.e.model
        context = max(1, int(self.e.workload.fill * self.e.workload.ctx_tokens))
        flops = seqs * (2.0 * param_counts(m).active + attention_flops_per_token(m, context))
        return flops / self.gpus_per_replica / (self.gemm_tflops * 1e12 * DECODE_COMPUTE_EFFICIENCY)

    def prefill_compute_s(self, prompt_tokens: int) -> float:
        """GEMM and attention time of one `prompt_tokens` prompt, without the weight-read floor
        (over a calibration profile's prompt factor)."""
        return self._prefill_compute_s(prompt_tokens) / self.prefill_factor

    def _prefill_compute_s(self, prompt_tokens: int) -> float:
        if self.e.plan.engine in GGUF_ENGINES:
            gguf = gguf_prefill_gemm_s(self.e, self.gpu, prompt_tokens)
            return (gguf or 0.0) / self.gpus_per_replica
        if not self.gemm_tflops:
            return 0.0
        m = self.e.model
        flops = 2.0 * param_counts(m).active * prompt_tokens
        flops += prompt_tokens * attention_flops_per_token(m, prompt_tokens) / 2
        return (
            flops
            / self.gpus_per_replica
            / (self.gemm_tflops * 1e12 * PREFILL_COMPUTE_EFFICIENCY.get(self.e.plan.engine, _PAGED_PREFILL))
        )

    def offload_s(self, seqs: float, prefill_tokens: float = 0.0) -> float:
        """Host-memory time of a step: offloaded layers' weights (the experts the step's tokens
        touch) and KV read where they live. Experts kept in RAM (--n-cpu-moe): the decoding
        sequences' picks read by the CPU, and prompt tokens at their share of a ubatch that copies
        all of them over PCIe to the GPU (op offload, OP_OFFLOAD_MIN_BATCH): linear in the chunk,
        so the closed loop's average prompt tokens per step cost what their ubatches do."""
        if not (self.offloaded_bytes or self.host_kv_share):
            return 0.0
        m = self.e.model
        layers = max(0, self.offloaded_bytes - self.host_expert_bytes)
        read = float(active_weight_bytes(m, layers, max(1, math.ceil(seqs + prefill_tokens))))
        read += self.kv_per_sequence_bytes * seqs * self.host_kv_share
        read += self.host_expert_bytes * touched_share(m, max(1, math.ceil(seqs))) if seqs >= 1 else 0.0
        copies = prefill_tokens / max(1, self.e.plan.prefill_tokens)
        return read / self.host_bytes_per_s + copies * self.host_expert_bytes / (PCIE_BANDWIDTH_GBS * GB)

    def step_s(self, seqs: float, prefill_tokens: float = 0.0, prompt_tokens: int | None = None) -> float:
        """One step: max(memory, decode compute + the prefill chunk's compute) + the engine's fixed
        cost + host reads + tensor-parallel all-reduces. A chunk of `prefill_tokens` from prompts
        of `prompt_tokens` costs that share of one such prompt's compute."""
        compute = self.decode_compute_s(seqs)
        if prefill_tokens > 0:
            prompt = prompt_tokens or max(1, int(prefill_tokens))
            compute += self.prefill_compute_s(prompt) * prefill_tokens / prompt
        tokens = max(1, math.ceil(seqs + prefill_tokens))
        link = all_reduce_s(self.e.model, self.gpu, tokens, self.gpus_per_replica, self.e.plan.gpu_p2p)
        return (
            max(self.memory_s(seqs, prefill_tokens), compute)
            + self.overhead_s
            + self.offload_s(seqs, prefill_tokens)
            + link
        )

    def prefill_s(self, prompt_tokens: int) -> float | None:
        """One prompt alone (the first token of an idle server): its compute, at least one read of
        the weights, plus the dequantize copies of the old llama.cpp path, the all-reduces and one
        PCIe copy of offloaded weights. None without a tensor figure for the GPU."""
        gguf = self.e.plan.engine in GGUF_ENGINES
        if gguf and prefill_kernel(self.e, self.gpu, "F16") is None:
            return None
        if not gguf and not self.gemm_tflops:
            return None
        floor = self.e.weights_bytes / self.bandwidth_bytes_per_s
        t = max(self.prefill_compute_s(prompt_tokens), floor)
        if gguf:
            t += gguf_dequantize_s(self.e, self.gpu, prompt_tokens)
        t += all_reduce_s(self.e.model, self.gpu, prompt_tokens, self.gpus_per_replica, self.e.plan.gpu_p2p)
        if self.host_expert_bytes and prompt_tokens >= OP_OFFLOAD_MIN_BATCH:
            # The experts in RAM cross PCIe once per ubatch of the prompt (op offload).
            ubatches = -(-prompt_tokens // max(1, self.e.plan.prefill_tokens))
            t += ubatches * self.host_expert_bytes / (PCIE_BANDWIDTH_GBS * GB)
        return t + (self.offloaded_bytes - self.host_expert_bytes) / (PCIE_BANDWIDTH_GBS * GB)


# Source: the most GB/s llama.cpp's decode kernels (quantized matrix-vector products) reach on any
# card, fitted on the fit half (split by source) by scripts/fit_speed.py (2026-12-07): the fit-half
# loss falls from 0.1891 without a ceiling to 0.1828 at 1,075 GB/s (grid of 25 GB/s; flat from
# 1,000 to 1,100). Published llama-bench runs show it: Llama-3-8B Q4_K_M decodes at 131 tokens/s
# on an RTX 4090 (1,008 GB/s) and only 135-146 on an A100 SXM or H100 PCIe with twice the
# bandwidth (tests/calibration/throughput.yaml). Cards below it (every 24 GB consumer card) keep
# efficiency x peak; HBM cards and the RTX 5090 / RTX PRO 6000 (1,792 GB/s) stop at the ceiling.
GGUF_DECODE_MAX_BANDWIDTH_GBS = 1075.0


def decode_bandwidth_gbs(engine: str, gpu: GpuSpec) -> float:
    """GB/s a decode step's reads achieve: efficiency x peak, at most the GGUF kernels' ceiling."""
    achieved = gpu.memory_bandwidth_gbs * DECODE_BANDWIDTH_EFFICIENCY.get(engine, 0.7)
    return min(achieved, GGUF_DECODE_MAX_BANDWIDTH_GBS) if engine in GGUF_ENGINES else achieved


def step_overhead_s(e: Estimate) -> float:
    """The engine's fixed cost of a step: per-layer launch cost (CUDA graphs, or eager kernels
    with --enforce-eager) x layers + a per-step cost (scheduler, sampler, detokenizer)."""
    engine = e.plan.engine
    s = e.plan.settings
    eager = bool(s.get("enforce_eager", False) or s.get("disable_cuda_graph", False))
    per_layer = (EAGER_OVERHEAD_PER_LAYER_S if eager else DECODE_OVERHEAD_PER_LAYER_S).get(engine, 0.0)
    moe = e.model.moe
    moe_layers = e.model.num_hidden_layers - moe.first_dense_layers if moe else 0
    return (
        e.model.num_hidden_layers * per_layer
        + moe_layers * MOE_DECODE_OVERHEAD_PER_LAYER_S.get(engine, 0.0)
        + STEP_OVERHEAD_S.get(engine, 0.0)
    )


def stepper(
    e: Estimate,
    gpu: GpuSpec,
    *,
    gpus_per_replica: int = 1,
    offloaded_bytes: int = 0,
    offload_over_pcie: bool = False,
    host_kv_bytes: int = 0,
    host_bandwidth_gbs: float = HOST_MEMORY_BANDWIDTH_GBS,
    decode_factor: float = 1.0,
    prefill_factor: float = 1.0,
    host_expert_bytes: int | None = None,
) -> Stepper:
    """The step cost of `e` on `gpu`. Offloaded weights (and `host_kv_bytes` of the layers computed
    there) are read each step from host memory at `host_bandwidth_gbs` (llama.cpp CPU layers) or
    over PCIe (transformers device_map offload). A calibration profile's `decode_factor` scales the
    GPU's decode step (its reads and fixed cost), `prefill_factor` the prompt's compute."""
    # The estimate's weights already leave out what the engine keeps in host memory (vLLM
    # --cpu-offload-gb); other offloaded bytes (llama.cpp CPU layers) come off the GPU part here.
    moved = max(0, offloaded_bytes - e.plan.offload_weight_bytes)
    host = PCIE_BANDWIDTH_GBS if offload_over_pcie else host_bandwidth_gbs
    plan_experts = e.plan.offload_weight_bytes if e.plan.offload_experts else 0
    # Routed experts in RAM: --n-cpu-moe's (the plan's, already out of e.weights_bytes) and any
    # --fit moved there (in `offloaded_bytes`, out of the GPU here like moved layers).
    experts_in_ram = plan_experts if host_expert_bytes is None else host_expert_bytes
    on_gpu = max(0, e.weights_bytes - e.plan.unread_weight_bytes - moved // gpus_per_replica)
    # The GPU keeps every non-expert tensor and the experts of the other layers.
    gpu_experts = (
        max(0, routed_expert_bytes(e.weight_format, e.model) - experts_in_ram) if experts_in_ram else None
    )
    return Stepper(
        e=e,
        gpu=gpu,
        gpus_per_replica=gpus_per_replica,
        bandwidth_bytes_per_s=decode_bandwidth_gbs(e.plan.engine, gpu) * GB * decode_factor,
        weights_on_gpu_bytes=on_gpu,
        # Each running sequence reads its own KV; slots allocated up front hold one sequence each.
        kv_per_sequence_bytes=e.kv.bytes / max(1, e.plan.slots or e.workload.users),
        host_kv_share=min(1.0, host_kv_bytes / e.kv.bytes) if e.kv.bytes else 0.0,
        offloaded_bytes=offloaded_bytes,
        host_bytes_per_s=host * GB,
        gemm_tflops=achievable_tflops(gpu, e.weight_format.name),
        overhead_s=step_overhead_s(e) / decode_factor,
        prefill_factor=prefill_factor,
        host_expert_bytes=experts_in_ram,
        gpu_expert_bytes=gpu_experts,
    )


def speed(
    e: Estimate,
    gpu: GpuSpec,
    users: int,
    *,
    gpus_per_replica: int = 1,
    prompt_tokens: int | None = None,
    offloaded_bytes: int = 0,
    offload_over_pcie: bool = False,
    host_kv_bytes: int = 0,
    host_bandwidth_gbs: float = HOST_MEMORY_BANDWIDTH_GBS,
) -> Speed:
    """Per-user decode tokens/s of `users` sequences decoding together (no prefill in the step),
    and one prompt's TTFT on an idle server (Stepper.step_s / Stepper.prefill_s)."""
    st = stepper(
        e,
        gpu,
        gpus_per_replica=gpus_per_replica,
        offloaded_bytes=offloaded_bytes,
        offload_over_pcie=offload_over_pcie,
        host_kv_bytes=host_kv_bytes,
        host_bandwidth_gbs=host_bandwidth_gbs,
    )
    return speed_of(st, users, prompt_tokens or e.workload.ctx_tokens)


def speed_of(st: Stepper, users: int, prompt_tokens: int) -> Speed:
    """`speed` on a Stepper already built."""
    step = st.step_s(users)
    bound = "compute" if st.decode_compute_s(users) > st.memory_s(users) else "memory"
    offload = st.offload_s(users)
    no_offload = step - offload
    penalty = (1 / no_offload - 1 / step) if offload and no_offload > 0 else 0.0
    ttft = st.prefill_s(prompt_tokens)
    return Speed(users, step, 1 / step, users / step, ttft, bound, st.offloaded_bytes, penalty)


def speed_family(engine: str) -> str:
    """The engine family speed constants are kept per: gguf, paged (vLLM, SGLang, TGI) or transformers."""
    name = engine.partition("@")[0]
    return "gguf" if name in GGUF_ENGINES else "transformers" if name == "transformers" else "paged"


def spread_of(engine: str, kind: str) -> tuple[float, float]:
    """(lowest, highest) measured / ours rate ratio for `kind` on `engine`'s family (SPEED_SPREAD)."""
    spread = SPEED_SPREAD.get((kind, speed_family(engine))) or SPEED_SPREAD.get((kind, "all"))
    return spread or (1.0, 1.0)


def rate_range(engine: str, kind: str, rate: float) -> tuple[float, float]:
    """The range of a tokens/s figure published benchmarks would put around `rate`."""
    low, high = spread_of(engine, kind)
    return rate * low, rate * high


def time_range(engine: str, kind: str, seconds: float) -> tuple[float, float]:
    """The range of a time (TTFT, TPOT) published benchmarks would put around `seconds`."""
    low, high = spread_of(engine, kind)
    return seconds / high, seconds / low
