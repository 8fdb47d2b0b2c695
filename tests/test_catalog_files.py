"""Every shipped catalog file validates, cites a source, and matches the reference arithmetic exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from vramcalc.catalog import Catalog, read_yaml_mapping
from vramcalc.core.kv import kv_bytes_per_token, kv_cache_bytes, kv_layers
from vramcalc.core.tensors import param_counts
from vramcalc.specs import GpuSpec, ModelSpec
from vramcalc.units import GIB

MODEL_FILES = sorted((ROOT / "models").glob("*.yaml"))
GPU_FILES = sorted((ROOT / "gpus").glob("*.yaml"))
REFERENCE = yaml.safe_load((ROOT / "tests/calibration/reference_models.yaml").read_text())["models"]


def test_catalog_sizes() -> None:
    assert len(MODEL_FILES) >= 35
    assert len(GPU_FILES) >= 45


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_file_validates_and_cites_a_source(path: Path) -> None:
    spec = ModelSpec.model_validate(read_yaml_mapping(path))
    assert spec.id == path.stem
    assert spec.source and all(s.strip() for s in spec.source)


@pytest.mark.parametrize("path", GPU_FILES, ids=lambda p: p.stem)
def test_gpu_file_validates_and_cites_a_source(path: Path) -> None:
    spec = GpuSpec.model_validate(read_yaml_mapping(path))
    assert spec.id == path.stem
    assert spec.source and all(s.strip() for s in spec.source)


def test_missing_source_is_rejected(tmp_path: Path) -> None:
    data = read_yaml_mapping(ROOT / "models/llama-3.1-8b.yaml")
    del data["source"]
    with pytest.raises(ValueError, match="source"):
        ModelSpec.model_validate(data)
    data["source"] = []
    with pytest.raises(ValueError, match="source"):
        ModelSpec.model_validate(data)


REQUIRED_MODELS = [
    "gemma-2-2b",
    "gemma-2-9b",
    "gemma-2-27b",
    "gemma-3-1b",
    "gemma-3-4b",
    "gemma-3-12b",
    "gemma-3-27b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "llama-3.3-70b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "qwen3-8b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "qwen3-235b-a22b",
    "mistral-7b-v0.3",
    "mistral-small-24b-2501",
    "mixtral-8x7b",
    "phi-3-mini-4k",
    "phi-4",
    "deepseek-v3",
    "deepseek-r1",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "llama-4-scout",
]


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_required_models_present(catalog: Catalog, model_id: str) -> None:
    assert catalog.models.get(model_id).id == model_id


@pytest.mark.parametrize("model_id", sorted(REFERENCE))
def test_params_match_reference_exactly(catalog: Catalog, model_id: str) -> None:
    """Computed parameter counts equal the reference's derived_params_computed to the unit."""
    ref = REFERENCE[model_id]
    counts = param_counts(catalog.models.get(model_id))
    assert counts.total == ref["params_total"]
    assert counts.embedding == ref["params_embedding"]
    if "params_active" in ref:
        assert counts.active == ref["params_active"]


@pytest.mark.parametrize("model_id", sorted(REFERENCE))
def test_kv_bytes_per_token_match_reference_exactly(catalog: Catalog, model_id: str) -> None:
    """KV bytes per token (bf16, every layer storing) and the global/local split equal the reference."""
    ref = REFERENCE[model_id]
    m = catalog.models.get(model_id)
    assert kv_bytes_per_token(m, "bf16") == ref["kv_bytes_per_token_bf16"]
    layers = kv_layers(m)
    if "num_global_layers" in ref:
        assert sum(1 for lay in layers if lay.window_tokens is None) == ref["num_global_layers"]
        assert sum(1 for lay in layers if lay.window_tokens is not None) == ref["num_local_layers"]
        assert {lay.window_tokens for lay in layers if lay.window_tokens} == {ref["local_window_tokens"]}


@pytest.mark.parametrize(
    ("model_id", "ctx"),
    [(mid, ctx) for mid, ref in sorted(REFERENCE.items()) for ctx in ref.get("kv_gib_per_sequence_bf16", {})],
)
def test_kv_per_sequence_matches_reference(catalog: Catalog, model_id: str, ctx: int) -> None:
    """One bf16 sequence with windows applied equals the reference GiB figure (printed to 4 decimals)."""
    m = catalog.models.get(model_id)
    ours = kv_cache_bytes(m, "bf16", ctx, 1).bytes / GIB
    assert round(ours, 4) == pytest.approx(REFERENCE[model_id]["kv_gib_per_sequence_bf16"][ctx], abs=1e-4)


def test_aliases_resolve_to_the_entry(catalog: Catalog) -> None:
    m = catalog.models
    assert m.get("gemma-2-27b-it").id == "gemma-2-27b"
    assert m.get("google/gemma-2-27b-it").id == "gemma-2-27b"
    assert m.get("GOOGLE/Gemma-2-27B-IT").id == "gemma-2-27b"
    assert m.get("meta-llama/Llama-3.1-8B-Instruct").id == "llama-3.1-8b"
    assert catalog.gpus.get("4090").id == "rtx-4090"
    assert catalog.gpus.get("H100").id == "h100-sxm"


def test_no_alias_is_claimed_twice(catalog: Catalog) -> None:
    # _index raises CatalogError on a name claimed by two entries.
    assert len(catalog.models._index()) > len(catalog.models.all())
    assert len(catalog.gpus._index()) > len(catalog.gpus.all())


def test_resolving_one_model_parses_one_file() -> None:
    """Lazy loading: `estimate gemma-2-27b` must not read the whole catalog."""
    cat = Catalog()
    cat.models.get("gemma-2-27b")
    assert len(cat.models._cache) == 1
    cat.models.get("google/gemma-2-27b-it")  # org prefix and -it suffix still hit the one file
    assert len(cat.models._cache) == 1
    assert cat.gpus._cache == {}


def test_usable_memory_is_measured_where_the_reference_has_it(catalog: Catalog) -> None:
    """nvidia-smi totals from shared/reference/gpus.yaml usable_memory_notes."""
    assert catalog.gpus.get("rtx-4090").usable_mib == 24564
    assert catalog.gpus.get("h100-sxm").usable_mib == 81559
    assert catalog.gpus.get("a100-80gb-sxm").usable_mib == 81920
    assert catalog.gpus.get("l40s").usable_mib == 46068
