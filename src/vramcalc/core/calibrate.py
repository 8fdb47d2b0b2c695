"""Hold an engine's startup log against our estimate at the same settings: theirs vs ours per figure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vramcalc import limits as lim
from vramcalc.core.engines import get_engine, resolve_engine
from vramcalc.core.engines import llamacpp as llamacpp_engine
from vramcalc.core.engines import vllm as vllm_engine
from vramcalc.core.engines.base import Engine, EngineSettings
from vramcalc.core.engines.common import parse_version
from vramcalc.core.estimate import Workload, check_count
from vramcalc.core.formats import KV_DTYPES, all_format_names, resolve_format, resolve_kv_dtype
from vramcalc.core.types import Measured
from vramcalc.errors import SpecError, UnknownFormatError
from vramcalc.logs.llamacpp import gguf_ftype_name
from vramcalc.logs.vllm import VLLM_V0_BASELINE
from vramcalc.units import GIB, MIB

if TYPE_CHECKING:
    from vramcalc.core.scenario import Scenario
    from vramcalc.logs import LogFacts, LogFigure
    from vramcalc.specs import GpuSpec, ModelSpec

Setting = int | float | bool | str

# A GPU total printed with two decimals of GiB is known to 0.005 GiB; 0.01 GiB also covers the
# total that `requested / gpu_memory_utilization` gives back (both figures rounded).
GPU_TOTAL_MATCH_BYTES = GIB // 100

# vLLM's log quantisation keyword -> our weight format.
# Source: vllm/model_executor/layers/quantization/__init__.py (method names); formats.py labels.
_VLLM_QUANT = {
    "fp8": "fp8",
    "mxfp4": "mxfp4-moe",
    "awq": "awq-int4",
    "awq_marlin": "awq-int4",
    "gptq": "gptq-int4",
    "bitsandbytes": "nf4",
}
_VLLM_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "bf16": "bf16", "fp16": "fp16"}

# A log dated before this day comes from Ollama 0.6.x or older. Source: v0.7.0 (the new engine's
# windowed gemma3 estimate) was announced 2025-05-15 (ollama.com/blog/multimodal-models); the first
# of May leaves room for its release candidates.
OLLAMA_07_BEFORE = "2025-05-01"

# Words that name a vendor or memory type, not the card: dropped when matching a printed GPU name.
_GPU_NOISE = {
    "nvidia",
    "geforce",
    "tesla",
    "amd",
    "radeon",
    "hbm2",
    "hbm2e",
    "hbm3",
    "hbm3e",
    "gddr6",
    "gddr6x",
}


@dataclass(frozen=True, slots=True)
class CalibrationPlan:
    """How the log's settings become our inputs, and what had to be assumed."""

    engine: str  # NAME@VERSION for scenario.run
    era: str  # one sentence: which version/era and why
    workload: Workload
    quant: str | None
    kv_dtype: str
    settings: EngineSettings
    used: dict[str, Setting]  # each setting as used, for output
    assumptions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """One figure: the engine's value as printed, ours, and the relative difference."""

    key: str
    label: str  # the engine's words
    theirs: int | float | bool
    theirs_text: str
    ours: int | float | bool | None  # None: we do not model this figure
    unit: str  # bytes, tokens, blocks, x, layers, "" (starts)
    shown_in: str  # "GiB" or "MiB" for bytes: the unit the engine printed
    decimals: int  # digits the engine printed (so ours is shown alike)
    diff: float | None  # (ours - theirs) / |theirs|; None for yes/no figures and zero
    print_rounding: float | None  # half the last printed digit, relative to theirs
    line: int

    @property
    def agrees(self) -> bool | None:
        """For yes/no figures: do we agree? For numbers: within the print rounding?"""
        if self.ours is None:
            return None
        if isinstance(self.theirs, bool):
            return self.ours == self.theirs
        if self.diff is None:
            return self.ours == self.theirs
        return abs(self.diff) <= (self.print_rounding or 0.0)


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Theirs vs ours for every figure the log printed, with the assumptions behind ours."""

    engine: str  # the log's engine
    version: str | None  # as printed
    era: str
    engine_profile: str  # "vllm 0.6.4"
    model_id: str
    model_printed: str | None
    gpu_id: str
    gpu_printed: str | None
    settings: dict[str, Setting]
    rows: tuple[CalibrationRow, ...]
    assumptions: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())


def model_candidates(printed: str) -> list[str]:
    """Names to try in the catalog for a printed model: the HF id or path, its last part, and
    that part as a slug ('Gemma 2 27b It' -> 'gemma-2-27b-it', 'gemma3' -> 'gemma-3')."""
    name = printed.strip().strip("'\"")
    base = re.split(r"[/\\]", name.rstrip("/\\"))[-1]
    base = re.sub(r"\.gguf$", "", base, flags=re.IGNORECASE)
    slug = re.sub(r"[\s_:]+", "-", base.strip()).lower()
    slug = re.sub(r"-(?:q\d\w*|iq\d\w*|f16|bf16|f32|gguf)(?:-\w+)?$", "", slug)  # quant suffix of file names
    out = [name, base, slug]
    if slug.startswith("meta-"):
        out.append(slug.removeprefix("meta-"))
    out.append(re.sub(r"^([a-z]+)(\d)", r"\1-\2", slug))  # Ollama family tags: gemma3 -> gemma-3
    return [c for c in dict.fromkeys(out) if c]


def _gpu_keys(printed: str) -> set[str]:
    tokens = [t for t in re.split(r"[\s_]+", printed.strip().lower()) if t]
    clean = [t for t in tokens if t not in _GPU_NOISE]
    return {printed.strip().lower(), "-".join(tokens), "-".join(clean)}


def log_gpu_total_bytes(facts: LogFacts) -> int | None:
    """The CUDA total the log states (V0 total_gpu_memory) or implies (V1 requested / utilization)."""
    total = facts.figure("cuda_total_bytes")
    if total is not None:
        return int(total.value)
    requested = facts.figure("requested_bytes")
    util = facts.settings.get("gpu_memory_utilization")
    if requested is not None and isinstance(util, float) and util > 0:
        return round(int(requested.value) / util)
    return None


def gpu_named(printed: str, gpus: Iterable[GpuSpec]) -> GpuSpec | None:
    """The catalog GPU a printed name (a log's, nvidia-smi's) means: its id, name or an alias,
    ignoring vendor and memory-type words; None when none matches."""
    wanted = _gpu_keys(printed)
    for g in gpus:
        if wanted & {g.id.lower(), g.name.lower(), *(a.lower() for a in g.aliases)}:
            return g
    return None


def match_gpu(facts: LogFacts, gpus: Iterable[GpuSpec]) -> tuple[GpuSpec | None, str]:
    """The catalog GPU the log means: by the printed name, else by a measured CUDA total that
    equals the log's (to its print precision); (None, '') when neither decides."""
    candidates = list(gpus)
    if facts.gpu:
        named = gpu_named(facts.gpu, candidates)
        if named is not None:
            return named, f"GPU {facts.gpu!r} in the log is catalog {named.id}"
    total = log_gpu_total_bytes(facts)
    if total is not None:
        hits = [
            g
            for g in candidates
            if g.cuda_total_mib is not None and abs(g.cuda_total_mib * MIB - total) <= GPU_TOTAL_MATCH_BYTES
        ]
        if len(hits) == 1:
            return hits[0], (
                f"the log does not name its GPU; its total memory {total / GIB:.2f} GiB is the measured total "
                f"of catalog {hits[0].id} (pass --gpu to choose another)"
            )
    return None, ""


def check_complete(facts: LogFacts, model_ok: bool, gpu_ok: bool, model_unknown: str | None = None) -> None:
    """Raise one SpecError naming what was found and what is still missing (after --model/--gpu)."""
    still = [k for k in facts.missing if not (k == "model" and model_ok) and not (k == "gpu" and gpu_ok)]
    if "model" not in still and not model_ok:
        still.insert(0, "model")
    if "gpu" not in still and not gpu_ok:
        still.append("gpu")
    if not still:
        return
    hints = []
    for key in still:
        hint = facts.missing_hint(key)
        if key == "model" and model_unknown:
            hint = f"a catalog model for {model_unknown!r} (pass --model ID)"
        if key == "gpu" and facts.gpu:
            hint = f"a catalog GPU for {facts.gpu!r} (pass --gpu ID)"
        hints.append(hint)
    raise SpecError(f"cannot calibrate: found {facts.found()}; missing {'; '.join(hints)}")


def _profile(name: str) -> Engine:
    try:
        return get_engine(name)
    except ModuleNotFoundError:
        raise SpecError(
            f"this vramcalc has no {name} engine profile, so it cannot model a {name} log"
        ) from None


def _engine_version(facts: LogFacts, model: ModelSpec | None = None) -> tuple[str, str]:
    """NAME@VERSION to model and one sentence saying why."""
    name = facts.engine
    profile = _profile(name)
    printed = re.match(r"\d+(?:\.\d+){1,3}", facts.version or "")
    build = re.fullmatch(r"b(\d{1,7})", facts.version or "")
    if name == "llama.cpp" and printed is None:
        # A build number (bNNNN) is not one of our month labels: the log's own lines and the
        # build decide which llama.cpp behaviours it has (llamacpp_engine.version_for_log).
        has_swa = model is not None and model.layer_pattern.window_tokens is not None
        label, why = llamacpp_engine.version_for_log(
            int(build.group(1)) if build else None,
            "kv_unified" in facts.settings,
            "_iswa" in facts.markers,
            has_swa,
        )
        return f"llama.cpp@{label}", why
    if name == "vllm" and facts.era == "V0":
        said = f"vLLM {facts.version}, " if facts.version else ""
        asked = parse_version(printed.group(0)) if printed else None
        wording = next((w for w in VLLM_V0_BASELINE if w in facts.markers), None)
        if (asked is not None and asked >= (0, 6, 5)) or (asked is None and wording):
            why = f"{facts.version}" if asked is not None else f"the {wording!r} wording of 0.6.5 and later"
            # A printed V0 version keeps its own number (0.7.x: MLA's absorbed weights); the
            # memory accounting is 0.6.5's either way. V0 run on 0.9 or later (VLLM_USE_V1=0) is
            # our newest V0 label, 0.8 (our labels from 0.9.0 on are V1).
            at = "0.6.5"
            if asked is not None and printed is not None:
                at = printed.group(0) if asked < (0, 9, 0) else "0.8"
            return f"vllm@{at}", (
                f"{said}V0 engine ({facts.era_evidence!r}), {why}: modelled as vllm {at}, our V0 profile "
                "with PR #10511's memory profiling"
            )
        return "vllm@0.6", f"{said}V0 engine ({facts.era_evidence!r}): modelled as vllm 0.6, our V0 profile"
    if printed is not None:
        version = printed.group(0)
        asked = parse_version(version)
        if name == "vllm" and facts.era == "V1" and asked is not None and asked < (0, 9, 0):
            return (
                "vllm@0.9.0",
                f"vLLM {facts.version} with the V1 engine: modelled as vllm 0.9.0, our oldest V1 profile",
            )
        try:
            resolve_engine(f"{name}@{version}")
        except SpecError:
            oldest = profile.versions[0]
            if asked is not None and asked < parse_version(oldest):  # type: ignore[operator]
                # Older than every profile: the oldest is the nearest behaviour (a log of Ollama
                # 0.5 prints the llm/memory.go estimate 0.6 still makes), not the newest.
                return f"{name}@{oldest}", (
                    f"{name} {facts.version} is older than the versions we model ({', '.join(profile.versions)}): "
                    f"modelled as {name} {oldest}, the oldest"
                )
            return name, (
                f"{name} {facts.version} is outside the versions we model ({', '.join(profile.versions)}): "
                f"modelled as {name} {profile.default_version}"
            )
        return f"{name}@{version}", f"{name} {facts.version} (printed in the log)"
    if name == "vllm" and "non-torch forward increase memory" in facts.markers:
        return "vllm@0.19", (
            "vLLM V1, version not printed; its profiling line ('torch peak memory increase', 'non-torch "
            "forward increase memory') is the 0.9-0.19 accounting: modelled as vllm 0.19"
        )
    if name == "ollama" and "memory.required.full" in facts.markers:
        date = str(facts.settings.get("log_date", "9999"))
        if date < OLLAMA_07_BEFORE:
            return "ollama@0.6", (
                f"Ollama, version not printed; the log is dated {date}, before Ollama 0.7 existed: "
                "modelled as ollama 0.6"
            )
        return "ollama@0.12", (
            "Ollama, version not printed; its 'memory.required.*' placement estimate is printed up to 0.29 "
            "(llm/memory.go era): modelled as ollama 0.12, the last version of that estimator"
        )
    if name == "ollama" and 'msg="model weights"' in facts.markers:
        return "ollama@0.12", (
            "Ollama, version not printed; its per-device memory lines ('model weights', 'kv cache', "
            "'compute graph') are the new memory layout's (0.11 to 0.29, before llama-server): modelled as "
            "ollama 0.12, our profile for those versions"
        )
    era = f" {facts.era}" if facts.era else ""
    return (
        name,
        f"{name}{era}, version not printed: modelled as {name} {profile.default_version}, our newest profile",
    )


def _check_formats(facts: LogFacts, quant: str | None, kv: str) -> None:
    """A weight or KV format the log names but we do not model: say so in the log's terms."""
    try:
        if quant is not None:
            resolve_format(quant)
    except UnknownFormatError:
        printed = facts.settings.get("quant_printed", quant)
        known = ", ".join(all_format_names())
        raise SpecError(
            f"the log's weight format {printed!r} is not one vramcalc models (known: {known})"
        ) from None
    try:
        if kv != "auto":
            resolve_kv_dtype(kv)
    except UnknownFormatError:
        raise SpecError(
            f"the log's KV cache type {kv!r} is not one vramcalc models (known: {', '.join(KV_DTYPES)})"
        ) from None


_LOG_BOUNDS = {
    "max_num_seqs": lim.MAX_USERS,
    "max_num_batched_tokens": lim.MAX_CTX_TOKENS,
    "ubatch": lim.MAX_CTX_TOKENS,
    "tp": lim.MAX_TP,
}


def _check_log_numbers(numbers: dict[str, tuple[int, int]]) -> None:
    """Each count the log states in [1, its bound] (vramcalc.limits), or a one-line error naming it."""
    for what, (value, bound) in numbers.items():
        if not 1 <= value <= bound:
            shown = f"{value:,}" if abs(value) < 10**30 else "a number of more than 30 digits"
            raise SpecError(
                f"the log's {what} {shown} is outside what vramcalc accepts (1 to {bound:,}); "
                "not a real startup log"
            )


def with_given(
    facts: LogFacts,
    *,
    tp: int | None = None,
    quantization: str | None = None,
    version: str | None = None,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    gpu_util: float | None = None,
    ctx: int | None = None,
    n_cpu_moe: int | None = None,
) -> LogFacts:
    """The log's facts with what the user adds for a log that does not print it (a config line cut
    off when it was pasted); a value the log does print cannot be changed. --ctx is the context the
    engine allocated (vLLM max_model_len, llama.cpp n_ctx, Ollama num_ctx x parallel); for a
    llama.cpp or Ollama log, --quantization names the GGUF type (Q8_0, Q4_K_M, ...)."""
    settings = dict(facts.settings)
    vllm = facts.engine == "vllm"
    given: tuple[tuple[str, Setting | None, str, int], ...] = (
        ("tensor_parallel_size", tp, "--tp", lim.MAX_TP),
        ("quantization" if vllm else "quant", quantization, "--quantization", 0),
        ("max_num_seqs", max_num_seqs, "--max-num-seqs", lim.MAX_USERS),
        ("max_num_batched_tokens", max_num_batched_tokens, "--max-num-batched-tokens", lim.MAX_CTX_TOKENS),
        ("gpu_memory_utilization", gpu_util, "--gpu-util", 0),
        ("max_model_len" if vllm else "n_ctx", ctx, "--ctx", lim.MAX_CTX_TOKENS),
        ("n_cpu_moe", n_cpu_moe, "--n-cpu-moe", lim.MAX_LAYERS),
    )
    for key, value, flag, most in given:
        if value is None:
            continue
        if flag == "--n-cpu-moe" and facts.engine != "llama.cpp":
            raise SpecError(f"--n-cpu-moe applies to llama.cpp logs; this is a {facts.engine} log")
        if not vllm and flag not in ("--quantization", "--ctx", "--n-cpu-moe"):
            raise SpecError(f"{flag} applies to vLLM logs; this is a {facts.engine} log")
        if key == "quant":
            value = gguf_ftype_name(str(value)).upper()
        if most:
            check_count(flag, int(value), 1, most)
        if key == "gpu_memory_utilization" and not 0 < float(value) <= 1:
            raise SpecError(f"--gpu-util must be in (0, 1], got {value}")
        if key in settings and settings[key] != value:
            raise SpecError(f"{flag} {value}: the log prints {key} {settings[key]!r}; drop {flag}")
        settings[key] = value
    if version is not None:
        if parse_version(version) is None:
            raise SpecError(f"--version {version!r} is not a version like 0.7.3")
        # A llama.cpp build number (bNNNN) is not a label: --version may name the label it behaves as.
        if (
            facts.version
            and facts.version != version
            and parse_version(facts.version.lstrip("v")) is not None
        ):
            raise SpecError(f"--version {version}: the log prints version {facts.version}; drop --version")
    missing = tuple(k for k in facts.missing if not (k == "context" and ctx is not None))
    return replace(facts, settings=settings, version=version or facts.version, missing=missing)


def plan(facts: LogFacts, model: ModelSpec) -> CalibrationPlan:
    """The log's settings as our inputs; anything the log does not state takes the engine's default
    and is listed as an assumption."""
    engine, era = _engine_version(facts, model)
    profile = _profile(facts.engine)
    s = facts.settings
    assumptions: list[str] = []
    used: dict[str, Setting] = {}
    wanted: dict[str, Setting] = {}
    quant: str | None = None
    kv = "auto"
    if facts.engine == "vllm":
        ctx = int(s["max_model_len"])
        users = 1
        used["max_model_len"] = ctx
        for log_key, ours in (
            ("gpu_memory_utilization", "gpu_util"),
            ("max_num_seqs", "max_num_seqs"),
            ("max_num_batched_tokens", "max_num_batched_tokens"),
            ("tensor_parallel_size", "tp"),
        ):
            if log_key in s:
                wanted[ours] = s[log_key]
                used[log_key] = s[log_key]
            else:
                assumptions.append(f"{log_key} not in the log: vLLM's default")
        method = str(s.get("quantization", "")).lower()
        dtype = str(s.get("dtype", "")).lower()
        if method and method not in _VLLM_QUANT:
            assumptions.append(
                f"quantization {method!r} is not a format we model: weights as the checkpoint ships"
            )
        quant = _VLLM_QUANT.get(method) or _VLLM_DTYPE.get(dtype)
        if quant is None:
            assumptions.append("dtype auto or not in the log: the checkpoint's own dtype")
        kv = str(s.get("kv_cache_dtype", "auto"))
        if kv.startswith("fp8"):
            kv = "fp8"
        for key in ("sampler", "mxfp4_backend", "gpu_p2p"):
            if key in s:
                version = engine.split("@", 1)[1] if "@" in engine else vllm_engine.VERSIONS[-1]
                if key == "sampler" and vllm_engine.default_sampler(version, model) == "v2":
                    # The V2 model runner's profile samples without top-k/top-p: the log's line
                    # about that path does not size it (vllm_engine.V2_PROFILE_SINCE).
                    assumptions.append(
                        f"the log's top-k/top-p line ({s[key]}) does not size the V2 model runner's "
                        "profile, which samples without it"
                    )
                    continue
                wanted[key] = s[key]
                used[key] = s[key]
    else:
        n_ctx = int(s["n_ctx"])
        seqs = max(1, int(s.get("n_seq_max", 1)))
        if "n_seq_max" not in s:
            assumptions.append("parallel sequences not in the log: 1")
        if s.get("kv_unified") is True and seqs > 1:
            users, ctx = 1, n_ctx
            assumptions.append(f"unified KV cache: {seqs} sequences share {n_ctx:,} cells, modelled as one")
        else:
            users = seqs
            ctx = int(s.get("n_ctx_per_seq", n_ctx // seqs))
        used.update({"n_ctx": n_ctx, "n_seq_max": seqs})
        ubatch = s.get("n_ubatch")
        if ubatch is None and facts.engine == "ollama" and "n_batch" in s:
            ubatch = s["n_batch"]
            assumptions.append("Ollama's --batch-size taken as the physical batch (ubatch)")
        if ubatch is not None:
            wanted["ubatch"] = ubatch
            used["n_ubatch"] = ubatch
        else:
            assumptions.append("n_ubatch not in the log: the engine's default")
        if isinstance(s.get("flash_attn"), bool):
            wanted["flash_attn"] = s["flash_attn"]
            used["flash_attn"] = s["flash_attn"]
        else:
            assumptions.append("flash attention not stated: the engine's default")
        quant = str(s["quant"]) if "quant" in s else None
        if quant is None:
            assumptions.append(
                "file type not in the log: Q4_K_M (Ollama's library default, ollama/ollama#1543)"
            )
            quant = "Q4_K_M"
        used["quant"] = quant
        kv = str(s.get("kv_cache_dtype", "auto"))
        if "kv_cache_dtype" not in s:
            assumptions.append("KV cache type not in the log: f16")
        if "memory_available" in s:
            assumptions.append(
                f"Ollama saw {s['memory_available']} free; ours places layers as if the whole card were free"
            )
        if isinstance(s.get("n_cpu_moe"), int):
            used["n_cpu_moe"] = s["n_cpu_moe"]
        offloaded = facts.figure("gpu_layers")
        total_layers = s.get("n_layers_total")
        if (
            facts.engine == "llama.cpp"
            and offloaded is not None
            and isinstance(offloaded.value, int)
            and isinstance(total_layers, int)
            and offloaded.value < total_layers
        ):
            used["n_gpu_layers"] = offloaded.value
            assumptions.append(
                f"the log offloads {offloaded.value} of {total_layers} layers: taken as its -ngl (the GPU "
                "layers figure then agrees by construction; the buffers are what it tests)"
            )
        if isinstance(s.get("n_devices"), int) and int(s["n_devices"]) > 1:
            used["n_devices"] = s["n_devices"]
            assumptions.append(
                f"{s['n_devices']} GPUs in the log, each taken to be the one named: layers split over them "
                "as llama.cpp's -sm layer does (figures summed over the GPUs)"
            )
    used["kv_cache_dtype"] = kv
    _check_formats(facts, quant, kv)
    settings: dict[str, Setting] = {}
    for key, value in wanted.items():
        if key in profile.settings:
            settings[key] = value
        elif not (key == "tp" and value == 1):
            assumptions.append(
                f"the log's {key} = {value} is not a setting of our {facts.engine} profile; ignored"
            )
    engine_settings = EngineSettings(
        gpu_util=float(settings["gpu_util"]) if "gpu_util" in settings else None,
        max_num_seqs=int(settings["max_num_seqs"]) if "max_num_seqs" in settings else None,
        max_num_batched_tokens=(
            int(settings["max_num_batched_tokens"]) if "max_num_batched_tokens" in settings else None
        ),
        ubatch=int(settings["ubatch"]) if "ubatch" in settings else None,
        flash_attn=bool(settings["flash_attn"]) if "flash_attn" in settings else None,
        tp=int(settings.get("tp", 1)),
        pp=int(used.get("n_devices", 1)),
        n_cpu_moe=(
            min(int(used["n_cpu_moe"]), model.num_hidden_layers)
            if "n_cpu_moe" in used and model.moe is not None
            else None
        ),
        n_gpu_layers=int(used["n_gpu_layers"]) if "n_gpu_layers" in used else None,
        sampler=str(settings["sampler"]) if "sampler" in settings else None,
        mxfp4_backend=str(settings["mxfp4_backend"]) if "mxfp4_backend" in settings else None,
        gpu_p2p=bool(settings["gpu_p2p"]) if "gpu_p2p" in settings else None,
    )
    _check_log_numbers(
        {"context": (ctx, lim.MAX_CTX_TOKENS), "sequences": (users, lim.MAX_USERS)}
        | {key: (int(value), _LOG_BOUNDS[key]) for key, value in wanted.items() if key in _LOG_BOUNDS}
    )
    if model.max_position_embeddings < ctx:
        assumptions.append(
            f"context {ctx:,} is beyond {model.id}'s trained {model.max_position_embeddings:,}"
        )
    workload = Workload(ctx_tokens=ctx, users=users, allow_long_ctx=True)
    return CalibrationPlan(engine, era, workload, quant, kv, engine_settings, used, tuple(assumptions))


def _print_rounding(fig: LogFigure) -> float | None:
    """Half the last printed digit of every number in the figure's text, relative to its value."""
    if isinstance(fig.value, bool) or not fig.value:
        return None
    if fig.unit in ("tokens", "blocks", "layers"):
        return 0.0
    half = 0.0
    for m in re.finditer(r"(\d+)(?:\.(\d+))?\s*(GiB|Gib|GB|MiB|KiB|B|x)", fig.text):
        digits = len(m.group(2) or "")
        scale = {"GiB": GIB, "Gib": GIB, "GB": GIB, "MiB": MIB, "KiB": 1024, "B": 1, "x": 1}[m.group(3)]
        half += 0.5 * 10.0**-digits * scale
    return half / abs(float(fig.value)) if half else None


_FROM_THE_POOL = frozenset({"num_gpu_blocks", "kv_capacity_tokens", "max_concurrency"})


def _decimals(fig: LogFigure) -> int:
    numbers = re.findall(r"\d+\.(\d+)", fig.text)
    return max((len(n) for n in numbers), default=0)


# Source: vllm/v1/worker/gpu_worker.py (release sdists): from 0.28.0 the "X GiB for peak activation"
# of the "Actual usage is ..." line is the profile's transient peak plus the CUDA-graph estimate
# (peak_activation_memory = transient_peak_headroom + cudagraph_memory_estimate_applied); 0.20-0.27
# print the torch peak alone. The same line's "G GiB for CUDAGraph memory" is what capture took.
PEAK_WITH_GRAPH_ESTIMATE_SINCE = (0, 28)


def _transient_peak(facts: LogFacts, version: str) -> tuple[LogFigure, ...]:
    """The log's figures, with a 0.28+ "for peak activation" turned into the transient peak our
    activation figure is: that peak less the CUDA graphs the same line reports, which stand in for
    the estimate the log does not print. A profile made from it then takes exactly the memory the
    log's KV budget took off (peak + graphs)."""
    figs = {f.key: f for f in facts.figures}
    peak, graphs = figs.get("activation_peak_bytes"), figs.get("cuda_graph_bytes")
    parsed = parse_version(version)
    if (
        facts.engine != "vllm"
        or parsed is None
        or peak is None
        or graphs is None
        or peak.label != "for peak activation"
        or graphs.label != "for CUDAGraph memory"
        or parsed[:2] < PEAK_WITH_GRAPH_ESTIMATE_SINCE
    ):
        return facts.figures
    transient = replace(
        peak,
        label="for peak activation - for CUDAGraph memory (0.28+ prints the peak with the graph estimate)",
        value=int(peak.value) - max(0, int(graphs.value)),
        text=f"{peak.text} - {graphs.text}",
    )
    return tuple(transient if f is peak else f for f in facts.figures)


def compare(
    facts: LogFacts, scenario: Scenario, calib: CalibrationPlan, notes: Iterable[str] = ()
) -> CalibrationReport:
    """One row per figure the log printed: theirs, ours (same key in our engine view), and
    (ours - theirs) / |theirs|. Rows follow our engine's figure order; ones we lack come last."""
    view = scenario.view
    ours = {f.key: f for f in view.figures} if view is not None else {}
    order = {key: i for i, key in enumerate(ours)}
    figures = _transient_peak(facts, scenario.estimate.plan.version)
    # Blocks, token capacity and concurrency are exact integers in the log, but they follow from
    # the KV pool, which the log (and so a profile made from it) knows only to its printed digits.
    pool = next((f for f in facts.figures if f.key == "kv_pool_bytes"), None)
    pool_rounding = _print_rounding(pool) if pool is not None else None
    rows = []
    for fig in sorted(figures, key=lambda f: order.get(f.key, len(order))):
        mine = ours.get(fig.key)
        value = mine.value if mine is not None else None
        diff = None
        numeric = not isinstance(fig.value, bool) and value is not None and not isinstance(value, bool)
        if numeric and fig.value:
            assert value is not None
            diff = (float(value) - float(fig.value)) / abs(float(fig.value))
        rows.append(
            CalibrationRow(
                key=fig.key,
                label=fig.label,
                theirs=fig.value,
                theirs_text=fig.text,
                ours=value,
                unit=fig.unit,
                shown_in="MiB" if "MiB" in fig.text else ("GiB" if fig.unit == "bytes" else ""),
                decimals=_decimals(fig),
                diff=diff,
                print_rounding=(
                    max(_print_rounding(fig) or 0.0, pool_rounding or 0.0)
                    if fig.key in _FROM_THE_POOL
                    else _print_rounding(fig)
                ),
                line=fig.line,
            )
        )
    e = scenario.estimate
    gpu_id = e.gpu.gpu.id if e.gpu is not None else "-"
    all_notes = [n for n in notes if n]
    if facts.gpu and e.gpu is not None:
        g = e.gpu.gpu
        if not _gpu_keys(facts.gpu) & {g.id.lower(), g.name.lower(), *(a.lower() for a in g.aliases)}:
            all_notes.append(f"the log's GPU is {facts.gpu!r}; ours is sized for catalog {g.id} (--gpu)")
    all_notes += list(facts.notes)
    if view is not None:
        all_notes += list(view.notes)
    lacking = [r.label for r in rows if r.ours is None]
    if lacking:
        all_notes.append(f"not modelled by our {facts.engine} profile: {', '.join(lacking)}")
    return CalibrationReport(
        engine=facts.engine,
        version=facts.version,
        era=calib.era,
        engine_profile=f"{e.plan.engine} {e.plan.version}",
        model_id=e.model.id,
        model_printed=facts.model,
        gpu_id=gpu_id,
        gpu_printed=facts.gpu,
        settings=dict(calib.used),
        rows=tuple(rows),
        assumptions=(*calib.assumptions, *e.plan.assumptions),
        notes=tuple(dict.fromkeys(all_notes)),
    )


def measured_profile(report: CalibrationReport, scenario: Scenario, source: str) -> Measured:
    """What the log measured, as a calibration profile for later estimates (vLLM logs: the CUDA
    total, weights loaded, the activation peak as a factor on our formula at the log's settings,
    non-torch and CUDA-graph memory). A figure the log did not print stays None (the default)."""
    if report.engine != "vllm":
        raise SpecError(
            f"--save: calibration profiles are written from vLLM logs; a {report.engine} log's buffers "
            "are already reproduced from its settings (compare them with `vramcalc calibrate LOG`)"
        )
    theirs = {r.key: r.theirs for r in report.rows if not isinstance(r.theirs, bool)}
    ours = {r.key: r.ours for r in report.rows if r.ours is not None and not isinstance(r.ours, bool)}
    e = scenario.estimate
    total = theirs.get("cuda_total_bytes")
    util = float(e.plan.settings.get("gpu_memory_utilization", 0.0) or 0.0)
    if total is None and "requested_bytes" in theirs and util:
        total = round(float(theirs["requested_bytes"]) / util)
    scale = None
    if theirs.get("activation_peak_bytes") and ours.get("activation_peak_bytes"):
        scale = float(theirs["activation_peak_bytes"]) / float(ours["activation_peak_bytes"])

    def whole(key: str) -> int | None:
        value = theirs.get(key)
        return None if value is None else int(value)

    return Measured(
        source=source,
        engine=report.engine,
        version=e.plan.version,
        model=e.model.id,
        gpu=report.gpu_id,
        weights_format=e.weight_format.name,
        tp=e.plan.tp,
        cuda_total_bytes=None if total is None else int(total),
        weights_bytes_per_gpu=whole("weights_bytes_per_gpu"),
        activation_scale=scale,
        non_torch_bytes=whole("non_torch_bytes"),
        cuda_graph_bytes=whole("cuda_graph_bytes"),
    )
