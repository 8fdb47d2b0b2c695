"""Values the estimator and the engine profiles share: the workload, engine settings and plans."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Workload:
    """What is asked of the deployment: context per user, concurrency, and how full it runs."""

    ctx_tokens: int
    users: int
    fill: float = 1.0
    workers: int = 1
    shared_prefix_tokens: int = 0
    allow_long_ctx: bool = False


@dataclass(frozen=True, slots=True)
class Measured:
    """What one startup log measured (`vramcalc calibrate LOG --save FILE`), used instead of the
    engine profile's defaults for the same engine, model and GPU. Each figure is None when the log
    did not print it. `activation_scale` = the log's activation peak / ours at the log's settings:
    it scales both the forward and the sampler term, so what depends on settings (rows x vocab,
    batched tokens) still follows them."""

    source: str  # the log's file name
    engine: str
    version: str  # the engine profile the log was modelled with
    model: str
    gpu: str
    weights_format: str
    tp: int
    cuda_total_bytes: int | None = None
    weights_bytes_per_gpu: int | None = None
    activation_scale: float | None = None
    non_torch_bytes: int | None = None
    cuda_graph_bytes: int | None = None
    # From a benchmark (`bench FILE --save`): measured / ours decode and prompt speed on this GPU,
    # engine and weight format (any model; the memory terms above are the log's model's own).
    decode_speed_factor: float | None = None
    prefill_speed_factor: float | None = None
    request_overhead_s: float | None = None  # time to first token beyond the prefill (serving benchmarks)

    @property
    def has_memory_terms(self) -> bool:
        return any(
            v is not None
            for v in (
                self.cuda_total_bytes,
                self.weights_bytes_per_gpu,
                self.activation_scale,
                self.non_torch_bytes,
                self.cuda_graph_bytes,
            )
        )


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Engine settings as the user gave them; None means the engine's own default."""

    gpu_util: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    ubatch: int | None = None
    flash_attn: bool | None = None
    tp: int = 1
    prompt_tokens: int | None = None
    cpu_offload_gb: float | None = None  # vLLM --cpu-offload-gb (GiB of weights kept in host memory)
    enforce_eager: bool | None = None  # vLLM --enforce-eager / SGLang --disable-cuda-graph
    mmproj: bool | None = None  # llama.cpp --mmproj: load the model's vision projector file
    measured: Measured | None = None  # a calibration profile for this engine, model and GPU
    sampler: str | None = None  # vLLM V1 top-k/top-p path: "flashinfer" or "pytorch" (None: unknown)
    mxfp4_backend: str | None = None  # vLLM MXFP4 MoE kernel: marlin, triton or flashinfer (None: unknown)
    nccl_nvls: bool | None = None  # NCCL's NVLS buffers on an NVSwitch board: on, off (NCCL_NVLS_ENABLE=0)
    gpu_p2p: bool | None = None  # the GPUs reach each other peer to peer (NCCL's P2P transport)
    n_cpu_moe: int | None = None  # llama.cpp --n-cpu-moe: the first N layers keep their experts in RAM
    n_gpu_layers: int | None = (
        None  # llama.cpp -ngl: layers on the GPU (repeating + output); None: the engine's
    )
    # GPUs the layers are split over (layout pipeline-parallel: llama.cpp/Ollama -sm layer); part
    # of the layout, not an engine flag, so given() leaves it out
    pp: int = 1

    def given(self) -> dict[str, object]:
        """The settings the user set explicitly (tp counts when it is not 1)."""
        names = (
            "gpu_util",
            "max_num_seqs",
            "max_num_batched_tokens",
            "ubatch",
            "flash_attn",
            "prompt_tokens",
            "cpu_offload_gb",
            "enforce_eager",
            "mmproj",
            "sampler",
            "mxfp4_backend",
            "nccl_nvls",
            "gpu_p2p",
            "n_cpu_moe",
            "n_gpu_layers",
        )
        out: dict[str, object] = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.tp != 1:
            out["tp"] = self.tp
        return out


@dataclass(frozen=True, slots=True)
class EnginePlan:
    """How an engine turns a workload into memory: the parameters of the shared formulas.

    Every field feeds one of the core functions (kv_cache_bytes, activation_bytes, weight_bytes,
    reserve) - engines differ in these values, never in the formulas.
    """

    engine: str
    version: str
    kv_frees_windows: bool  # sliding/chunked layers keep only their window (else full length)
    prefill_tokens: int  # tokens in the profiled / largest forward chunk
    sampled_rows: int  # rows of vocab-sized logits the engine reserves
    sampler_bytes_per_logit: float  # bytes per vocab entry per row in the sampler
    tp: int
    reserve_bytes: int  # per process per GPU: CUDA context + runtime the engine holds
    reserve_formula: str
    reserve_source: str
    activation_source: str
    kv_source: str
    # The rest default to what most engines do; an engine sets only where it differs.
    kv_window_extra_tokens: int = 0  # tokens a windowed layer keeps beyond the window (in flight)
    kv_block_tokens: int = 1  # allocation granularity per sequence (vLLM 16, llama.cpp 256 cells)
    kv_preallocated: bool = (
        False  # every sequence's cells exist up front (llama.cpp): --fill does not shrink KV
    )
    kv_prefix_sharing: bool = True  # a shared prompt prefix is stored once (prefix caching)
    slots: int | None = None  # sequences allocated up front (llama.cpp -np); more users wait for one
    forward_logit_bytes: float = 0.0  # bytes per sampled logit alive beside the forward peak (vLLM V0)
    hidden_temporaries: float = 1.0  # hidden-sized activation buffers per token (fused kernels: fewer)
    eager_attention: bool = False  # scores materialised (heads x q x kv): HF eager, llama.cpp without FA
    attention_score_bytes: int = 0  # bytes per score element when eager
    attention_kv_tokens: int = 0  # kv length of the materialised scores (0 when not eager)
    activation_dtype_bytes: int = 2  # 2 for PyTorch bf16 activations, 4 for llama.cpp's f32 graph
    fused_moe: bool = False  # MoE layers run the fused Triton kernel with its buffers (vLLM, SGLang)
    # prompts run in prefill steps of their own while decodes pause (core/serving.py _apart),
    # instead of riding in the decode steps as chunks (vLLM V1, llama-server)
    prefill_apart: bool = False
    gpu_p2p: bool | None = None  # tensor-parallel GPUs reach each other peer to peer (None: default_p2p)
    extra_weight_bytes: int = 0  # per GPU, e.g. vLLM's rotary cos/sin cache
    # per GPU, part of extra_weight_bytes a decode step does not stream: vLLM's MXFP4 layout extras
    # (padding and the scales' second copy; on published A100 gpt-oss runs, counting the padding as
    # read made TPOT 6-7 points slower than measured)
    unread_weight_bytes: int = 0
    offload_weight_bytes: int = 0  # per GPU, weights kept in host memory and streamed each step
    offload_flag: str = "--cpu-offload-gb"  # the engine flag that keeps them there
    offload_experts: bool = False  # they are routed-expert tensors (llama.cpp --n-cpu-moe)
    # Where a GGUF engine finds a vision model's vision tower: None = in the model file and loaded
    # (Ollama, and every PyTorch engine for its checkpoint); "absent" = a text GGUF without it
    # (llama.cpp); "mmproj" = llama.cpp with --mmproj: the separate F16 projector file, loaded.
    gguf_vision: str | None = None
    extra_weight_formula: str = ""  # how extra_weight_bytes was computed ("" when zero)
    activation_scale: float = 1.0  # a calibration profile's measured peak over the formula's
    kq_span_tokens: int = 0  # llama.cpp: KV cells one attention stream spans (the KQ mask's width)
    assumptions: tuple[str, ...] = field(default=())
    settings: dict[str, int | float | bool | str] = field(default_factory=dict)  # resolved, for output

    def __post_init__(self) -> None:
        # Deployments that share an engine and model repeat these sentences word for word (a check of
        # 10,000 deployments keeps 10,000 plans): one shared copy of each.
        object.__setattr__(self, "assumptions", tuple(sys.intern(a) for a in self.assumptions))
        for name in ("reserve_formula", "extra_weight_formula"):
            object.__setattr__(self, name, sys.intern(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class EngineFigure:
    """One figure as the engine itself reports it, with our formula and source."""

    key: str
    label: str
    value: int | float | bool
    unit: str
    formula: str
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", sys.intern(self.label))  # one copy per context length


@dataclass(frozen=True, slots=True)
class EngineView:
    """What the engine will do on a given GPU: its startup figures and whether it starts."""

    engine: str
    version: str
    starts: bool
    figures: tuple[EngineFigure, ...]
    notes: tuple[str, ...] = ()
    # figure key -> (low, high) where a regime the tool cannot know moves it (the figure itself is
    # the default regime's); empty when every regime is pinned
    ranges: tuple[tuple[str, float, float], ...] = ()
    range_reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "range_reason", sys.intern(self.range_reason))

    def value(self, key: str) -> int | float | bool:
        for fig in self.figures:
            if fig.key == key:
                return fig.value
        raise KeyError(key)

    def serves(self, kv_bytes: int) -> bool:
        """The engine starts, and (for engines that pool KV) its pool holds `kv_bytes`."""
        pool = next((f.value for f in self.figures if f.key == "kv_pool_bytes"), None)
        return self.starts and (pool is None or kv_bytes <= pool)
