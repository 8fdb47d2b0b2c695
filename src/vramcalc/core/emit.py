"""Launch settings for a planned deployment: the engine's own flags and environment, with the values
the estimate was computed for, so the plan that was checked is the plan that runs."""

from __future__ import annotations

from dataclasses import dataclass

from vramcalc.core.assess import assess
from vramcalc.core.check import Planned
from vramcalc.core.engines.common import version_at_least
from vramcalc.core.engines.vllm import default_sampler
from vramcalc.core.scenario import Scenario
from vramcalc.errors import SpecError

EMIT_ENGINES = ("vllm", "sglang", "llama.cpp", "ollama")

# Source: vllm/model_executor/layers/quantization/__init__.py QUANTIZATION_METHODS (awq, gptq, fp8,
# bitsandbytes, mxfp4); sglang/srt/server_args.py QUANTIZATION_CHOICES uses the same names.
_QUANTIZATION = {
    "fp8": "fp8",
    "awq-int4": "awq",
    "gptq-int4": "gptq",
    "gptq-int8": "gptq",
    "nf4": "bitsandbytes",
    "mxfp4-moe": "mxfp4",
}
# Formats a 16-bit checkpoint can be quantized to at load time; the others need a quantized checkpoint.
_ONLINE = frozenset({"fp8", "nf4"})
# Source: vllm/config/cache.py CacheDType ("auto", "fp8", ...); sglang/srt/server_args.py
# --kv-cache-dtype choices ("auto", "fp8_e5m2", "fp8_e4m3").
_VLLM_KV = {"fp8": "fp8"}
_SGLANG_KV = {"fp8": "fp8_e4m3"}
# Source: default ports of `vllm serve` (8000), sglang.launch_server (30000), llama-server (8080)
# and `ollama serve` (11434); replicas take the next ones.
_PORTS = {"vllm": 8000, "sglang": 30000, "llama.cpp": 8080, "ollama": 11434}


@dataclass(frozen=True, slots=True)
class Command:
    """One process to start: environment variables, the program (with its leading words), its flags."""

    program: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start a planned deployment on its engine."""

    planned: Planned
    engine: str  # NAME@VERSION the plan was checked with
    commands: tuple[Command, ...]  # one per process (replicas run one each)
    files: tuple[tuple[str, str], ...]  # (name, text) of files the commands read, e.g. a Modelfile
    notes: tuple[str, ...]


def _flag(name: str, value: object) -> tuple[str, ...]:
    return (name, str(value))


def _model_ref(p: Planned) -> str:
    m = p.request.model
    return m.hf_id or m.id


def _gguf_file(p: Planned, sc: Scenario) -> str:
    base = _model_ref(p).rsplit("/", 1)[-1]
    return f"{base}-{sc.estimate.weight_format.name}.gguf"


def _checkpoint_note(p: Planned, sc: Scenario) -> tuple[str | None, str | None]:
    """(--quantization value, a note on which checkpoint to serve)."""
    fmt = sc.estimate.weight_format.name
    native = p.request.model.native_weight_format
    if fmt == native or fmt in ("bf16", "fp16"):
        return None, None
    method = _QUANTIZATION.get(fmt)
    if fmt in _ONLINE:
        return method, f"weights {fmt}: quantized at load time from the 16-bit checkpoint"
    return method, f"weights {fmt}: replace {_model_ref(p)} with a checkpoint of it quantized to {fmt}"


def _per_process(
    p: Planned,
    engine: str,
    program: tuple[str, ...],
    args: tuple[str, ...],
    env: tuple[tuple[str, str], ...] = (),
) -> tuple[Command, ...]:
    """Replicas: one process per GPU, each on its own port; other layouts: one process over all GPUs."""
    if p.layout != "replicas":
        devices = ",".join(str(i) for i in range(p.count))
        visible = (("CUDA_VISIBLE_DEVICES", devices),) if p.count > 1 else ()
        return (Command(program, args, visible + env),)
    port = _PORTS[engine]
    out = []
    for i in range(p.count):
        gpu = ("CUDA_VISIBLE_DEVICES", str(i))
        if engine == "ollama":
            out.append(Command(program, args, (gpu, ("OLLAMA_HOST", f"127.0.0.1:{port + i}"), *env)))
        else:
            out.append(Command(program, (*args, "--port", str(port + i)), (gpu, *env)))
    return tuple(out)


def _vllm(p: Planned, sc: Scenario) -> Launch:
    e = sc.estimate
    s = e.plan.settings
    quant, note = _checkpoint_note(p, sc)
    program = ("vllm", "serve", _model_ref(p))
    argv: tuple[str, ...] = ()
    argv += _flag("--max-model-len", s["max_model_len"])
    argv += _flag("--max-num-seqs", s["max_num_seqs"])
    argv += _flag("--max-num-batched-tokens", s["max_num_batched_tokens"])
    argv += _flag("--gpu-memory-utilization", f"{s['gpu_memory_utilization']:g}")
    argv += _flag("--tensor-parallel-size", p.tp)
    if p.pp > 1:
        argv += _flag("--pipeline-parallel-size", p.pp)
    argv += _flag("--kv-cache-dtype", _VLLM_KV.get(e.kv_dtype, "auto"))
    if p.request.settings.cpu_offload_gb:
        argv += _flag("--cpu-offload-gb", f"{p.request.settings.cpu_offload_gb:g}")
    if quant:
        argv += _flag("--quantization", quant)
    notes = [n for n in (note,) if n]
    # A pinned regime is launched as assessed. Source: vllm/envs.py VLLM_USE_FLASHINFER_SAMPLER and
    # VLLM_MXFP4_USE_MARLIN; Triton's and FlashInfer's MoE kernels are taken when installed.
    env: tuple[tuple[str, str], ...] = ()
    pinned = p.request.settings
    if pinned.sampler == "v2":
        # Source: vllm/envs.py VLLM_USE_V2_MODEL_RUNNER (forces the runner either way).
        env += (("VLLM_USE_V2_MODEL_RUNNER", "1"),)
    elif pinned.sampler is not None:
        if default_sampler(e.plan.version, e.model) == "v2":
            env += (("VLLM_USE_V2_MODEL_RUNNER", "0"),)  # the top-k/top-p paths are the V1 runner's
        env += (("VLLM_USE_FLASHINFER_SAMPLER", "1" if pinned.sampler == "flashinfer" else "0"),)
    if pinned.nccl_nvls is False:
        # Source: NVIDIA/nccl docs, environment variables: NCCL_NVLS_ENABLE=0 turns NVLink SHARP off.
        env += (("NCCL_NVLS_ENABLE", "0"),)
    if pinned.gpu_p2p is False and p.tp > 1:
        # Source: NVIDIA/nccl docs, environment variables: NCCL_P2P_DISABLE=1 turns the P2P transport
        # off (its buffers then stay in host memory, as assessed).
        env += (("NCCL_P2P_DISABLE", "1"),)
    if pinned.mxfp4_backend == "marlin":
        env += (("VLLM_MXFP4_USE_MARLIN", "1"),)
    elif pinned.mxfp4_backend is not None:
        package = "triton_kernels" if pinned.mxfp4_backend == "triton" else "flashinfer-python"
        notes.append(
            f"the plan pins the {pinned.mxfp4_backend} MXFP4 MoE kernel: vLLM takes it only with {package} "
            "installed (Marlin otherwise)"
        )
    return Launch(p, f"vllm@{e.plan.version}", _per_process(p, "vllm", program, argv, env), (), tuple(notes))


def _sglang(p: Planned, sc: Scenario) -> Launch:
    e = sc.estimate
    s = e.plan.settings
    quant, note = _checkpoint_note(p, sc)
    program = ("python", "-m", "sglang.launch_server")
    argv = _flag("--model-path", _model_ref(p))
    argv += _flag("--context-length", s["context_len"])
    argv += _flag("--mem-fraction-static", f"{s['mem_fraction_static']:g}")
    argv += _flag("--tp-size", p.tp)
    if p.pp > 1:
        argv += _flag("--pp-size", p.pp)
    argv += _flag("--chunked-prefill-size", s["chunked_prefill_size"])
    argv += _flag("--cuda-graph-max-bs", s["cuda_graph_max_bs"])
    if p.request.settings.max_num_seqs:
        argv += _flag("--max-running-requests", p.request.settings.max_num_seqs)
    argv += _flag("--kv-cache-dtype", _SGLANG_KV.get(e.kv_dtype, "auto"))
    if quant:
        argv += _flag("--quantization", quant)
    notes = [n for n in (note,) if n]
    return Launch(p, f"sglang@{e.plan.version}", _per_process(p, "sglang", program, argv), (), tuple(notes))


def _llamacpp(p: Planned, sc: Scenario) -> Launch:
    e = sc.estimate
    s = e.plan.settings
    argv = _flag("-m", _gguf_file(p, sc))
    argv += _flag("-c", s["n_ctx"]) + _flag("-np", s["n_parallel"]) + _flag("-ngl", s.get("n_gpu_layers", 99))
    # Source: llama.cpp common/arg.cpp: -fa takes on|off|auto since flash attention became
    # automatic (our 2025.12 profile); before that it was a switch.
    if version_at_least(e.plan.version, "2025.12"):
        argv += _flag("-fa", "on" if s["flash_attn"] else "off")
    elif s["flash_attn"]:
        argv += ("-fa",)
    argv += _flag("-ctk", s["cache_type_k"]) + _flag("-ctv", s["cache_type_v"])
    argv += _flag("-b", s["n_batch"]) + _flag("-ub", s["n_ubatch"])
    if p.pp > 1:
        argv += _flag("-sm", "layer")
    if s.get("n_cpu_moe"):
        argv += _flag("--n-cpu-moe", s["n_cpu_moe"])
    notes = (
        f"-c is the context of all {s['n_parallel']} slots together ({p.request.ctx_tokens:,} tokens each)",
        f"-m: the {e.weight_format.name} GGUF of {_model_ref(p)}",
    )
    return Launch(
        p, f"llama.cpp@{e.plan.version}", _per_process(p, "llama.cpp", ("llama-server",), argv), (), notes
    )


def _ollama(p: Planned, sc: Scenario) -> Launch:
    e = sc.estimate
    s = e.plan.settings
    env = (
        ("OLLAMA_NUM_PARALLEL", str(s["num_parallel"])),
        ("OLLAMA_KV_CACHE_TYPE", str(s["kv_cache_type"])),
        ("OLLAMA_FLASH_ATTENTION", "1" if s["flash_attention"] else "0"),
    )
    modelfile = [f"FROM ./{_gguf_file(p, sc)}", f"PARAMETER num_ctx {s['num_ctx']}"]
    if not s["num_batch_auto"] and p.request.settings.ubatch:
        modelfile.append(f"PARAMETER num_batch {s['num_batch']}")
    tag = "".join(c if c.isalnum() or c in "-_." else "-" for c in p.name.lower())
    notes = (
        "start the server with this environment; then create the model from the Modelfile: "
        f"ollama create {tag} -f Modelfile",
        "num_ctx is the context of one request; Ollama allocates it for each of OLLAMA_NUM_PARALLEL slots",
    )
    commands = _per_process(p, "ollama", ("ollama", "serve"), (), env)
    return Launch(
        p, f"ollama@{e.plan.version}", commands, (("Modelfile", "\n".join(modelfile) + "\n"),), notes
    )


_BUILDERS = {"vllm": _vllm, "sglang": _sglang, "llama.cpp": _llamacpp, "ollama": _ollama}


def select(planned: list[Planned], engine: str | None, name: str | None) -> list[Planned]:
    """The deployments to launch: by name, and by engine, which must be the one each was checked
    with (the estimate depends on the engine, so another engine's flags would launch an unchecked plan)."""
    chosen = [p for p in planned if name is None or p.name == name]
    if not chosen:
        names = ", ".join(p.name for p in planned)
        raise SpecError(f"no deployment named {name!r} in the plan (names: {names})")
    if engine is None:
        return chosen
    matching = [p for p in chosen if p.request.engine.split("@")[0] == engine]
    if not matching:
        p = chosen[0]
        planned_for = p.request.engine.split("@")[0]
        raise SpecError(
            f"{p.source}:{p.line or 1}: {p.name} is planned and checked for {planned_for}, not {engine}; "
            f"set engine: {engine} in the plan and run vramcalc check, or emit with --engine {planned_for}"
        )
    return matching


def launch(p: Planned) -> Launch:
    """The launch settings for one replica's share of the users, from the same assessment check made."""
    engine = p.request.engine.split("@")[0]
    build = _BUILDERS.get(engine)
    if build is None:
        raise SpecError(
            f"{p.source}:{p.line or 1}: {p.name}: no launch settings for {engine} yet "
            f"(plan emit knows {', '.join(EMIT_ENGINES)})"
        )
    sc = assess(p.deployment).scenario
    return build(p, sc)
