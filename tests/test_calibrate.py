"""`vramcalc calibrate`: reading engine startup logs, and ours vs theirs on reconstructed records.

Fixtures in tests/fixtures/logs/ rebuild published calibration records (each file's header names its
record and source); the tolerances are the ones the records support: KV bytes exact up to the
print rounding, vLLM's KV pool within 3%.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, CliResult
from vramcalc.core.calibrate import match_gpu, model_candidates, plan
from vramcalc.errors import SpecError
from vramcalc.logs import MAX_LOG_BYTES, gguf_ftype_name, parse_log, read_log_file
from vramcalc.units import GIB, MIB

LOGS = ROOT / "tests" / "fixtures" / "logs"
V0_20K = LOGS / "vllm-v0-3090-llama31-8b-mml20k.log"
V0_29K = LOGS / "vllm-v0-3090-llama31-8b-mml29k-fail.log"
V1_H100 = LOGS / "vllm-v1-h100-llama31-8b-mml16000.log"
LLAMACPP = LOGS / "llamacpp-gemma2-27b-q4km-8192.log"
OLLAMA = LOGS / "ollama-gemma3-27b-q4km-4090-ctx20k.log"

needs_ollama = pytest.mark.skipif(
    importlib.util.find_spec("vramcalc.core.engines.ollama") is None,
    reason="the Ollama engine profile (vramcalc.core.engines.ollama) has not landed yet",
)

Run = Callable[..., CliResult]


def _facts(path: Path):  # type: ignore[no-untyped-def]
    return parse_log(read_log_file(path))


def _rows(result: CliResult) -> dict[str, dict[str, object]]:
    """The figures of a calibrate run (exit 0: all agree, 1: one does not; both print the table)."""
    assert result.exit_code in (0, 1), result.stderr
    rows = json.loads(result.stdout)["figures"]
    agree = all(r["agrees"] for r in rows if r["ours"] is not None)
    assert result.exit_code == (0 if agree else 1)
    return {row["key"]: row for row in json.loads(result.stdout)["figures"]}


def _one_line_error(result: CliResult, *words: str) -> None:
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("vramcalc: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- parsing -----------------------------------------------------------------------------------


def test_every_fixture_names_what_it_reconstructs() -> None:
    for path in LOGS.glob("*.log"):
        header = path.read_text().split("\n", 1)[0]
        assert header.startswith("#") and ("Reconstructs" in header or "llama.cpp" in header), path.name


def test_vllm_v0_log() -> None:
    """vLLM V0 (issue #10517): 'GB' on the weights line is GiB; activation = torch peak - weights."""
    f = _facts(V0_20K)
    assert (f.engine, f.era, f.version) == ("vllm", "V0", None)
    assert f.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert f.settings["max_model_len"] == 20000
    assert f.settings["gpu_memory_utilization"] == 0.9
    fig = {x.key: x.value for x in f.figures}
    assert fig["weights_bytes_per_gpu"] == round(14.9888 * GIB)
    assert fig["cuda_total_bytes"] == round(23.58 * GIB)
    assert fig["activation_peak_bytes"] == round(17.06 * GIB) - round(14.9888 * GIB)
    assert fig["kv_pool_bytes"] == round(3.81 * GIB)
    assert fig["non_torch_bytes"] == round(0.35 * GIB)
    assert fig["num_gpu_blocks"] == 1952
    assert fig["max_concurrency"] == 1.56
    assert fig["starts"] is True  # concurrency >= 1 is vLLM's own start check
    assert f.missing == ()
    assert any("GiB" in n for n in f.notes)  # the GB-means-GiB reading is said


def test_vllm_v0_refusal() -> None:
    f = _facts(V0_29K)
    fig = {x.key: x.value for x in f.figures}
    assert fig["starts"] is False
    assert fig["kv_capacity_tokens"] == 23648
    assert fig["max_concurrency"] == 0.82
    assert f.settings["max_model_len"] == 29000


def test_vllm_v1_log() -> None:
    f = _facts(V1_H100)
    assert (f.engine, f.era) == ("vllm", "V1")
    assert "non-torch forward increase memory" in f.markers
    fig = {x.key: x.value for x in f.figures}
    assert fig["kv_pool_bytes"] == round(51.38 * GIB)
    assert fig["weights_bytes_per_gpu"] == round(14.99 * GIB)
    assert fig["activation_peak_bytes"] == round(4.76 * GIB)
    assert fig["cuda_graph_bytes"] == round(-0.45 * GIB)  # vLLM reports a free-memory change: may be < 0
    assert fig["requested_bytes"] == round(71.26 * GIB)
    assert f.gpu is None and "gpu" not in f.missing  # the budget and utilization imply the total


def test_llamacpp_log() -> None:
    f = _facts(LLAMACPP)
    assert f.engine == "llama.cpp"
    assert (f.model, f.gpu) == ("Gemma 2 27b It", "NVIDIA GeForce RTX 4090")
    assert f.settings["quant"] == "Q4_K_M"
    assert (f.settings["n_ctx"], f.settings["n_ubatch"], f.settings["flash_attn"]) == (8192, 512, True)
    assert f.settings["kv_cache_dtype"] == "f16"
    fig = {x.key: x.value for x in f.figures}
    assert fig["model_buffer_bytes"] == 15868 * MIB
    assert fig["host_model_buffer_bytes"] == 923 * MIB  # CPU_Mapped is host memory, kept apart
    assert fig["kv_buffer_bytes"] == (1472 + 828) * MIB  # both iSWA caches summed
    assert fig["compute_buffer_bytes"] == 520 * MIB
    assert fig["total_bytes"] == (15868 + 2300 + 520) * MIB
    assert fig["gpu_layers"] == 47


def test_ollama_log() -> None:
    f = _facts(OLLAMA)
    assert f.engine == "ollama"
    assert f.model is None and f.missing == ("model",)
    assert f.gpu == "NVIDIA GeForce RTX 4090"
    s = f.settings
    assert (s["n_ctx"], s["n_seq_max"], s["flash_attn"], s["kv_cache_dtype"]) == (20000, 1, True, "q8_0")
    assert s["log_date"] == "2025-03-12" and s["memory_available"] == "22.5 GiB"
    fig = {x.key: x.value for x in f.figures}
    assert fig["required_kv_bytes"] == round(4.7 * GIB)
    assert fig["required_full_bytes"] == round(22.5 * GIB)
    assert fig["required_partial_bytes"] == round(21.4 * GIB)
    assert fig["weights_total_bytes"] == round(19.1 * GIB)
    assert fig["layers_offload"] == 62


@pytest.mark.parametrize(
    ("line", "version", "era"),
    [
        ("INFO 11-27 02:01:37 api_server.py:585] vLLM API server version 0.6.4.post1", "0.6.4.post1", "V0"),
        (
            "INFO 11-27 [core.py:75] Initializing a V1 LLM engine (v0.10.1.1) with config: model='x'",
            "0.10.1.1",
            "V1",
        ),
        ("INFO 08-06 [gpu_worker.py:279] Available KV cache memory: 37.10 GiB", None, "V1"),
    ],
)
def test_vllm_version_and_era(line: str, version: str | None, era: str) -> None:
    f = parse_log(line)
    assert (f.version, f.era) == (version, era)


def test_other_wordings() -> None:
    """vLLM V0 0.7's sentence form, V1 token counts with thousands separators, llama.cpp's pre-2024
    'CUDA0 buffer size', Ollama's older 'offload to cuda' message (made-up numbers)."""
    v0 = parse_log(
        "INFO worker.py:267] the current vLLM instance can use total_gpu_memory (22.06GiB) x "
        "gpu_memory_utilization (0.90) = 19.85GiB\n"
        "INFO worker.py:267] model weights take 2.88GiB; non_torch_memory takes 0.05GiB; PyTorch activation "
        "peak memory takes 1.40GiB; the rest of the memory reserved for KV Cache is 15.52GiB.\n"
        "INFO executor_base.py:110] # CUDA blocks: 36332, # CPU blocks: 9362\n"
    )
    fig = {x.key: x.value for x in v0.figures}
    assert v0.era == "V0" and v0.settings["gpu_memory_utilization"] == 0.9
    assert fig["cuda_total_bytes"] == round(22.06 * GIB) and fig["requested_bytes"] == round(19.85 * GIB)
    assert fig["activation_peak_bytes"] == round(1.40 * GIB) and fig["kv_pool_bytes"] == round(15.52 * GIB)
    assert fig["num_gpu_blocks"] == 36332
    v1 = parse_log(
        "INFO [kv_cache_utils.py:831] GPU KV cache size: 1,215,552 tokens\n"
        "INFO [kv_cache_utils.py:835] Maximum concurrency for 131,072 tokens per request: 9.27x\n"
    )
    fig = {x.key: x.value for x in v1.figures}
    assert fig["kv_capacity_tokens"] == 1215552 and fig["max_concurrency"] == 9.27
    assert v1.settings["max_model_len"] == 131072 and fig["starts"] is True
    old = parse_log(
        "llm_load_tensors:        CUDA0 buffer size =  4403.49 MiB\n"
        "llm_load_tensors:        CPU buffer size =   281.81 MiB\n"
        "llama_kv_cache_init:      CUDA0 KV buffer size =  1024.00 MiB\n"
    )
    fig = {x.key: x.value for x in old.figures}
    assert fig["model_buffer_bytes"] == round(4403.49 * MIB) and fig["host_model_buffer_bytes"] == round(
        281.81 * MIB
    )
    ollama = parse_log(
        'time=2024-07-05T02:37:04.449Z level=INFO source=memory.go:309 msg="offload to cuda" layers.model=33 '
        'layers.offload=33 memory.required.full="5.1 GiB" memory.required.kv="256.0 MiB"'
    )
    fig = {x.key: x.value for x in ollama.figures}
    assert fig == {
        "required_full_bytes": round(5.1 * GIB),
        "required_kv_bytes": 256 * MIB,
        "layers_offload": 33,
    }


def test_windows_line_ends_and_colours() -> None:
    text = V0_20K.read_text().replace("INFO", "\x1b[32mINFO\x1b[0m").replace("\n", "\r\n")
    assert parse_log(text) == _facts(V0_20K)


@pytest.mark.parametrize(
    ("extra", "engine"),
    [
        ("INFO api_server.py:1] vLLM API server version 0.10.1.1\n", "vllm@0.10.1.1"),
        ("INFO api_server.py:1] vLLM API server version 0.8.5.post1\n", "vllm@0.9.0"),
        ("INFO api_server.py:1] vLLM API server version 0.99.0\n", "vllm"),
        ("", "vllm@0.19"),
    ],
)
def test_vllm_version_chosen(llama31_8b, extra: str, engine: str) -> None:  # type: ignore[no-untyped-def]
    facts = parse_log(extra + V1_H100.read_text())
    assert plan(facts, llama31_8b).engine == engine


def test_units_are_strict() -> None:
    """Ollama's HumanBytes2 is binary; llama.cpp MiB; a GB that is not vLLM's weights line is not read."""
    f = parse_log(
        'level=INFO source=server.go:1 msg=offload memory.required.kv="411.0 MiB" memory.weights.total="2 GB"'
    )
    fig = {x.key: x.value for x in f.figures}
    assert fig == {"required_kv_bytes": round(411.0 * MIB)}
    f = parse_log("INFO x Model loading took 0.5151 GiB and 5.839312 seconds\n")
    assert f.figures[0].value == round(0.5151 * GIB)


def test_partial_logs_say_what_is_missing() -> None:
    f = parse_log("(EngineCore pid=1) INFO [gpu_worker.py:279] Available KV cache memory: 8.60 GiB")
    assert set(f.missing) == {"model", "context", "gpu"}
    f = parse_log("llama_context: n_ctx = 4096\n")
    assert set(f.missing) == {"model", "gpu", "figures"}


def test_unknown_text_is_refused() -> None:
    with pytest.raises(SpecError, match=r"not a vLLM, llama\.cpp or Ollama startup log"):
        parse_log("hello\nworld\n")


@pytest.mark.parametrize(
    ("printed", "ours"),
    [("Q4_K - Medium", "Q4_K_M"), ("mostly Q8_0", "Q8_0"), ("F16", "F16"), ("Q3_K - Large", "Q3_K_L")],
)
def test_gguf_file_types(printed: str, ours: str) -> None:
    assert gguf_ftype_name(printed) == ours


def test_model_and_gpu_names(catalog) -> None:  # type: ignore[no-untyped-def]
    assert "gemma-2-27b-it" in model_candidates("Gemma 2 27b It")
    assert "llama-3.1-8b-instruct" in model_candidates("Meta Llama 3.1 8B Instruct")
    assert "gemma-3-27b" in model_candidates("gemma3:27b")
    assert "Meta-Llama-3.1-70B-Instruct" in model_candidates("/models/Meta-Llama-3.1-70B-Instruct/")
    gpus = catalog.gpus.all().values()
    gpu, _ = match_gpu(_facts(LLAMACPP), gpus)
    assert gpu is not None and gpu.id == "rtx-4090"
    gpu, note = match_gpu(_facts(V1_H100), gpus)  # 71.26 GiB / 0.90 = 79.18 GiB: the H100's CUDA total
    assert gpu is not None and gpu.id == "h100-sxm" and "79.18 GiB" in note


# --- the command -------------------------------------------------------------------------------


def test_vllm_v0_3090_20k(run_cli: Run) -> None:
    """Record vllm-llama31-8b-3090-mml20k: KV pool 3.81 GiB, 1952 blocks, starts."""
    rows = _rows(run_cli("calibrate", str(V0_20K), "--json"))
    kv = rows["kv_pool_bytes"]
    assert abs(float(kv["diff"])) < 0.03  # type: ignore[arg-type]
    assert abs(float(rows["num_gpu_blocks"]["diff"])) < 0.03  # type: ignore[arg-type]
    assert abs(float(rows["weights_bytes_per_gpu"]["diff"])) < 0.01  # type: ignore[arg-type]
    assert rows["starts"]["theirs"] is True and rows["starts"]["ours"] is True


def test_vllm_v0_3090_29k_refuses(run_cli: Run) -> None:
    """Record vllm-llama31-8b-3090-mml29k-fail: vLLM refused (23,648 KV tokens < 29,000); so do we."""
    result = run_cli("calibrate", str(V0_29K), "--json")
    rows = _rows(result)
    assert rows["starts"] == {**rows["starts"], "theirs": False, "ours": False, "agrees": True}
    assert abs(float(rows["kv_pool_bytes"]["diff"])) < 0.03  # type: ignore[arg-type]
    assert abs(float(rows["kv_capacity_tokens"]["diff"])) < 0.03  # type: ignore[arg-type]
    assert json.loads(result.stdout)["engine_profile"] == "vllm 0.6"


def test_vllm_v1_h100(run_cli: Run) -> None:
    """Record vllm-llama31-8b-h100-mml16000: available KV 51.38 GiB within 3%."""
    result = run_cli("calibrate", str(V1_H100), "--json")
    rows = _rows(result)
    assert abs(float(rows["kv_pool_bytes"]["diff"])) < 0.03  # type: ignore[arg-type]
    doc = json.loads(result.stdout)
    assert doc["gpu"] == "h100-sxm"
    assert "0.19" in doc["era"]


def test_llamacpp_gemma2(run_cli: Run) -> None:
    """engines.md 2.6: KV 1,472 + 828 = 2,300 MiB exactly (up to the two printed decimals)."""
    rows = _rows(run_cli("calibrate", str(LLAMACPP), "--json"))
    kv = rows["kv_buffer_bytes"]
    assert abs(int(kv["ours"]) - int(kv["theirs"])) <= 2 * 0.005 * MIB  # type: ignore[call-overload]
    assert abs(float(rows["model_buffer_bytes"]["diff"])) < 0.01  # type: ignore[arg-type]


def test_table_output(run_cli: Run) -> None:
    result = run_cli("calibrate", str(V0_29K))
    assert result.exit_code == 1, result.stderr  # the activation peak is 1.7% off (beyond its rounding)
    for text in ("kv_cache_size", "2.89 GiB", "Theirs", "Ours", "Diff", "V0", "refused to start", "NO"):
        assert text in result.stdout


def test_ollama_needs_a_model(run_cli: Run) -> None:
    _one_line_error(run_cli("calibrate", str(OLLAMA)), "Ollama", "--model", "RTX 4090")


@needs_ollama
def test_ollama_gemma3(run_cli: Run) -> None:
    """Record ollama-gemma3-27b-q4km-4090-ctx20k-fa-q8kv: the log is dated 2025-03-12, so Ollama 0.6,
    whose estimate counts every gemma3 layer at full length: 62 x 20000 x 4 KiB = 4.73 GiB ('4.7 GiB')."""
    result = run_cli("calibrate", str(OLLAMA), "--model", "gemma-3-27b", "--json")
    rows = _rows(result)
    assert json.loads(result.stdout)["engine_profile"] == "ollama 0.6"
    assert rows["required_kv_bytes"]["agrees"] is True  # within the one printed decimal
    assert abs(float(rows["weights_total_bytes"]["diff"])) < 0.01  # type: ignore[arg-type]
    assert abs(float(rows["required_full_bytes"]["diff"])) < 0.03  # type: ignore[arg-type]


def test_gpu_option_overrides(run_cli: Run) -> None:
    result = run_cli("calibrate", str(LLAMACPP), "--gpu", "rtx-3090", "--json")
    assert result.exit_code in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    assert doc["gpu"] == "rtx-3090"
    assert any("RTX 4090" in n for n in doc["notes"])


def test_unknown_model_in_log(run_cli: Run, tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(V0_20K.read_text().replace("meta-llama/Llama-3.1-8B-Instruct", "acme/Nonesuch-9B"))
    _one_line_error(run_cli("calibrate", str(log)), "acme/Nonesuch-9B", "--model")
    assert run_cli("calibrate", str(log), "--model", "llama-3.1-8b").exit_code == 1  # figures as V0_20K


# --- bad input: one line on stderr, exit 2, nothing on stdout ------------------------------------


def test_missing_file(run_cli: Run, tmp_path: Path) -> None:
    _one_line_error(run_cli("calibrate", str(tmp_path / "nope.log")), "no such file")


def test_directory(run_cli: Run, tmp_path: Path) -> None:
    _one_line_error(run_cli("calibrate", str(tmp_path)), "directory")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", ("empty",)),
        (b"  \n\n", ("empty",)),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", ("binary",)),
        (b"Available KV cache memory: 1.00 GiB \xff\xfe\xfa\n", ("not UTF-8",)),
        ("Available KV cache memory".encode("utf-16"), ("UTF-16",)),
        (b"just some text\nnothing an engine prints\n", ("not a vLLM, llama.cpp or Ollama startup log",)),
    ],
    ids=["empty", "blank", "binary", "latin1", "utf16", "unknown"],
)
def test_bad_content(run_cli: Run, tmp_path: Path, content: bytes, words: tuple[str, ...]) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(content)
    _one_line_error(run_cli("calibrate", str(log)), *words)


def test_huge_file_is_refused_unread(run_cli: Run, tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    with log.open("wb") as fh:
        fh.truncate(MAX_LOG_BYTES + 1)  # sparse: the size check must come before any read
    _one_line_error(run_cli("calibrate", str(log)), "5.0 MB", "up to 5 MB")


def test_partial_log_names_what_is_missing(run_cli: Run, tmp_path: Path) -> None:
    log = tmp_path / "partial.log"
    log.write_text("(EngineCore pid=2) INFO 11-25 [gpu_worker.py:279] Available KV cache memory: 51.38 GiB\n")
    _one_line_error(
        run_cli("calibrate", str(log)),
        "found vLLM V1 log",
        "Available KV cache memory",
        "max_model_len",
        "--gpu",
    )


def test_format_we_do_not_model(run_cli: Run, tmp_path: Path) -> None:
    log = tmp_path / "iq.log"
    log.write_text(LLAMACPP.read_text().replace("Q4_K - Medium", "IQ2_XXS - 2.0625 bpw"))
    _one_line_error(run_cli("calibrate", str(log)), "IQ2_XXS - 2.0625 bpw", "not one vramcalc models")


def test_log_without_figures(run_cli: Run, tmp_path: Path) -> None:
    log = tmp_path / "nofig.log"
    log.write_text(LLAMACPP.read_text().replace("buffer size", "buffer"))
    _one_line_error(run_cli("calibrate", str(log)), "buffer sizes")


# --- calibration profiles: calibrate --save, --calibration FILE ---------------------------------


@pytest.mark.parametrize("log", [V0_20K, V0_29K, V1_H100], ids=lambda p: p.stem)
def test_a_saved_profile_reproduces_its_log(run_cli: Run, tmp_path: Path, log: Path) -> None:
    """`calibrate LOG` exits 1 while one figure disagrees beyond its printed digits (the V0 3090
    activation peak is 2.1060 vs 2.0712 GiB: +1.7%; the V1 H100 log printed CUDA graphs at
    -0.45 GiB); `--save` writes what the log measured, and the same log checked with that profile
    agrees figure by figure (exit 0): the profile's terms replace our defaults on its GPU."""
    profile = tmp_path / "profile.yaml"
    before = run_cli("calibrate", str(log), "--save", str(profile), "--json")
    assert before.exit_code == 1
    assert "wrote" in before.stderr and profile.is_file()
    text = profile.read_text()
    assert "kind: vramcalc-calibration-profile" in text and "model: llama-3.1-8b" in text
    after = run_cli("calibrate", str(log), "--calibration", str(profile), "--json")
    assert after.exit_code == 0, after.stdout
    rows = _rows(after)
    assert rows["kv_pool_bytes"]["agrees"]


def test_a_profile_changes_estimate_only_on_its_gpu(run_cli: Run, tmp_path: Path) -> None:
    """A profile from the V0 RTX 3090 log (activation x 2.0712 / 2.1060 of our formula, the CUDA
    total 23.58 GiB, weights and non-torch as printed) moves the KV pool of the same deployment on
    the 3090 to the log's, and leaves the other cards of estimate's columns as they were."""
    profile = tmp_path / "p.yaml"
    run_cli("calibrate", str(V0_20K), "--save", str(profile))
    args = ("estimate", "llama-3.1-8b", "--engine", "vllm@0.6", "--ctx", "20000", "--json")
    plain = json.loads(run_cli(*args, "--gpu", "rtx-3090").stdout)
    tuned = json.loads(run_cli(*args, "--gpu", "rtx-3090", "--calibration", str(profile)).stdout)

    def pool(doc: dict[str, object]) -> int:
        return int(doc["engine"]["kv_pool_bytes"])  # type: ignore[index]

    # The log: kv_cache_size 3.81 GiB (printed); ours was 3.78 GiB, now within the print rounding.
    assert abs(pool(plain) - 3.81 * 2**30) > 0.005 * 2**30
    assert abs(pool(tuned) - 3.81 * 2**30) <= 0.005 * 2**30
    assert any("calibrated from vllm-v0-3090" in a for a in tuned["assumptions"])
    other = run_cli("estimate", "llama-3.1-8b", "--engine", "vllm@0.6", "--ctx", "20000", "--gpu", "rtx-4090",
                    "--json")  # fmt: skip
    assert other.exit_code == 0
    wrong_gpu = run_cli(*args, "--gpu", "rtx-4090", "--calibration", str(profile))
    _one_line_error(wrong_gpu, "rtx-3090", "rtx-4090", "field gpu")


def test_profile_bad_input(run_cli: Run, tmp_path: Path) -> None:
    """A profile for another engine or model names the field; a file that is not a profile, and
    --save from a llama.cpp log, are one line, exit 2."""
    profile = tmp_path / "p.yaml"
    run_cli("calibrate", str(V1_H100), "--save", str(profile))
    _one_line_error(
        run_cli("estimate", "llama-3.1-8b", "--engine", "llama.cpp", "--calibration", str(profile)),
        "field engine",
    )
    _one_line_error(run_cli("estimate", "qwen2.5-7b", "--calibration", str(profile)), "field model")
    junk = tmp_path / "junk.yaml"
    junk.write_text("deployments: []\n")
    _one_line_error(
        run_cli("estimate", "llama-3.1-8b", "--calibration", str(junk)), "not a calibration profile"
    )
    _one_line_error(run_cli("calibrate", str(LLAMACPP), "--save", str(tmp_path / "x.yaml")), "vLLM logs")
    assert not (tmp_path / "x.yaml").exists()


# --- what a pasted log lost: --tp, --quantization, --version, --max-num-seqs ---------------------

PUBLISHED = LOGS / "published"


def test_a_printed_v0_version_is_kept_below_0_9(run_cli: Run, tmp_path: Path) -> None:
    """vllm-a-01 prints "Initializing a V0 LLM engine (v0.7.3)": modelled as vllm 0.7.3 (0.7.x's MLA
    copies apply where the model has MLA). The same log saying v0.9.2 (V0 kept with VLLM_USE_V1=0)
    is modelled as 0.8, our newest V0 label: 0.9.2 itself would be V1."""
    log = PUBLISHED / "vllm-a-01-a100-40gb-phi4-mini.log"
    args = ("--gpu", "a100-40gb-sxm", "--model", "phi-4-mini", "--json")
    assert "modelled as vllm 0.7.3" in json.loads(run_cli("calibrate", str(log), *args).stdout)["era"]
    later = tmp_path / "v0-0.9.2.log"
    later.write_text(log.read_text().replace("(v0.7.3)", "(v0.9.2)"))
    era = json.loads(run_cli("calibrate", str(later), *args).stdout)["era"]
    assert "V0 engine" in era and "modelled as vllm 0.8," in era


def test_a_cut_config_line_is_given_back(run_cli: Run) -> None:
    """vllm-a-04 (8 x H200, DeepSeek-R1 FP8; the source pasted the memory lines without the
    engine-config line): without --tp the weights are modelled on one GPU (671B FP8 does not fit
    an H200); with --tp 8 --quantization fp8 --version 0.7.3 they are 83.78 GiB per GPU against the
    logged 83.88 GiB: 79.31 GiB of checkpoint shards + 0.7.x's MLA absorbed copies, per layer
    W_QR 1536 x 16 x 64 x 2 B + the dequantized kv_b_proj 512 x 16 x 256 x 2 B + fp8 W_Q_UK
    1536 x 16 x 512 B + fp8 W_UV_O 16 x 512 x 7168 B = 78,643,200 B, x 61 layers = 4.47 GiB."""
    args = (
        "calibrate",
        str(PUBLISHED / "vllm-a-04-h200-deepseek-r1.log"),
        "--gpu",
        "h200",
        "--model",
        "deepseek-r1",
    )
    bare = json.loads(run_cli(*args, "--json").stdout)
    given = json.loads(
        run_cli(*args, "--tp", "8", "--quantization", "fp8", "--version", "0.7.3", "--json").stdout
    )

    def weights(report: dict) -> tuple[float, float]:  # type: ignore[type-arg]
        fig = next(f for f in report["figures"] if f["key"] == "weights_bytes_per_gpu")
        return fig["theirs"] / GIB, fig["ours"] / GIB

    assert weights(bare)[1] > 500
    theirs, ours = weights(given)
    assert theirs == pytest.approx(83.88, abs=0.005)
    assert ours == pytest.approx(83.78, abs=0.01)
    assert "vLLM 0.7.3" in given["era"]


def test_given_values_cannot_contradict_the_log(run_cli: Run) -> None:
    """A value the log prints is the log's: --tp 2 on a TP-1 log is an error naming the field; a
    setting for another engine's log too."""
    r = run_cli("calibrate", str(V0_20K), "--tp", "2")
    assert r.exit_code == 2 and "--tp 2: the log prints tensor_parallel_size 1; drop --tp" in r.stderr
    r = run_cli("calibrate", str(LLAMACPP), "--max-num-seqs", "4")
    assert r.exit_code == 2 and "--max-num-seqs applies to vLLM logs; this is a llama.cpp log" in r.stderr
    r = run_cli("calibrate", str(V1_H100), "--version", "latest")
    assert r.exit_code == 2 and "--version 'latest' is not a version" in r.stderr


def test_the_log_names_its_sampler_path_and_utilization() -> None:
    """vLLM V1 logs which top-k/top-p path it takes (vllm/v1/sample/ops/topk_topp_sampler.py):
    vllm-b-01 "Using FlashInfer for top-p & top-k sampling", vllm-c-01 (a pip install without
    FlashInfer) "Falling back to the PyTorch-native implementation"; newer ones print the
    utilization as "Desired GPU memory utilization is (0.92, 72.91 GiB)" (vllm-c-11)."""
    assert _facts(PUBLISHED / "vllm-b-01-a100-80gb-qwen2-7b.log").settings["sampler"] == "flashinfer"
    assert _facts(PUBLISHED / "vllm-c-01-rtx3090-qwen25-7b.log").settings["sampler"] == "pytorch"
    assert _facts(PUBLISHED / "vllm-c-11-a100-80gb-llama31-8b.log").settings["gpu_memory_utilization"] == 0.92


def test_a_pinned_sampler_has_no_range(run_cli: Run) -> None:
    """With the path read from the log, calibrate models that path alone (no sampler range); vLLM
    0.8.4 on an RTX 3090 without FlashInfer: KV tokens 102,768 ours vs 97,680 logged (+5.2%),
    +13.2% on FlashInfer's path, which 0.8's images would have taken."""
    args = ["--gpu", "rtx-3090", "--model", "qwen2.5-7b", "--max-num-batched-tokens", "8192"]
    r = run_cli("calibrate", str(PUBLISHED / "vllm-c-01-rtx3090-qwen25-7b.log"), *args, "--json")
    rows = {f["key"]: f for f in json.loads(r.stdout)["figures"]}
    assert rows["kv_capacity_tokens"]["theirs"] == 97_680 and rows["kv_capacity_tokens"]["ours"] == 102_768
    bad = run_cli("calibrate", str(PUBLISHED / "vllm-c-01-rtx3090-qwen25-7b.log"), *args, "--gpu-util", "1.5")
    assert bad.exit_code == 2 and "--gpu-util must be in (0, 1], got 1.5" in bad.stderr


def test_vllm_034_reads_the_cache_sized_after_warmup(run_cli: Run, tmp_path: Path) -> None:
    """vLLM 0.34 prints the plan before warmup as "Available KV cache memory" and the cache it
    commits in "Memory after warmup: ... N KV cache blocks (K GiB) ..." (format strings of
    vllm/v1/worker/gpu_worker.py determine_available_memory and
    vllm/v1/worker/extensible_kv_cache.py measure_kv_cache_blocks, 0.34.0). The log below is made
    of those lines with our own figures for Llama-3.1-8B bf16 on one H100 at 8,192 tokens and the
    FlashInfer sampler, 0.34's default (test_engines.test_vllm_034_sizes_the_kv_cache_after_warmup_by_hand: plan
    66,409,329,787 B = 61.85 GiB, cache 63,553,926,267 B = 59.19 GiB, 7,576 blocks of 64 tokens):
    it is not a published log, it checks the reading. The cache is read from the after-warmup line
    (the pool and its blocks), the plan as its own figure, and every figure agrees."""
    log = tmp_path / "vllm-034.log"
    log.write_text(
        "(APIServer pid=1) INFO 12-01 10:00:00 [api_server.py:1] vLLM API server version 0.34.0\n"
        "(APIServer pid=1) INFO 12-01 10:00:00 [utils.py:1] non-default args: {'model_tag': "
        "'meta-llama/Llama-3.1-8B-Instruct', 'max_model_len': 8192, 'model': 'meta-llama/Llama-3.1-8B-Instruct'}\n"
        "(EngineCore pid=2) INFO 12-01 10:00:10 [model_runner.py:1] Model loading took 14.99 GiB memory and 5.0 seconds\n"
        "(EngineCore pid=2) INFO 12-01 10:00:20 [gpu_worker.py:1] Available KV cache memory: 61.85 GiB\n"
        "(EngineCore pid=2) INFO 12-01 10:00:40 [extensible_kv_cache.py:1] Memory after warmup: 61.8 GiB free, "
        "0.02 GiB committed to the KV cache, 2.21 GiB kept for transient activations (2.21 GiB allocated at "
        "peak, 0.0 GiB of torch reservation growth); 7576 KV cache blocks (59.19 GiB) fit within the "
        "requested 79.18 GiB. Torch may reserve up to 20.0 GiB.\n"
    )
    result = run_cli("calibrate", str(log), "--gpu", "h100-sxm", "--json")
    rows = _rows(result)
    assert rows["kv_pool_bytes"]["theirs"] == round(59.19 * 2**30)
    assert rows["num_gpu_blocks"]["theirs"] == rows["num_gpu_blocks"]["ours"] == 7576
    assert rows["kv_budget_bytes"]["theirs"] == round(61.85 * 2**30)
    assert result.exit_code == 0 and json.loads(result.stdout)["engine_profile"] == "vllm 0.34.0"


def test_vllm_028_peak_activation_holds_the_graph_estimate(run_cli: Run, tmp_path: Path) -> None:
    """From 0.28.0 the "Actual usage is ..." line's "X GiB for peak activation" is the transient
    peak plus the CUDA-graph estimate (vllm/v1/worker/gpu_worker.py: transient_peak_headroom +
    cudagraph_memory_estimate_applied, release sdists). The published 0.31.0 log vllm-c-11 prints
    1.44 GiB of peak and 0.23 GiB of CUDA graphs: calibrate compares our transient peak with
    1.44 - 0.23 = 1.21 GiB (a cold start's: ours, the V2 runner's warm-start profile, is 0.20 GiB,
    the sort path's 1.19 the range's other end), and a profile saved from it takes 1.21 + 0.23 = 1.44 GiB off the
    budget, as the log's "Available KV cache memory: 56.21 GiB" did (72.91 - 15.26 consumed - 1.44):
    its pool comes back within the printed digits (0.03 GiB here, from the CUDA total that
    requested / utilization gives back)."""
    log = PUBLISHED / "vllm-c-11-a100-80gb-llama31-8b.log"
    profile = tmp_path / "c11.yaml"
    args = ("--gpu", "a100-80gb-sxm", "--model", "llama-3.1-8b", "--version", "0.31.0")
    rows = _rows(run_cli("calibrate", str(log), *args, "--json"))
    peak = rows["activation_peak_bytes"]
    assert peak["theirs"] == round(1.44 * 2**30) - round(0.23 * 2**30)
    assert "for CUDAGraph memory" in str(peak["label"])
    assert run_cli("calibrate", str(log), *args, "--save", str(profile)).exit_code in (0, 1)
    d = json.loads(
        run_cli(
            "estimate", "llama-3.1-8b", "--gpu", "a100-80gb-sxm", "--ctx", "131072", "--engine", "vllm@0.31.0",
            "--calibration", str(profile), "--json",
        ).stdout
    )  # fmt: skip
    assert d["engine"]["kv_pool_bytes"] / 2**30 == pytest.approx(56.21, abs=0.035)


# --- which version a log is modelled as ------------------------------------------------------

PUBLISHED = LOGS / "published"


@pytest.mark.parametrize(
    ("build", "kv_unified", "iswa", "swa", "label"),
    [
        (5781, False, False, False, "2025.06"),  # ik_llama.cpp discussion #562's mainline log
        (5912, False, True, True, "2025.06"),  # the last build before per-slot streams
        (5913, False, False, False, "2025.12"),  # llama.cpp issue #14847: the streams' first build
        (None, True, False, False, "2025.12"),  # "kv_unified" printed: the build has streams
        (5192, False, False, True, "2025.04"),  # a sliding-window model with no iSWA cache
        (None, False, True, True, "2025.06"),  # the iSWA cache, no streams
    ],
)
def test_llamacpp_build_numbers(
    build: int | None, kv_unified: bool, iswa: bool, swa: bool, label: str
) -> None:
    from vramcalc.core.engines.llamacpp import version_for_log

    assert version_for_log(build, kv_unified, iswa, swa)[0] == label


def test_llamacpp_printed_build_is_used(run_cli: Run) -> None:
    """A log printing "build: 5781 (ba3ef86c5)" was modelled as our newest label (2025.12, per-slot
    streams and --fit) and refused --version; b5781 is before PR #14363 (b5913): 2025.06. The
    weights (4,155.99 MiB) and KV (16,384 cells x 32 layers x 2 x 1,024 x 2 B = 2,048 MiB) agree."""
    log = PUBLISHED / "llamacpp-01-rtx4080-llama31-8b-vulkan.log"
    result = run_cli("calibrate", str(log), "--gpu", "rtx-4080", "--model", "llama-3.1-8b", "--json")
    doc = json.loads(result.stdout)
    assert doc["engine_profile"] == "llama.cpp 2025.06" and "b5781" in doc["era"]
    rows = _rows(result)
    assert rows["kv_buffer_bytes"]["agrees"] is True and rows["model_buffer_bytes"]["agrees"] is True
    pinned = run_cli(
        "calibrate",
        str(log),
        "--gpu",
        "rtx-4080",
        "--model",
        "llama-3.1-8b",
        "--version",
        "2025.12",
        "--json",
    )
    assert json.loads(pinned.stdout)["engine_profile"] == "llama.cpp 2025.12"


@needs_ollama
def test_ollama_older_than_our_oldest(run_cli: Run) -> None:
    """Ollama 0.5.4 (printed) was modelled as 0.30, the newest, whose llama-server prints no
    memory.* estimate; the oldest profile, 0.6, reproduces it: memory.graph.full 560.0 MiB,
    memory.required.kv 4 x 2,048 x 32 layers x 2 x 1,024 x 2 B = 1.0 GiB, layers.offload 33."""
    log = PUBLISHED / "ollama-02-rtx4090-llama31-8b-lora.log"
    result = run_cli("calibrate", str(log), "--gpu", "rtx-4090", "--model", "llama-3.1-8b", "--json")
    doc = json.loads(result.stdout)
    assert doc["engine_profile"] == "ollama 0.6" and "older than the versions we model" in doc["era"]
    rows = _rows(result)
    for key in ("required_kv_bytes", "graph_full_bytes", "layers_offload", "weights_total_bytes"):
        assert rows[key]["agrees"] is True, key


def test_ollama_device_lines() -> None:
    """Ollama 0.11-0.29 print each device's share ('msg="model weights" device=CUDA0 size="18.5
    GiB"', kv cache, compute graph; ml/device.go BackendMemory.Log): they are the GPU buffers
    (18.5 GiB = 18.5 x 2^30 B), the CPU weights the host buffer, and the GPU total their sum."""
    from vramcalc.logs import parse_log

    facts = parse_log((PUBLISHED / "ollama-03-a10-qwen3-30b-a3b-q8.log").read_text())
    fig = {f.key: f.value for f in facts.figures}
    assert facts.engine == "ollama"
    assert fig["model_buffer_bytes"] == round(18.5 * GIB) and fig["host_model_buffer_bytes"] == round(
        11.7 * GIB
    )
    assert fig["kv_buffer_bytes"] == round(1.9 * GIB) and fig["compute_buffer_bytes"] == round(190.5 * MIB)
    assert fig["total_bytes"] == round(18.5 * GIB) + round(1.9 * GIB) + round(190.5 * MIB)
    assert facts.missing == ("model", "context", "gpu")


def test_ollama_device_lines_era_and_given_settings(run_cli: Run) -> None:
    """The same log names neither its context nor its file type: --ctx and --quantization give them,
    and its device lines (no version printed) pick our 0.12 profile."""
    log = str(PUBLISHED / "ollama-03-a10-qwen3-30b-a3b-q8.log")
    base = (log, "--gpu", "a10", "--model", "qwen3-30b-a3b")
    doc = json.loads(run_cli("calibrate", *base, "--ctx", "32768", "--quantization", "q8_0", "--json").stdout)
    assert doc["engine_profile"] == "ollama 0.12" and "per-device memory lines" in doc["era"]
    assert doc["settings"]["n_ctx"] == 32768 and doc["settings"]["quant"] == "Q8_0"
    _one_line_error(run_cli("calibrate", *base, "--ctx", "0"), "--ctx")
    _one_line_error(run_cli("calibrate", *base, "--ctx", "4096", "--quantization", "Q9_9"), "Q9_9")
    _one_line_error(run_cli("calibrate", str(V1_H100), "--ctx", "4096"), "--ctx", "max_model_len")
    _one_line_error(run_cli("calibrate", log, "--tp", "2"), "--tp", "vLLM")


def test_ollama_estimate_over_four_gpus(run_cli: Run) -> None:
    """ollama/ollama#9181: a Q8_0 70B at num_ctx 64,000 on 4 L4s (22.0 GiB free each), layers.split
    11,11,11,11: llm/memory.go spreads layers over the cards (layer i on GPU i mod 4), each card
    reserving MinimumMemory + one layer and adding the partial graph (8.2 GiB; several GPUs never
    take the full one): 44 of 81 layers, required.partial 87.1 GiB, required.full 127.4 GiB - all
    as printed. On one card the same estimate gives 11 layers."""
    log = PUBLISHED / "ollama-06-4xl4-llama-70b-q8-ctx64k.log"
    args = ("--gpu", "l4", "--model", "llama-3.3-70b", "--quantization", "Q8_0", "--json")
    result = run_cli("calibrate", str(log), *args)
    rows = _rows(result)
    assert rows["layers_offload"]["ours"] == 44 == rows["layers_offload"]["theirs"]
    for key in ("required_partial_bytes", "required_full_bytes", "graph_full_bytes", "weights_total_bytes"):
        assert rows[key]["agrees"] is True, key
    assert json.loads(result.stdout)["settings"]["n_devices"] == 4


def test_llamacpp_experts_kept_in_ram(run_cli: Run) -> None:
    """ik_llama.cpp issue #514's mainline log (b5622): Qwen3-30B-A3B Q4_K_M over an RTX 4090 and an
    RTX 5090 with -ot ".ffn_.*_exps.=CPU", every routed expert in RAM: as --n-cpu-moe 48 the two
    cards' model buffers are 784.42 MiB as printed, their KV 1,536 MiB (48 layers x 16,384 cells x
    2 x 512 x 2 B)."""
    log = PUBLISHED / "llamacpp-02-rtx4090-rtx5090-qwen3-30b-a3b-ot.log"
    args = ("--gpu", "rtx-4090", "--model", "qwen3-30b-a3b", "--n-cpu-moe", "48", "--json")
    rows = _rows(run_cli("calibrate", str(log), *args))
    assert rows["gpus_model_bytes"]["agrees"] is True and rows["gpus_kv_bytes"]["agrees"] is True
    _one_line_error(run_cli("calibrate", str(V1_H100), "--n-cpu-moe", "4"), "--n-cpu-moe", "llama.cpp")


def test_llamacpp_overridden_expert_lines_are_read() -> None:
    """The tensor overrides llama.cpp prints say which layers' experts stay in RAM."""
    from vramcalc.logs import parse_log

    text = (LLAMACPP.read_text() + "\ntensor blk.0.ffn_up_exps.weight (108 MiB q4_K) buffer type overriden to CPU"
            "\ntensor blk.11.ffn_down_exps.weight (157 MiB q6_K) buffer type overriden to CPU\n")  # fmt: skip
    assert parse_log(text).settings["n_cpu_moe"] == 12


def test_llamacpp_partial_offload_takes_the_logs_ngl(run_cli: Run, tmp_path: Path) -> None:
    """A log that offloads 40 of 47 layers ran with -ngl 40: the model and KV buffers are compared
    at that count (Gemma-2-27B: the last 40 repeating layers' KV, 40 of 46 layers' worth)."""
    text = LLAMACPP.read_text().replace("offloaded 47/47 layers", "offloaded 40/47 layers")
    rows_all = _rows(run_cli("calibrate", str(LLAMACPP), "--json"))
    path = tmp_path / "partial.log"
    path.write_text(text)
    result = run_cli("calibrate", str(path), "--json")
    doc = json.loads(result.stdout)
    assert doc["settings"]["n_gpu_layers"] == 40
    rows = _rows(result)
    assert rows["gpu_layers"]["ours"] == 40
    assert int(rows["kv_buffer_bytes"]["ours"]) < int(rows_all["kv_buffer_bytes"]["ours"])  # type: ignore[call-overload]
