"""Bring your own model: config.json, safetensors headers, GGUF headers and the HF cache, each
checked against the catalog entry of the same model, plus bad input and header-only reading."""

from __future__ import annotations

import json
import os
import struct
import sys
import tracemalloc
import types
from pathlib import Path
from typing import Any

import gguf
import pytest

from tests.conftest import CliResult
from tests.importer_fixtures import (
    CONFIGS,
    gguf_prefix,
    gguf_string,
    hf_tensors,
    make_hf_cache,
    write_config,
    write_gguf,
    write_safetensors,
)
from vramcalc.catalog import Catalog
from vramcalc.core.estimate import weight_bytes
from vramcalc.core.formats import resolve_format
from vramcalc.core.kv import kv_bytes_per_token, kv_layers
from vramcalc.core.tensors import param_counts
from vramcalc.importers import gguf_file, load_path, resolve_model, safetensors

ARCH_FIELDS = (
    "family",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "qkv_bias",
    "o_bias",
    "qk_norm",
    "attention_sinks",
    "norms_per_layer",
    "layer_pattern",
    "moe",
    "mla",
)


def _one_line_error(r: CliResult) -> None:
    assert r.exit_code == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vramcalc: error: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


# --- config.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", sorted(CONFIGS))
def test_config_json_matches_the_catalog(catalog: Catalog, tmp_path: Path, model_id: str) -> None:
    """Every architecture field, the parameter count and KV bytes per token equal the entry's."""
    ref = catalog.models.get(model_id)
    spec = load_path(write_config(tmp_path / model_id, CONFIGS[model_id])).spec
    for name in ARCH_FIELDS:
        assert getattr(spec, name) == getattr(ref, name), name
    assert kv_bytes_per_token(spec, "bf16") == kv_bytes_per_token(ref, "bf16")
    assert kv_layers(spec) == kv_layers(ref)
    assert param_counts(spec) == param_counts(ref)
    assert spec.native_weight_format == ref.native_weight_format


def test_gemma3_minimal_text_config_takes_the_transformers_defaults(tmp_path: Path) -> None:
    """vocab 262208, 131072 positions and tied embeddings come from Gemma3TextConfig; the SigLIP
    tower 416,866,032 + projector 6,194,304 from the vision_config (both as the reference)."""
    r = load_path(write_config(tmp_path / "g3", CONFIGS["gemma-3-27b"]))
    assert (r.spec.vocab_size, r.spec.max_position_embeddings, r.spec.tie_word_embeddings) == (
        262208,
        131072,
        True,
    )
    assert r.spec.vision is not None
    assert (r.spec.vision.params, r.spec.vision.projector_params) == (416_866_032, 6_194_304)
    assert any("Gemma3TextConfig" in n for n in r.spec.notes)


def test_unknown_model_type_with_standard_fields_warns(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = dict(CONFIGS["mixtral-8x7b"], model_type="frobnicator")
    for key in ("num_local_experts", "num_experts_per_tok"):
        cfg.pop(key)
    write_config(tmp_path / "frob", cfg)
    r = run_cli("estimate", str(tmp_path / "frob"), "--json")
    assert r.exit_code == 0, r.stderr
    assert "warning: unknown model_type 'frobnicator'" in r.stderr
    assert "head_dim = hidden_size / num_attention_heads" in r.stderr
    assert json.loads(r.stdout)["kv_cache"]["bytes_per_token"] == 32 * 2 * 8 * 128 * 2


def test_unknown_model_type_without_the_fields_is_refused(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path / "x", {"model_type": "frobnicator", "hidden_size": 64})
    r = run_cli("estimate", str(tmp_path / "x"))
    _one_line_error(r)
    assert "misses intermediate_size, num_hidden_layers, num_attention_heads, vocab_size" in r.stderr


# --- safetensors --------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["gemma-2-27b", "qwen3-30b-a3b"])
def test_safetensors_headers_give_the_stored_bytes(catalog: Catalog, tmp_path: Path, model_id: str) -> None:
    """A bf16 checkpoint (two shards + index) sizes to the bytes its headers list, which equal the
    catalog's bf16 weights (within 1%, here exactly)."""
    ref = catalog.models.get(model_id)
    folder = tmp_path / model_id
    write_config(folder, CONFIGS[model_id])
    tensors = hf_tensors(ref)
    half = len(tensors) // 2
    write_safetensors(folder / "model-00001-of-00002.safetensors", tensors[:half])
    write_safetensors(folder / "model-00002-of-00002.safetensors", tensors[half:])
    weight_map = {
        n: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, (n, _, _) in enumerate(tensors)
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    r = load_path(folder)
    assert r.stored is not None and r.stored.stored is not None
    assert r.stored.name == "bf16"
    measured = weight_bytes(r.spec, r.stored).checkpoint_bytes
    computed = weight_bytes(ref, resolve_format("bf16")).checkpoint_bytes
    assert measured == r.stored.stored.total_bytes
    assert abs(measured / computed - 1) < 0.01
    assert kv_bytes_per_token(r.spec, "bf16") == kv_bytes_per_token(ref, "bf16")


def test_quantization_config_names_the_format(tmp_path: Path) -> None:
    cfg = dict(CONFIGS["mixtral-8x7b"])
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128}
    folder = tmp_path / "awq"
    write_config(folder, cfg)
    write_safetensors(folder / "model.safetensors", [("model.layers.0.q.qweight", "I32", [4096, 512])])
    r = load_path(folder)
    assert r.stored is not None and r.stored.name == "awq-int4"
    assert r.spec.native_weight_format == "awq-int4"


def test_header_only_safetensors_warns_and_sizes_from_the_header(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "partial"
    write_config(folder, CONFIGS["phi-3-mini-4k"])
    write_safetensors(folder / "model.safetensors", [("lm_head.weight", "BF16", [32064, 3072])], sparse=False)
    r = run_cli("estimate", str(folder), "--json")
    assert r.exit_code == 0
    assert "shorter than its tensors claim" in r.stderr
    assert json.loads(r.stdout)["weights"]["checkpoint_bytes"] == 32064 * 3072 * 2


# --- GGUF ---------------------------------------------------------------------------------------

GGUF_CASES = [
    ("gemma-2-27b", "Q4_K_M"),
    ("qwen3-30b-a3b", "Q4_K_M"),
    ("gpt-oss-20b", "MXFP4_MOE"),
    ("llama-4-scout", "Q4_K_M"),
    ("deepseek-v3", "Q4_K_M"),
    ("mixtral-8x7b", "Q8_0"),
]


@pytest.mark.parametrize(("model_id", "mix"), GGUF_CASES)
def test_gguf_matches_the_catalog(catalog: Catalog, tmp_path: Path, model_id: str, mix: str) -> None:
    """Architecture from the header equals the entry; the model buffer (sum of tensor bytes)
    equals the catalog's computed GGUF size for the same mix within 1%; the file type is reported."""
    ref = catalog.models.get(model_id)
    [path] = write_gguf(tmp_path / f"{model_id}-{mix}.gguf", ref, mix)
    r = load_path(path)
    for name in ARCH_FIELDS:
        assert getattr(r.spec, name) == getattr(ref, name), name
    assert kv_bytes_per_token(r.spec, "fp16") == kv_bytes_per_token(ref, "fp16")
    assert r.stored is not None and r.stored.name == mix and r.default_engine == "llama.cpp"
    measured = weight_bytes(r.spec, r.stored)
    computed = weight_bytes(ref, resolve_format(mix, prefer_gguf=True))
    assert abs(measured.checkpoint_bytes / computed.checkpoint_bytes - 1) < 0.01
    assert measured.host_bytes == computed.host_bytes  # token_embd stays in host memory


def test_our_header_walk_agrees_with_gguf_reader(catalog: Catalog, tmp_path: Path) -> None:
    """llama.cpp's GGUFReader is the oracle: same tensors, types and byte counts, same scalars."""
    [path] = write_gguf(tmp_path / "g.gguf", catalog.models.get("qwen3-30b-a3b"), "Q4_K_M", vocab=300)
    ours = gguf_file.read_header(path)
    theirs = gguf.GGUFReader(path)
    assert [(t.name, t.ggml_type, t.nbytes) for t in ours.tensors] == [
        (t.name, t.tensor_type.name, int(t.n_bytes)) for t in theirs.tensors
    ]
    assert ours.data_offset == theirs.data_offset
    for key, field in theirs.fields.items():
        if key.startswith("GGUF.") or key not in ours.metadata:
            continue
        value = field.contents()
        assert ours.metadata[key] == value or ours.metadata[key].length == len(value), key


def test_sharded_gguf_counts_every_shard(catalog: Catalog, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    ref = catalog.models.get("gemma-2-27b")
    (tmp_path / "one").mkdir()
    (tmp_path / "split").mkdir()
    [single] = write_gguf(tmp_path / "one" / "g.gguf", ref)
    shards = write_gguf(tmp_path / "split" / "g.gguf", ref, split_max_tensors=200)
    assert len(shards) > 1 and shards[0].name == f"g-00001-of-{len(shards):05d}.gguf"
    whole, split = load_path(single), load_path(shards[1])  # any shard names the set
    assert split.stored is not None and whole.stored is not None
    assert split.stored.stored is not None and whole.stored.stored is not None
    assert split.stored.stored.total_bytes == whole.stored.stored.total_bytes
    assert split.files == tuple(shards)
    shards[-1].unlink()
    r = run_cli("estimate", str(shards[0]))
    _one_line_error(r)
    assert "missing" in r.stderr


def test_estimate_reports_the_file_format_and_measured_weights(
    catalog: Catalog, tmp_path: Path, run_cli
) -> None:  # type: ignore[no-untyped-def]
    [path] = write_gguf(tmp_path / "gemma-2-27b-Q4_K_M.gguf", catalog.models.get("gemma-2-27b"))
    r = run_cli("estimate", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["weights"]["format"] == "Q4_K_M"
    assert any("measured from gemma-2-27b-Q4_K_M.gguf" in a for a in data["assumptions"])
    assert data["kv_cache"]["bytes_per_token"] == 2 * 46 * 16 * 128 * 2
    cat = run_cli("estimate", "gemma-2-27b", "--engine", "llama.cpp", "--quant", "Q4_K_M", "--json")
    assert json.loads(cat.stdout)["weights"]["bytes"] == data["weights"]["bytes"]


# --- header only, bounded ----------------------------------------------------------------------


def test_a_20_gb_gguf_is_read_by_its_header_only(catalog: Catalog, tmp_path: Path) -> None:
    """A sparse Gemma-3-27B-sized GGUF (262,208-token vocabulary, ~16.5 GB of tensor data that is
    a hole on disk): the walk reads the header plus at most one read-ahead chunk, in bounded
    memory (bytes read bound the time; scripts/bench_importers.py prints the timings)."""
    [path] = write_gguf(tmp_path / "big.gguf", catalog.models.get("gemma-3-27b"), vocab=262_208)
    assert path.stat().st_size > 15e9 and path.stat().st_blocks * 512 < 100e6
    tracemalloc.start()
    header = gguf_file.read_header(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert header.bytes_read <= header.data_offset + gguf_file.READ_CHUNK
    assert peak < 32 * 2**20


def test_a_60_gb_safetensors_is_read_by_its_header_only(
    catalog: Catalog, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    ref = catalog.models.get("qwen2.5-32b")
    path = tmp_path / "model.safetensors"
    data = write_safetensors(path, hf_tensors(ref))
    assert data > 60e9
    reads: list[int] = []
    real_fdopen = os.fdopen

    def counting_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        f = real_fdopen(fd, *args, **kwargs)
        real_read = f.read

        def read(n: int = -1) -> bytes:
            out = real_read(n)
            reads.append(len(out))
            return out

        f.read = read
        return f

    monkeypatch.setattr(os, "fdopen", counting_fdopen)  # vramcalc.files opens every file this way
    header = safetensors.read_header(path)
    assert sum(reads) == header.header_bytes < 1e6
    assert sum(t.nbytes for t in header.tensors) == data


# --- Hugging Face cache ------------------------------------------------------------------------


def test_hf_id_resolves_from_the_local_cache(tmp_path: Path, monkeypatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = make_hf_cache(
        tmp_path / "hub",
        "acme/mixtral-finetune",
        {"config.json": json.dumps(CONFIGS["mixtral-8x7b"]).encode()},
    )
    r = run_cli("estimate", "acme/mixtral-finetune", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["kv_cache"]["bytes_per_token"] == 131_072
    spec = resolve_model("acme/mixtral-finetune", Catalog()).spec
    assert spec.hf_id == "acme/mixtral-finetune" and snap.name in spec.source[0]


def test_hf_home_is_honoured(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    make_hf_cache(
        tmp_path / "hf" / "hub", "acme/phi", {"config.json": json.dumps(CONFIGS["phi-3-mini-4k"]).encode()}
    )
    assert resolve_model("acme/phi", Catalog()).spec.family == "phi3"


def test_hf_id_not_cached_offline_says_how_to_get_it(tmp_path: Path, monkeypatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    r = run_cli("estimate", "acme/not-here")
    _one_line_error(r)
    assert "huggingface-cli download acme/not-here" in r.stderr and "--online" in r.stderr


def test_online_without_huggingface_hub_says_how_to_install(tmp_path: Path, monkeypatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    r = run_cli("estimate", "acme/not-here", "--online")
    _one_line_error(r)
    assert "llm-vramcalc[hf]" in r.stderr


def test_online_fetches_config_and_headers_only(tmp_path: Path, monkeypatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A stand-in huggingface_hub: hf_hub_download for config.json, get_safetensors_metadata for
    the headers (the two calls --online makes; no tensor data is requested)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    snap = tmp_path / "dl" / ("b" * 40)
    write_config(snap, CONFIGS["phi-3-mini-4k"])
    calls: list[str] = []
    info = types.SimpleNamespace(dtype="BF16", shape=[32064, 3072], data_offsets=[0, 32064 * 3072 * 2])
    fake = types.ModuleType("huggingface_hub")

    def hf_hub_download(repo_id: str, filename: str) -> str:
        calls.append(f"download {filename}")
        return str(snap / filename)

    def get_safetensors_metadata(repo_id: str) -> Any:
        calls.append("metadata")
        file_meta = types.SimpleNamespace(tensors={"lm_head.weight": info})
        return types.SimpleNamespace(files_metadata={"model.safetensors": file_meta})

    fake.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    fake.get_safetensors_metadata = get_safetensors_metadata  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    r = run_cli("estimate", "acme/phi-online", "--online", "--json")
    assert r.exit_code == 0, r.stderr
    assert calls == ["download config.json", "metadata"]
    assert json.loads(r.stdout)["weights"]["checkpoint_bytes"] == 32064 * 3072 * 2


# --- models import ------------------------------------------------------------------------------


def test_models_import_writes_a_reviewable_entry(catalog: Catalog, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    [path] = write_gguf(tmp_path / "gemma-2-27b-Q4_K_M.gguf", catalog.models.get("gemma-2-27b"))
    out_dir = tmp_path / "cat" / "models"
    out_dir.mkdir(parents=True)
    target = out_dir / "my-gemma.yaml"
    r = run_cli("models", "import", str(path), "-o", str(target))
    assert r.exit_code == 0, r.stderr
    text = target.read_text()
    assert "source:" in text and "header sha256:" in text and "Stored weights measured" in text
    entry = Catalog([tmp_path / "cat"]).models.get("my-gemma")
    assert kv_bytes_per_token(entry, "bf16") == kv_bytes_per_token(catalog.models.get("gemma-2-27b"), "bf16")
    again = run_cli("models", "import", str(path), "-o", str(target))
    _one_line_error(again)
    assert "--force" in again.stderr
    assert run_cli("models", "import", str(path), "-o", str(target), "--force").exit_code == 0
    assert not list(out_dir.glob(".*tmp"))


def test_models_import_of_a_config_json(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path / "ds", CONFIGS["deepseek-v3"])
    target = tmp_path / "deepseek-copy.yaml"
    assert run_cli("models", "import", str(cfg), "-o", str(target)).exit_code == 0
    assert "native_weight_format: fp8" in target.read_text()
    bad = run_cli("models", "import", str(cfg), "-o", str(tmp_path / "Bad Name!.yaml"))
    _one_line_error(bad)


# --- bad input: one line, exit 2 ----------------------------------------------------------------


def _bad_files(tmp: Path, catalog: Catalog) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}
    [good] = write_gguf(tmp / "good.gguf", catalog.models.get("gemma-2-27b"))
    with good.open("rb") as f:
        raw = f.read(2000)
    (tmp / "cut.gguf").write_bytes(raw)
    cases["truncated gguf"] = (tmp / "cut.gguf", "truncated GGUF")
    (tmp / "garbage.gguf").write_bytes(b"\x00garbage" * 100)
    cases["garbage gguf"] = (tmp / "garbage.gguf", "not a GGUF file")
    (tmp / "tensors.gguf").write_bytes(gguf_prefix(3_000_000_000, 0) + b"\0" * 64)
    cases["billions of tensors"] = (tmp / "tensors.gguf", "3,000,000,000 tensors")
    (tmp / "string.gguf").write_bytes(gguf_prefix(0, 1) + gguf_string(b"general.name", 2**62) + b"\0" * 64)
    cases["huge key string"] = (tmp / "string.gguf", "claims")
    value = gguf_string(b"k") + struct.pack("<I", 8) + gguf_string(b"v", 2**40)
    (tmp / "value.gguf").write_bytes(gguf_prefix(0, 1) + value + b"\0" * 64)
    cases["huge value string"] = (tmp / "value.gguf", "claims")
    array = gguf_string(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**50)
    (tmp / "array.gguf").write_bytes(gguf_prefix(0, 1) + array + b"\0" * 64)
    cases["huge array"] = (tmp / "array.gguf", "array items")
    st = tmp / "st-lies"
    write_config(st, CONFIGS["phi-3-mini-4k"])
    (st / "model.safetensors").write_bytes(struct.pack("<Q", 5000) + b"{}")
    cases["safetensors header longer than the file"] = (st, "truncated")
    st2 = tmp / "st-huge"
    write_config(st2, CONFIGS["phi-3-mini-4k"])
    (st2 / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    cases["safetensors header beyond 100 MB"] = (st2, "limit")
    st3 = tmp / "st-json"
    write_config(st3, CONFIGS["phi-3-mini-4k"])
    (st3 / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"{no}")
    cases["safetensors header not JSON"] = (st3, "not valid JSON")
    (tmp / "notjson").mkdir()
    (tmp / "notjson" / "config.json").write_text("{model_type: llama")
    cases["config not JSON"] = (tmp / "notjson" / "config.json", "not valid JSON")
    write_config(tmp / "missing", {"model_type": "llama", "hidden_size": 4096})
    cases["config misses fields"] = (tmp / "missing", "misses intermediate_size")
    cases["no such path"] = (tmp / "nope.gguf", "no such file")
    (tmp / "empty-dir").mkdir()
    cases["directory without config"] = (tmp / "empty-dir", "no config.json")
    return cases


def test_bad_inputs_fail_with_one_line(catalog: Catalog, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    for what, (path, expected) in _bad_files(tmp_path, catalog).items():
        r = run_cli("estimate", str(path))
        _one_line_error(r)
        assert expected in r.stderr, (what, r.stderr)


def test_catalog_names_still_win(catalog: Catalog) -> None:
    r = resolve_model("google/gemma-2-27b-it", catalog)
    assert r.origin == "catalog" and r.stored is None and r.spec.id == "gemma-2-27b"


def test_recommend_sizes_the_file_as_stored(catalog: Catalog, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    [path] = write_gguf(tmp_path / "qwen3-30b-a3b-Q4_K_M.gguf", catalog.models.get("qwen3-30b-a3b"))
    r = run_cli("recommend", str(path), "--users", "2", "--max-gpus", "1", "--format", "json")
    assert r.exit_code in (0, 1), r.stderr
    assert "Q4_K_M" in r.stdout and "llama.cpp" in r.stdout
