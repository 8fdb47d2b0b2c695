"""llama.cpp (llama-server): GGUF weights without the host-side token embedding, KV cells allocated
up front for every slot, and one compute buffer sized for a full ubatch of f32 logits.

Versions are the month of the behaviour change (llama.cpp build numbers do not parse as versions):

* 2025.04 - before ggml-org/llama.cpp PR #13194 (merged 2025-05-20): sliding-window layers keep
  the full context (as `--swa-full` does today); one unified KV stream shared by all slots; flash
  attention off unless `-fa`; cells padded to 256 with flash attention, else 32.
* 2025.05 - PR #13194 (iSWA): sliding-window layers keep pad(n_swa + n_batch) cells.
* 2025.06 - PR #13833 (2025-05-27): pad(n_swa + n_ubatch) cells.
* 2025.12 - the code read for engines.md (commit 0c1e570): an explicit `-np` gives one KV stream per
  slot (PR #14363, July 2025), flash attention `auto` (on for CUDA), cells padded to 256, and
  `--fit` on by default (PR #16653, December 2025: keeps 1024 MiB free, else moves layers to RAM).

Versions between two labels behave like the older one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vramcalc.core.engines.base import Engine, EngineFigure, EnginePlan, EngineSettings, EngineView
from vramcalc.core.engines.common import CUDA_CONTEXT_BYTES, version_at_least
from vramcalc.core.estimate import usable_gpu_bytes
from vramcalc.core.formats import model_tensor_bytes, routed_expert_bytes
from vramcalc.core.kv import kv_layers
from vramcalc.core.tensors import EXPERT_ROLES, tensor_inventory
from vramcalc.errors import SpecError
from vramcalc.units import MIB, plural

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec

NAME = "llama.cpp"
VERSIONS = ("2025.04", "2025.05", "2025.06", "2025.12")
# No --tp: llama.cpp splits layers over GPUs (--split-mode layer), it has no tensor parallelism to model.
SETTINGS = frozenset({"ubatch", "flash_attn", "max_num_seqs", "mmproj", "n_cpu_moe", "n_gpu_layers"})
# Source: common/arg.cpp kv_cache_types (f16, bf16, q8_0, q4_0 in our names; engines.md section 2.2).
KV_DTYPES = ("fp16", "bf16", "q8_0", "q4_0")
QUANTIZED_KV = frozenset({"q8_0", "q4_0"})

# Source: common/common.h common_params (n_batch 2048, n_ubatch 512).
DEFAULT_BATCH = 2048
DEFAULT_UBATCH = 512
# Source: src/llama-kv-cache.cpp get_padding ("the FA kernels require padding": 256 with flash
# attention, else 32) in 2025 builds; 256 always at commit 0c1e570 (engines.md section 2.1).
CELL_PAD_FLASH = 256
CELL_PAD_EAGER = 32
# Source: common/fit.cpp common_params_fit_impl (--fit-target, default 1024 MiB free per device).
FIT_MARGIN_BYTES = 1024 * MIB
# Source: ggml graphs compute in f32: logits n_outputs x n_vocab x 4 B and the KQ scores of
# src/llama-graph.cpp build_attn_mha (no flash attention) n_kv x n_tokens x n_head x 4 B.
GRAPH_DTYPE_BYTES = 4
LOGIT_BYTES = 4
SCORE_BYTES = 4
# Source: fedora-copr/logdetective PR #106 (engines.md section 2.4): a 32-layer, 32-head, 32k-vocab
# model at ub 512 without flash attention logged 164 / 2144 MiB at n_ctx 2048 / 32768 = KQ 128 /
# 2048 MiB + 36 / 96 MiB; q, k, v plus one f32 hidden row per token give 32 MiB of the rest and the
# f32 KQ mask (n_kv x n_tokens x 4 B, kq_mask_bytes) the other 4 / 64 MiB.
HIDDEN_TEMPORARIES = 1.0
# Source: the output matmul's f32 input rows stay alive beside the logits. A public llama-cpp-python
# log of Llama-3-8B Q4_K_M on an RTX 3070 (n_ctx 512, n_ubatch 512, flash_attn 0) shows "CUDA0
# compute buffer size = 258.50 MiB" = 512 x 128,256 x 4 B logits (250.5 MiB) + 512 x 4,096 x 4 B
# (8 MiB); the same log shows "CUDA0 buffer size = 4403.49 MiB" for the weights.
OUTPUT_INPUT_ROWS = 1


@dataclass(frozen=True, slots=True)
class _Era:
    """What changed between llama.cpp versions, as far as memory goes."""

    swa_extra: Literal["full", "n_batch", "n_ubatch"]  # cells a sliding layer keeps beyond n_swa
    streams_per_slot: bool  # explicit -np: one KV stream per slot (else one unified stream)
    flash_default: bool  # -fa auto (on for CUDA); before: off unless -fa
    pad_always_256: bool
    fit: bool  # --fit on by default


_ERAS = {
    "2025.04": _Era("full", streams_per_slot=False, flash_default=False, pad_always_256=False, fit=False),
    "2025.05": _Era("n_batch", streams_per_slot=False, flash_default=False, pad_always_256=False, fit=False),
    "2025.06": _Era("n_ubatch", streams_per_slot=False, flash_default=False, pad_always_256=False, fit=False),
    "2025.12": _Era("n_ubatch", streams_per_slot=True, flash_default=True, pad_always_256=True, fit=True),
}


def _era(version: str) -> _Era:
    known = [v for v in VERSIONS if version_at_least(version, v)]
    return _ERAS[known[-1] if known else VERSIONS[0]]


# Source: the first llama.cpp build with one KV stream per slot (PR #14363 "llama : add
# high-throughput mode", open until after 2025-07-09 per its thread): ggml-org/llama.cpp issue
# #14847 "Regression in unified KV cache appears after llama.cpp release b5912 in b5913"; builds
# b5857 (janhq/jan's bump on 2025-07-10) and b5781 (a log of 2025-07-01) are before it. A log of
# that build or later prints "kv_unified" among its context settings.
STREAMS_SINCE_BUILD = 5913


def version_for_log(
    build: int | None, kv_unified_printed: bool, iswa_printed: bool, has_swa: bool
) -> tuple[str, str]:
    """Our label for a llama.cpp log whose version is a build number (bNNNN) or not printed, from
    what the log itself shows, and one clause saying why: per-slot KV streams (a "kv_unified"
    setting, or build >= STREAMS_SINCE_BUILD) -> 2025.12; before them, a model with sliding-window
    layers that the log gives no iSWA cache (PR #13194) -> 2025.04, else 2025.06."""
    said = f"build b{build}" if build is not None else "version not printed"
    if kv_unified_printed or (build is not None and build >= STREAMS_SINCE_BUILD):
        why = "prints kv_unified" if kv_unified_printed else f"b{STREAMS_SINCE_BUILD} or later"
        return "2025.12", (
            f"{said}, {why}: per-slot KV streams (PR #14363), modelled as llama.cpp 2025.12 (its --fit, "
            "December 2025, moves layers to RAM only when they do not fit)"
        )
    if has_swa and not iswa_printed:
        return "2025.04", f"{said}, before per-slot KV streams and with no iSWA cache (PR #13194): 2025.04"
    return "2025.06", f"{said}, before per-slot KV streams (PR #14363, b{STREAMS_SINCE_BUILD}): 2025.06"


@dataclass(frozen=True, slots=True)
class Runner:
    """How a llama.cpp context is created: everything that sizes its buffers.

    Shared with Ollama, which launches llama.cpp (a vendored runner, later llama-server).
    """

    engine: str
    version: str
    slots: int  # n_seq_max (-np)
    ctx_per_slot: int  # tokens each slot may hold, before padding to cells
    cell_pad: int
    n_batch: int
    n_ubatch: int
    flash_attn: bool
    streams_per_slot: bool
    swa_extra_tokens: int | None  # None: sliding layers keep the full context
    fit: bool  # llama-server --fit decides the GPU layers, keeping fit_margin_bytes free
    fit_margin_bytes: int

    @property
    def cells_per_slot(self) -> int:
        return -(-self.ctx_per_slot // self.cell_pad) * self.cell_pad

    @property
    def reserve_tokens(self) -> int:
        """Tokens of the worst-case graph: min(n_ctx, n_ubatch) (llama_context::sched_reserve)."""
        return min(self.n_ubatch, self.slots * self.cells_per_slot)


def _ggml_kv(kv_dtype: str) -> str:
    """Our KV dtype name as llama.cpp's -ctk/-ctv spell it."""
    return "f16" if kv_dtype == "fp16" else kv_dtype


def compute_margin_bytes(m: ModelSpec, tokens: int) -> int:
    """The compute buffer beyond the activation peak: the output matmul's f32 input, tokens x hidden x 4 B."""
    return OUTPUT_INPUT_ROWS * tokens * m.hidden_size * GRAPH_DTYPE_BYTES


def check_flash_for_kv(engine: str, kv_dtype: str, flash_attn: bool) -> None:
    """A quantized V cache needs flash attention (src/llama-context.cpp refuses the context)."""
    if kv_dtype in QUANTIZED_KV and not flash_attn:
        raise SpecError(
            f"{engine}: a {kv_dtype} KV cache needs flash attention (llama.cpp refuses a quantized V cache "
            "without it); drop --no-flash-attn or use --kv-dtype fp16"
        )


def runner_plan(
    m: ModelSpec,
    r: Runner,
    *,
    reserve_bytes: int,
    reserve_formula: str,
    reserve_source: str,
    assumptions: list[str],
    settings: dict[str, int | float | bool | str],
    kv_source: str = "",
    gguf_vision: str | None = None,
    cpu_expert_bytes: int = 0,
) -> EnginePlan:
    """The shared-formula parameters of one llama.cpp context (llama.cpp itself and Ollama's runners)."""
    windowed = m.layer_pattern.kind != "all_global"
    tokens = r.reserve_tokens
    total_cells = r.slots * r.cells_per_slot
    # The KQ scores span the whole cache of one stream: a slot's cells, or every cell when unified.
    kv_span = r.cells_per_slot if r.streams_per_slot else total_cells
    out = list(assumptions)
    out.append(
        f"{plural(r.slots, 'slot')} x {r.ctx_per_slot:,} tokens, cells padded to {r.cell_pad}: "
        + (
            f"{plural(r.slots, 'KV stream')} of {r.cells_per_slot:,} cells (explicit -np: non-unified KV)"
            if r.streams_per_slot
            else f"one unified KV stream of {total_cells:,} cells shared by the slots"
        )
    )
    if windowed:
        if r.swa_extra_tokens is None:
            out.append(f"{r.engine} {r.version}: sliding-window layers keep the full context (no iSWA cache)")
        else:
            out.append(f"sliding-window layers keep pad(window + {r.swa_extra_tokens:,}) cells per slot")
            if r.slots > 1 and not r.streams_per_slot:
                out.append(
                    "unified KV: llama.cpp sizes the sliding cache once as n_swa x slots + batch; counted per "
                    f"slot here, which overstates it by {r.slots - 1} x {r.swa_extra_tokens:,} cells per sliding layer"
                )
    out.append(
        f"compute buffer: worst-case graph of {tokens:,} tokens with logits for each (f32), "
        + (
            "flash attention"
            if r.flash_attn
            else f"no flash attention (f32 KQ scores over {kv_span:,} cells)"
        )
    )
    return EnginePlan(
        engine=r.engine,
        version=r.version,
        kv_frees_windows=r.swa_extra_tokens is not None,
        kv_window_extra_tokens=r.swa_extra_tokens or 0,
        kv_block_tokens=r.cell_pad,
        kv_preallocated=True,
        slots=r.slots,
        kv_prefix_sharing=False,
        prefill_tokens=tokens,
        sampled_rows=tokens,
        sampler_bytes_per_logit=LOGIT_BYTES,
        hidden_temporaries=HIDDEN_TEMPORARIES,
        eager_attention=not r.flash_attn,
        attention_score_bytes=SCORE_BYTES,
        attention_kv_tokens=0 if r.flash_attn else kv_span,
        kq_span_tokens=kv_span,
        activation_dtype_bytes=GRAPH_DTYPE_BYTES,
        tp=1,
        reserve_bytes=reserve_bytes,
        reserve_formula=reserve_formula,
        reserve_source=reserve_source,
        activation_source=(
            "src/llama-context.cpp sched_reserve / graph_reserve: one worst-case graph of min(n_ctx, n_ubatch) "
            "tokens with an output row for each; f32 logits n_ubatch x vocab x 4 B; without flash attention "
            "the f32 KQ scores n_kv x n_ubatch x n_head x 4 B"
        ),
        kv_source=kv_source
        or (
            "src/llama-kv-cache.cpp llama_kv_cache: per layer, cells x streams x (n_embd_k_gqa + n_embd_v_gqa) x "
            "type size (q8_0 34 B / q4_0 18 B per 32 values); src/llama-kv-cache-iswa.cpp: sliding layers "
            "pad(min(cells, n_swa + n_ubatch)) cells"
        ),
        assumptions=tuple(out),
        settings=settings,
        gguf_vision=gguf_vision,
        offload_weight_bytes=cpu_expert_bytes,
        offload_flag="--n-cpu-moe",
        offload_experts=cpu_expert_bytes > 0,
    )


def cpu_moe_layers(m: ModelSpec, n_cpu_moe: int | None) -> int:
    """Layers whose routed experts --n-cpu-moe N keeps in RAM: the first N (all with N >= layers)."""
    return 0 if m.moe is None or not n_cpu_moe else min(n_cpu_moe, m.num_hidden_layers)


def cpu_expert_bytes(m: ModelSpec, fmt: WeightFormat, layers: int) -> int:
    """The routed-expert tensors (ffn_gate/up/down_exps) of the first `layers` layers, as stored.

    Source: ggml-org/llama.cpp PR #15077 (b6089, 2025-08-04) "--n-cpu-moe N to keep the MoE weights
    of the first N layers in the CPU" and PR #14992 (--cpu-moe: all of them): tensor buffer-type
    overrides of \\.ffn_(up|down|gate)_exps\\.weight to the CPU buffer (common/arg.cpp); the shared
    experts and the router stay on the GPU."""
    return routed_expert_bytes(fmt, m, layers)


def plan(
    model: ModelSpec,
    workload: Workload,
    fmt: WeightFormat,
    kv_dtype: str,
    gpu: GpuSpec | None,
    settings: EngineSettings,
    version: str,
) -> EnginePlan:
    """llama-server -m MODEL.gguf -c (ctx x users) -np users [-ub N] [-fa on|off] -ngl 99."""
    m, w = model, workload
    era = _era(version)
    # -np: one slot per user unless --max-num-seqs caps the slots (the rest queue for a free slot).
    slots = min(w.users, settings.max_num_seqs or w.users)
    flash = era.flash_default if settings.flash_attn is None else settings.flash_attn
    notes: list[str] = []
    if kv_dtype in QUANTIZED_KV and settings.flash_attn is None and not flash:
        flash = True
        notes.append(f"a {kv_dtype} V cache needs flash attention: assumed -fa on")
    check_flash_for_kv(NAME, kv_dtype, flash)
    pad = CELL_PAD_FLASH if flash or era.pad_always_256 else CELL_PAD_EAGER
    ubatch = settings.ubatch or DEFAULT_UBATCH
    n_ctx = slots * w.ctx_tokens
    # Source: llama_context constructor: n_batch = min(n_ctx, -b), n_ubatch = min(n_batch, -ub);
    # we assume -b is raised with -ub when -ub exceeds the default 2048.
    n_batch = min(max(DEFAULT_BATCH, ubatch), n_ctx)
    n_ubatch = min(ubatch, n_batch)
    swa_extra = {"full": None, "n_batch": n_batch, "n_ubatch": n_ubatch}[era.swa_extra]
    runner = Runner(
        engine=NAME,
        version=version,
        slots=slots,
        ctx_per_slot=w.ctx_tokens,
        cell_pad=pad,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        flash_attn=flash,
        streams_per_slot=era.streams_per_slot,
        swa_extra_tokens=swa_extra,
        fit=era.fit,
        fit_margin_bytes=FIT_MARGIN_BYTES if era.fit else 0,
    )
    margin = compute_margin_bytes(m, runner.reserve_tokens)
    reserve = CUDA_CONTEXT_BYTES + margin
    given_ngl = settings.n_gpu_layers
    notes.append(
        f"llama-server -c {n_ctx:,} -np {slots} -b {n_batch} -ub {n_ubatch} -fa {'on' if flash else 'off'} "
        f"-ctk/-ctv {_ggml_kv(kv_dtype)}"
        + (
            f" -ngl {given_ngl} (given: --fit leaves a layer count set by hand alone)"
            if given_ngl is not None
            else " (--fit on)"
            if era.fit
            else " -ngl 99 (all layers on the GPU)"
        )
    )
    if not era.fit and given_ngl is None:
        notes.append(f"llama.cpp {version} has no --fit: a model that does not fit fails to load")
    resolved: dict[str, int | float | bool | str] = {
        "n_ctx": n_ctx,
        "n_parallel": slots,
        "n_ctx_seq": runner.cells_per_slot,
        "kv_unified": not era.streams_per_slot,
        "n_batch": n_batch,
        "n_ubatch": n_ubatch,
        "flash_attn": flash,
        "cache_type_k": _ggml_kv(kv_dtype),
        "cache_type_v": _ggml_kv(kv_dtype),
        "swa_full": swa_extra is None,
        "fit": era.fit and given_ngl is None,
    }
    if given_ngl is not None:
        resolved["n_gpu_layers"] = min(given_ngl, m.num_hidden_layers + 1)
    if m.vision is not None:
        resolved["mmproj"] = bool(settings.mmproj)
    moe_layers = cpu_moe_layers(m, settings.n_cpu_moe)
    experts = cpu_expert_bytes(m, fmt, moe_layers)
    if moe_layers:
        resolved["n_cpu_moe"] = moe_layers
        notes.append(
            f"--n-cpu-moe {moe_layers}: the routed experts of the first {moe_layers} of {m.num_hidden_layers} "
            f"layers ({experts / 2**30:.2f} GiB) stay in RAM and the CPU multiplies them"
        )
    return runner_plan(
        m,
        runner,
        reserve_bytes=reserve,
        reserve_formula=(
            f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB + compute buffer beyond the activation peak "
            f"({runner.reserve_tokens:,} tokens x {m.hidden_size:,} hidden x 4 B = {margin:,} B) = {reserve:,} B"
        ),
        reserve_source=(
            "CUDA context: common.CUDA_CONTEXT_BYTES (pytorch#107667/#20532); consistent with the record "
            "llamacpp-command-r7b-q6kl-swa-vs-swafull-31k (about 525 MiB of process memory beyond the logged "
            "buffers); compute margin: the 258.50 MiB compute buffer of a Llama-3-8B log (see OUTPUT_INPUT_ROWS)"
        ),
        assumptions=notes,
        settings=resolved,
        # Source: llama.cpp convert_hf_to_gguf.py writes a vision model's text weights to the model
        # GGUF and its vision tower + projector to a separate mmproj GGUF (--mmproj), which
        # llama-server loads only when given (tools/mtmd).
        gguf_vision="mmproj" if settings.mmproj else "absent",
        cpu_expert_bytes=experts,
    )


@dataclass(frozen=True, slots=True)
class LayerSplit:
    """What moves with each repeating layer when llama.cpp offloads fewer layers, and what does not."""

    layer_weight_bytes: tuple[int, ...]
    layer_kv_bytes: tuple[int, ...]
    other_weight_bytes: int  # on the GPU at any layer count: final norm, vision tower
    output_bytes: int  # output matrix (the GPU duplicate of a tied embedding)

    @property
    def n_layers(self) -> int:
        return len(self.layer_weight_bytes)


def layer_split(e: Estimate, experts_in_ram: int | None = None) -> LayerSplit:
    """Split the estimate's weights and KV by repeating layer (weights from the GGUF tensor list;
    KV from the one kv_cache_bytes result, which is the same for every layer of a kind). The
    routed experts of the first `experts_in_ram` layers (default: the plan's --n-cpu-moe) stay in
    RAM and leave their layers."""
    m = e.model
    tensors = tensor_inventory(m)
    sizes = model_tensor_bytes(e.weight_format, m)
    weights = [0] * m.num_hidden_layers
    output = 0
    in_ram = int(e.plan.settings.get("n_cpu_moe", 0)) if experts_in_ram is None else experts_in_ram
    moved = 0
    for t, size in zip(tensors, sizes, strict=True):
        if t.layer is not None and t.role in EXPERT_ROLES and t.layer < in_ram:
            moved += size
            continue
        if t.layer is not None:
            weights[t.layer] += size
        elif t.role == "output" or (t.role == "token_embd" and m.tie_word_embeddings):
            output += size
    kinds = [lay.kind for lay in kv_layers(m, 1)]
    n_global = kinds.count("global")
    n_local = len(kinds) - n_global
    per_global = e.kv.global_bytes // n_global if n_global else 0
    per_local = e.kv.local_bytes // n_local if n_local else 0
    kv = tuple(per_global if k == "global" else per_local for k in kinds)
    # What stays on the GPU at any layer count: the estimate's GPU weights (which leave out the
    # plan's experts in RAM) less the layers and the output, with any experts moved here put back.
    other = e.weights_bytes + e.plan.offload_weight_bytes - (sum(weights) + moved) - output
    return LayerSplit(tuple(weights), kv, other, output)


@dataclass(frozen=True, slots=True)
class Buffers:
    """The "... buffer size" lines llama.cpp logs for CUDA0 with `gpu_layers` offloaded."""

    gpu_layers: int  # -ngl as llama.cpp counts: repeating layers + 1 for the output layer
    model_bytes: int
    kv_bytes: int
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.kv_bytes + self.compute_bytes


def buffers(e: Estimate, split: LayerSplit, gpu_layers: int) -> Buffers:
    """CUDA0 buffers with -ngl `gpu_layers`: the last min(ngl, n) repeating layers (weights + KV) and,
    only when ngl > n, the output layer (src/llama-model.cpp load_tensors: i_gpu_start = n - ngl).
    With the output matrix in RAM the logits are computed on the CPU and leave the CUDA0 buffer."""
    n = split.n_layers
    k = max(0, min(gpu_layers, n))
    output_on_gpu = gpu_layers > n
    margin = compute_margin_bytes(e.model, e.activations.prefill_tokens)
    model = split.other_weight_bytes + sum(split.layer_weight_bytes[n - k :])
    if output_on_gpu:
        model += split.output_bytes
    compute = graph_peak_bytes(e, output_on_gpu, k > 0) + margin
    return Buffers(gpu_layers, model, sum(split.layer_kv_bytes[n - k :]), compute)


def graph_peak_bytes(e: Estimate, with_output: bool, with_layers: bool = True) -> int:
    """A device's worst-case graph: the layers' forward peak plus the f32 KQ mask, which is live
    while the layers run but not at the output matmul (logdetective PR #106: 164 / 2144 MiB = KQ
    128 / 2048 MiB + 32 + the mask's 4 / 64 MiB); on the device with the output layer, at least
    the logits' peak."""
    forward = e.activations.forward_bytes + (kq_mask_bytes(e) if with_layers else 0)
    return max(e.activations.bytes, forward) if with_output else forward


# Source: ggml/src/ggml-backend.cpp ggml_backend_sched_new: sched->n_copies = parallel ?
# GGML_SCHED_MAX_COPIES : 1, GGML_SCHED_MAX_COPIES defaulting to 4 (ggml/src/CMakeLists.txt). Each
# copy of an input that crosses devices (the hidden state from the previous GPU, the KQ mask from
# the host) is flagged input + output, so ggml-alloc keeps all of them for the whole graph.
PIPELINE_COPIES = 4
# Source: src/llama-graph.cpp build_attn_inp_kv: the KQ mask is an f32 input of n_kv x n_tokens.
MASK_BYTES = 4


def layer_devices(n_layers: int, devices: int, gpu_layers: int) -> tuple[int | None, ...]:
    """The device of each repeating layer and, last, of the output layer (None: host memory).

    Source: src/llama-model.cpp load_tensors: i_gpu_start = max(n - ngl, 0), act_gpu_layers =
    min(ngl, n + 1); layer il (the output layer is il = n) is on the GPU when i_gpu_start <= il <
    i_gpu_start + act_gpu_layers, on device upper_bound(splits, (il - i_gpu_start) / act_gpu_layers),
    where splits are the cumulative shares of the devices' free memory (-ts unset). Identical cards
    have equal shares, k / devices, so the device is floor((il - i_gpu_start) x devices / act).
    """
    start = max(n_layers - gpu_layers, 0)
    active = min(gpu_layers, n_layers + 1)
    out: list[int | None] = []
    for il in range(n_layers + 1):
        if il < start or il - start >= active:
            out.append(None)
        else:
            out.append(min(devices - 1, (il - start) * devices // active))
    return tuple(out)


def pipeline_parallel(devices: int, split: LayerSplit, gpu_layers: int, overrides: bool = False) -> bool:
    """src/llama-context.cpp: pipeline parallelism needs more than one device, every layer and the
    output offloaded (n_gpu_layers > n_layer), -sm layer, the KV cache on the GPUs and no tensor
    buffer overrides (-ot, --n-cpu-moe: `!model.has_tensor_overrides()`; the published two-GPU -ot
    log llamacpp-02 prints no "pipeline parallelism enabled" and 1,080 MiB per card, no copies)."""
    return devices > 1 and gpu_layers > split.n_layers and not overrides


def kq_mask_bytes(e: Estimate) -> int:
    """The f32 KQ mask of the worst-case graph: one stream's cells x ubatch tokens (a second mask
    over the sliding cells for windowed models)."""
    tokens = e.activations.prefill_tokens
    span = e.plan.kq_span_tokens
    total = span * tokens * MASK_BYTES
    window = e.model.layer_pattern.window_tokens
    if window is not None and e.model.layer_pattern.kind != "all_global":
        total += min(span, window + e.plan.kv_window_extra_tokens) * tokens * MASK_BYTES
    return total


def device_buffers(e: Estimate, split: LayerSplit, gpu_layers: int, devices: int) -> tuple[Buffers, ...]:
    """Each GPU's buffers with -ngl `gpu_layers` over `devices` identical cards (-sm layer).

    Model and KV: the layers llama.cpp puts on the device (layer_devices); the output layer and
    the other non-repeating GPU tensors go with the output layer's device (the last GPU; the last
    one holding layers when the output stays in RAM). Compute: the device with the output layer
    holds the worst-case graph with its logits, the others the layers' forward peak; both with the
    f32 hidden rows of their input. With pipeline parallelism each device keeps PIPELINE_COPIES
    copies of its inputs instead of one: the KQ mask and the hidden state.
    """
    if devices <= 1:
        return (buffers(e, split, gpu_layers),)
    n = split.n_layers
    where = layer_devices(n, devices, gpu_layers)
    margin = compute_margin_bytes(e.model, e.activations.prefill_tokens)
    pipeline = pipeline_parallel(devices, split, gpu_layers, e.plan.offload_experts)
    used = [d for d in where[:n] if d is not None]
    holder = where[n] if where[n] is not None else (max(used) if used else None)
    extra_copies = PIPELINE_COPIES - 1 if pipeline else 0
    mask = kq_mask_bytes(e)
    out: list[Buffers] = []
    for dev in range(devices):
        layers = [il for il in range(n) if where[il] == dev]
        model = sum(split.layer_weight_bytes[il] for il in layers)
        if dev == holder:
            model += split.other_weight_bytes + (split.output_bytes if where[n] == dev else 0)
        kv = sum(split.layer_kv_bytes[il] for il in layers)
        if not layers and where[n] != dev:
            out.append(Buffers(0, model, kv, 0))
            continue
        peak = graph_peak_bytes(e, where[n] == dev, bool(layers))
        # Every card's input crosses a device boundary: the first card's comes from the host
        # (token_embd stays there), the others' from the previous card.
        copies = extra_copies * (mask + margin)
        out.append(Buffers(len(layers) + (where[n] == dev), model, kv, peak + margin + copies))
    return tuple(out)


def fit_moe_first(
    e: Estimate, split: LayerSplit, fitting: int, device_bytes: int, devices: int = 1
) -> tuple[LayerSplit, int, int]:
    """--fit's layout: (split, GPU layers, layers whose experts went to RAM). A MoE model that does
    not fit with every layer first moves routed experts (_fit_experts_in_ram), then layers."""
    if e.model.moe is None or fitting > split.n_layers:
        return split, fitting, 0
    k = _fit_experts_in_ram(e, device_bytes, devices)
    moved = layer_split(e, k)
    return moved, fit_gpu_layers(e, moved, device_bytes, FIT_MARGIN_BYTES, devices), k


def fit_expert_figures(e: Estimate, layers: int) -> list[EngineFigure]:
    """The view's figures for the experts --fit moved to RAM (none when it moved none)."""
    if not layers:
        return []
    moved = cpu_expert_bytes(e.model, e.weight_format, layers)
    return [
        EngineFigure("fit_cpu_moe_layers", "layers whose experts --fit keeps in RAM", layers,
                     f"of {e.model.num_hidden_layers}",
                     "MoE: dense weights first, the first layers' routed experts to RAM",
                     "common/fit.cpp (PR #16653: 'For MoE models dense weights are prioritized')"),
        EngineFigure("fit_expert_bytes", "routed experts --fit keeps in RAM", moved, "bytes",
                     f"ffn_*_exps of the first {layers} layers", "common/fit.cpp"),
    ]  # fmt: skip


def _fit_experts_in_ram(e: Estimate, device_bytes: int, devices: int) -> int:
    """The fewest leading layers whose routed experts --fit moves to RAM so that every layer fits
    with FIT_MARGIN_BYTES free (all of them when even that does not fit; binary search: more
    experts in RAM never need more device memory).

    Source: ggml-org/llama.cpp PR #16653 (common/fit.cpp): when the model does not fit, "for MoE
    models dense weights are prioritized for allocation in device memory" ("set to use 35
    dense-only and 22 full GPU layers"); which layers go dense-only first is taken to be the
    leading ones, as --n-cpu-moe does."""
    n = e.model.num_hidden_layers

    def fits(k: int) -> bool:
        split = layer_split(e, k)
        return all(
            b.total_bytes + FIT_MARGIN_BYTES <= device_bytes for b in device_buffers(e, split, n + 1, devices)
        )

    low, high = 1, n
    if not fits(high):
        return n
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    return low


def fit_gpu_layers(
    e: Estimate, split: LayerSplit, device_bytes: int, margin_bytes: int, devices: int = 1
) -> int:
    """The most layers (-ngl, output layer included) whose buffers leave `margin_bytes` free on
    every one of `devices` cards.

    Source: common/fit.cpp common_params_fit_impl (engines.md section 2.1): with an explicit -c the
    context is not shrunk; GPU layers are reduced until the projected use fits under the margin.
    Over several GPUs fit.cpp also moves layers between them; here the split stays llama.cpp's
    default (equal shares of identical cards) and only the layer count falls.
    """
    for ngl in range(split.n_layers + 1, -1, -1):
        if all(b.total_bytes + margin_bytes <= device_bytes for b in device_buffers(e, split, ngl, devices)):
            return ngl
    return 0


def buffer_figures(
    e: Estimate,
    split: LayerSplit,
    b: Buffers,
    *,
    ollama_engine: bool = False,
    gpu_layers: int | None = None,
    devices: tuple[Buffers, ...] = (),
) -> list[EngineFigure]:
    """The load log's lines for the busiest GPU `b` (CUDA0 on one card; llama.cpp wording, or the
    Ollama engine's own); with several `devices`, each card's total and the sums over the cards."""
    n = split.n_layers
    ngl = b.gpu_layers if gpu_layers is None else gpu_layers
    cards = devices or (b,)
    dev = f"CUDA{cards.index(b)}"
    on_gpus = sum(d.model_bytes for d in cards)
    duplicate = split.output_bytes if e.model.tie_word_embeddings and ngl > n else 0
    host = e.checkpoint_bytes - (on_gpus - duplicate)
    labels = (
        (f"model weights ({dev})", "model weights (CPU)", f"kv cache ({dev})", f"compute graph ({dev})")
        if ollama_engine
        else (
            f"{dev} model buffer size",
            "CPU_Mapped model buffer size",
            f"{dev} KV buffer size",
            f"{dev} compute buffer size",
        )
    )
    margin = compute_margin_bytes(e.model, e.activations.prefill_tokens)
    per_card: list[EngineFigure] = []
    if len(cards) > 1:
        per_card = [
            EngineFigure(f"cuda{i}_total_bytes", f"CUDA{i} buffers (model + KV + compute)", d.total_bytes,
                         "bytes", f"{d.gpu_layers} layers: {d.model_bytes:,} + {d.kv_bytes:,} + {d.compute_bytes:,}",
                         "src/llama-model.cpp load_tensors (layer split by the devices' free memory, -sm layer)")
            for i, d in enumerate(cards)
        ] + [
            EngineFigure("gpus_model_bytes", f"model buffers on the {len(cards)} GPUs", on_gpus, "bytes",
                         " + ".join(f"{d.model_bytes:,}" for d in cards), "sum of the CUDAn model buffer lines"),
            EngineFigure("gpus_kv_bytes", f"KV buffers on the {len(cards)} GPUs", sum(d.kv_bytes for d in cards),
                         "bytes", " + ".join(f"{d.kv_bytes:,}" for d in cards), "sum of the CUDAn KV buffer lines"),
            EngineFigure("gpus_compute_bytes", f"compute buffers on the {len(cards)} GPUs",
                         sum(d.compute_bytes for d in cards), "bytes",
                         " + ".join(f"{d.compute_bytes:,}" for d in cards), "sum of the CUDAn compute buffer lines"),
        ]  # fmt: skip
    return [
        EngineFigure("model_buffer_bytes", labels[0], b.model_bytes, "bytes",
                     (f"GGUF tensors of {min(ngl, n)} of {n} layers + non-repeating"
                      + (" + output" if ngl > n else " (output in RAM)") if len(cards) == 1
                      else "GGUF tensors of this card's layers") + f" = {b.model_bytes:,} B",
                     "src/llama-model.cpp load_tensors (token_embd stays in host memory; a tied output is duplicated)"),
        EngineFigure("host_model_buffer_bytes", labels[1], max(0, host), "bytes",
                     "GGUF tensors left in RAM (token_embd and layers not offloaded)",
                     "src/llama-model.cpp load_tensors"),
        EngineFigure("kv_buffer_bytes", labels[2], b.kv_bytes, "bytes",
                     f"KV of the {min(b.gpu_layers, n)} offloaded layers = {b.kv_bytes:,} B", e.plan.kv_source),
        EngineFigure("compute_buffer_bytes", labels[3], b.compute_bytes, "bytes",
                     (("activation peak" if ngl > n else "forward peak (logits on the CPU)")
                      + f" + {margin:,} B output-matmul input" if len(cards) == 1
                      else "this card's graph peak (logits on the output layer's card) + its f32 input rows"
                      + (f" + {PIPELINE_COPIES - 1} more copies of its inputs (pipeline parallelism)"
                         if ngl > n else ""))
                     + f" = {b.compute_bytes:,} B",
                     e.plan.activation_source),
        EngineFigure("total_bytes", f"{dev} buffers (model + KV + compute)", b.total_bytes, "bytes",
                     f"{b.model_bytes:,} + {b.kv_bytes:,} + {b.compute_bytes:,}",
                     "sum of the buffer-size lines (what Ollama >= 0.30 parses as the model's VRAM)"),
        *per_card,
    ]  # fmt: skip


def view(estimate: Estimate, gpu: GpuSpec, settings: EngineSettings, version: str) -> EngineView:
    """The buffer-size lines llama.cpp logs on `gpu`, the layers it offloads, and whether it starts.

    Device memory = the nvidia-smi total minus this process's CUDA context. With --fit (2025.12)
    the layer count is reduced until 1024 MiB stay free; older builds load every layer (-ngl 99)
    or fail.
    """
    e = estimate
    era = _era(version)
    split = layer_split(e)
    usable, _ = usable_gpu_bytes(gpu)
    device = usable - CUDA_CONTEXT_BYTES
    n = split.n_layers
    every = n + 1
    cards = max(1, settings.pp)
    fitting = fit_gpu_layers(e, split, device, FIT_MARGIN_BYTES if era.fit else 0, cards)
    given = settings.n_gpu_layers
    fit_experts = 0  # layers whose routed experts --fit moves to RAM (MoE, dense weights first)
    if era.fit and given is None and settings.n_cpu_moe is None:
        split, fitting, fit_experts = fit_moe_first(e, split, fitting, device, cards)
    ngl = min(given, every) if given is not None else fitting if era.fit else every
    per_card = device_buffers(e, split, ngl, cards)
    b = max(per_card, key=lambda x: x.total_bytes)
    starts = all(x.total_bytes <= device for x in per_card)
    figures = buffer_figures(e, split, b, gpu_layers=ngl, devices=per_card if cards > 1 else ())
    figures += [
        EngineFigure("process_bytes", "GPU memory the process holds (buffers + CUDA context)",
                     b.total_bytes + CUDA_CONTEXT_BYTES, "bytes",
                     f"{b.total_bytes:,} + {CUDA_CONTEXT_BYTES:,}", "common.CUDA_CONTEXT_BYTES"),
        EngineFigure("device_free_bytes", "free device memory at load", device, "bytes",
                     f"nvidia-smi total {usable:,} - CUDA context {CUDA_CONTEXT_BYTES:,}",
                     "catalog usable_mib; llama.cpp measures free memory after creating its context"),
        EngineFigure("gpu_layers", "offloaded layers to GPU", ngl, f"of {every}",
                     (f"-ngl {given} as given" if given is not None
                      else "--fit: most layers leaving 1024 MiB free" if era.fit else "-ngl 99: every layer"),
                     "common/fit.cpp common_params_fit_impl" if era.fit else "src/llama-model.cpp load_tensors"),
        EngineFigure("starts", "starts", starts, "", "CUDA0 buffers <= free device memory",
                     "ggml_backend_cuda_buffer_type_alloc_buffer fails (cudaMalloc out of memory) otherwise"),
    ]  # fmt: skip
    figures += fit_expert_figures(e, fit_experts)
    notes: list[str] = []
    if cards > 1:
        where = layer_devices(n, cards, ngl)
        spans = []
        for dev in range(cards):
            mine = [il for il in range(n) if where[il] == dev]
            spans.append(
                f"CUDA{dev} "
                + (f"layers {mine[0]}-{mine[-1]}" if mine else "no layers")
                + (" + output" if where[n] == dev else "")
            )
        notes.append(
            f"-sm layer over {cards} GPUs, equal shares: "
            + ", ".join(spans)
            + (
                f"; pipeline parallelism (n_copies={PIPELINE_COPIES}) keeps {PIPELINE_COPIES} copies of each "
                "card's inputs"
                if pipeline_parallel(cards, split, ngl, e.plan.offload_experts)
                else ""
            )
        )
    if fit_experts:
        notes.append(
            f"--fit keeps 1024 MiB free with MoE dense weights first: the routed experts of the first "
            f"{fit_experts} of {n} layers stay in RAM"
            + (f", and {ngl} of {every} layers on the GPU" if ngl < every else ", every layer on the GPU")
        )
    elif given is not None and ngl < every:
        notes.append(f"-ngl {given}: {ngl} of {every} layers on the GPU, the rest (weights and KV) in RAM")
    elif era.fit and ngl < every:
        notes.append(
            f"--fit keeps 1024 MiB free: {ngl} of {every} layers on the GPU, the rest (weights and KV) in RAM"
            + (" - nothing fits on the GPU" if ngl == 0 else "")
        )
    if not starts:
        notes.append(
            f"out of memory at load: the CUDA{per_card.index(b)} buffers need {b.total_bytes / MIB:,.0f} MiB of "
            f"{device / MIB:,.0f} MiB free"
            + (f"; -ngl {fitting} would fit" if not era.fit and fitting else "")
        )
    return EngineView(NAME, version, starts, tuple(figures), tuple(notes))


ENGINE = Engine(NAME, VERSIONS, SETTINGS, True, KV_DTYPES, plan, view)
