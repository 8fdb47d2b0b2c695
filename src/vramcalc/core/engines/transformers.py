"""Hugging Face transformers `generate()`: weights, a growing DynamicCache and one prefill's
temporaries; Gemma-2 runs eager attention, whose scores grow with the square of the prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vramcalc.core.engines.base import Engine, EngineFigure, EnginePlan, EngineSettings, EngineView
from vramcalc.core.engines.common import CUDA_CONTEXT_BYTES, RUNTIME_OVERHEAD_BYTES, version_at_least
from vramcalc.core.estimate import usable_gpu_bytes
from vramcalc.units import MIB

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec

NAME = "transformers"
# Behaviour changes we model, oldest first (versions between two labels behave like the older):
# 4.36: SDPA the default attention (PR #26572); the CausalLM forward computes the logits of every
#   prompt position and upcasts them (`logits = logits.float()`, read in the 4.35.2-4.44.2 release
#   wheels), so a prefill holds prompt x vocab x (2 + 4) B of logits.
# 4.45: generate() asks for the last position only (num_logits_to_keep=1, PR #31292; renamed
#   logits_to_keep in 4.49, PR #35757); the upcast leaves the forward in 4.46 (PR #33902), and
#   generate() keeps an fp32 copy of the last row.
# 5.24: dtype="auto" loads the checkpoint dtype (transformers/modeling_utils.py). 4.x loaded
#   float32 unless torch_dtype was given; we size the dtype the user names (--quant / --bits).
VERSIONS = ("4.36", "4.45", "5.24")
LAST_LOGITS_ONLY_SINCE = "4.45"
SETTINGS = frozenset({"flash_attn", "prompt_tokens"})

# Families whose attention cannot use SDPA: transformers/models/gemma2/modeling_gemma2.py sets
# _supports_sdpa = False (soft-capping), so without flash-attention-2 it runs eager attention.
EAGER_FAMILIES = frozenset({"gemma2"})

# Source: eager softmax peak per score = bf16 input (2 B) + fp32 softmax output (4 B)
# (gemma2 eager_attention_forward; engines.md section 5.3).
EAGER_SCORE_BYTES = 6

# Source: logits in bf16 (2 B) and their fp32 upcast (4 B) per vocab entry: for the last position
# since 4.45 (logits_to_keep=1, transformers/generation/utils.py), for every prompt position before.
LOGIT_BYTES = 6

# Source: Qwen2.5 speed benchmark (tests/calibration hf-qwen25-* records): peak minus weights and
# KV grows by ~140 KB per prompt token for Qwen2.5-7B = 3 x intermediate + qkv + ~3 x hidden in
# bf16 (unfused MLP and residual buffers, unlike vLLM's fused kernels).
HIDDEN_TEMPORARIES = 3.0


def plan(
    model: ModelSpec,
    workload: Workload,
    fmt: WeightFormat,
    kv_dtype: str,
    gpu: GpuSpec | None,
    settings: EngineSettings,
    version: str,
) -> EnginePlan:
    m, w = model, workload
    prompt = min(settings.prompt_tokens or w.ctx_tokens, w.ctx_tokens)
    eager = m.family in EAGER_FAMILIES and not settings.flash_attn
    reserve = CUDA_CONTEXT_BYTES + RUNTIME_OVERHEAD_BYTES
    last_only = version_at_least(version, LAST_LOGITS_ONLY_SINCE)
    notes = [
        f"one generate() over a batch of {w.users} with {prompt:,}-token prompts; KV for the whole --ctx",
        "peak = weights + KV + the prefill's temporaries (torch max_memory_allocated) + CUDA context",
        "logits of the last prompt position only (generate() passes logits_to_keep=1), bf16 + an fp32 copy"
        if last_only
        else f"transformers {version}: logits of every prompt position, bf16 + the fp32 upcast "
        f"({prompt:,} x {w.users} rows x {m.vocab_size:,} vocab x {LOGIT_BYTES} B)",
    ]
    if eager:
        notes.append(
            f"{m.family} runs eager attention: scores {m.num_attention_heads} heads x prompt^2 x 6 B per layer"
        )
    return EnginePlan(
        engine=NAME,
        version=version,
        kv_frees_windows=True,  # DynamicSlidingWindowLayer keeps window - 1 tokens after prefill
        kv_prefix_sharing=False,
        prefill_tokens=prompt * w.users,
        sampled_rows=w.users if last_only else w.users * prompt,
        sampler_bytes_per_logit=LOGIT_BYTES,
        hidden_temporaries=HIDDEN_TEMPORARIES,
        eager_attention=eager,
        attention_score_bytes=EAGER_SCORE_BYTES,
        attention_kv_tokens=prompt,
        tp=settings.tp,
        reserve_bytes=reserve,
        reserve_formula=(
            f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB + cuBLAS workspace / allocator slack "
            f"{RUNTIME_OVERHEAD_BYTES // MIB} MiB = {reserve:,} B"
        ),
        reserve_source="pytorch#107667, #20532 (CUDA context); pytorch PR #120925 (cuBLASLt workspace)",
        activation_source=(
            "transformers/generation/utils.py (logits_to_keep), models/gemma2 eager_attention_forward; "
            "hidden buffers calibrated on the Qwen2.5 benchmark records"
        ),
        kv_source="transformers/cache_utils.py DynamicCache (sliding layers keep window - 1 tokens)",
        assumptions=tuple(notes),
        settings={"prompt_tokens": prompt, "batch_size": w.users, "attn": "eager" if eager else "sdpa/flash"},
    )


def view(estimate: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> EngineView:
    """One generate(), as three different measurements read it: the peak (max_memory_allocated
    around generate(): weights + cache + the prefill's temporaries), what stays allocated after it
    (weights + cache), and the process in nvidia-smi (the peak + CUDA context and allocator)."""
    e = estimate
    peak = e.weights_bytes + e.kv.bytes + e.activations.bytes
    process = peak + e.reserve_bytes
    usable, _ = usable_gpu_bytes(gpu)
    figures = (
        EngineFigure(
            "weights_bytes_per_gpu",
            "model parameters",
            e.weights_bytes,
            "bytes",
            "sum of stored tensor bytes",
            "transformers/modeling_utils.py from_pretrained",
        ),
        EngineFigure(
            "kv_cache_bytes",
            "past_key_values",
            e.kv.bytes,
            "bytes",
            "DynamicCache at the end of generation",
            "transformers/cache_utils.py",
        ),
        EngineFigure(
            "activation_peak_bytes",
            "prefill temporaries",
            e.activations.bytes,
            "bytes",
            "see activations term",
            "transformers modeling code",
        ),
        EngineFigure(
            "peak_bytes",
            "torch.cuda.max_memory_allocated()",
            peak,
            "bytes",
            f"{e.weights_bytes:,} + {e.kv.bytes:,} + {e.activations.bytes:,}",
            "torch.cuda.max_memory_allocated() around transformers GenerationMixin.generate",
        ),
        EngineFigure(
            "allocated_after_bytes",
            "torch.cuda.memory_allocated() after generate()",
            e.weights_bytes + e.kv.bytes,
            "bytes",
            f"weights {e.weights_bytes:,} + the whole cache {e.kv.bytes:,} (the prefill's temporaries are freed)",
            "what a benchmark that reads memory_allocated (not the peak) after generate() prints",
        ),
        EngineFigure(
            "process_bytes",
            "GPU memory the process holds (nvidia-smi)",
            process,
            "bytes",
            f"peak + reserve {e.reserve_bytes:,}",
            "CUDA context + allocator",
        ),
        EngineFigure(
            "starts",
            "fits (no CUDA out of memory)",
            process <= usable,
            "",
            "process bytes <= usable memory",
            "torch.OutOfMemoryError otherwise",
        ),
    )
    notes = () if process <= usable else (f"CUDA out of memory: needs {process / 2**30:.2f} GiB",)
    return EngineView(NAME, version, process <= usable, figures, notes)


# Source: transformers cache dtypes = model dtype (quantized caches not modelled).
ENGINE = Engine(NAME, VERSIONS, SETTINGS, False, ("bf16", "fp16"), plan, view)
