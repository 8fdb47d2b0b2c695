"""Shared fixtures: the built-in catalog, inline specs and a CLI runner through the real entry point."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from vramcalc import cli
from vramcalc.catalog import Catalog
from vramcalc.cli import main
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.estimate import Workload
from vramcalc.core.scenario import Scenario, run
from vramcalc.specs import GpuSpec, ModelSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture(scope="session")
def gemma2_27b(catalog: Catalog) -> ModelSpec:
    return catalog.models.get("gemma-2-27b")


@pytest.fixture(scope="session")
def llama31_8b(catalog: Catalog) -> ModelSpec:
    return catalog.models.get("llama-3.1-8b")


def toy_model(**overrides: object) -> ModelSpec:
    """A small dense model built inline (numbers chosen so the arithmetic is easy by hand)."""
    data: dict[str, object] = {
        "id": "toy",
        "name": "Toy",
        "family": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "vocab_size": 1000,
        "tie_word_embeddings": False,
        "max_position_embeddings": 8192,
        "layer_pattern": {"kind": "all_global"},
        "source": "test fixture",
    }
    data.update(overrides)
    return ModelSpec.model_validate(data)


@dataclasses.dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def internal_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Every test fails when the CLI's last net ("internal error: ...") fires: each one is an input
    no reader or validator turned into a one-line error. A test of the net itself clears the list."""
    fired: list[BaseException] = []
    real = cli._internal_error

    def watch(exc: BaseException) -> NoReturn:
        fired.append(exc)
        real(exc)

    monkeypatch.setattr(cli, "_internal_error", watch)
    yield fired
    if fired:
        pytest.fail(f"the internal-error handler fired: {type(fired[0]).__name__}: {fired[0]}", pytrace=False)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run `vramcalc ARGS...` through the console entry point (the real error boundary)."""
    monkeypatch.delenv("VRAMCALC_CATALOG_PATH", raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture(scope="session")
def rtx4090(catalog: Catalog) -> GpuSpec:
    return catalog.gpus.get("rtx-4090")


@pytest.fixture(scope="session")
def l40s(catalog: Catalog) -> GpuSpec:
    return catalog.gpus.get("l40s")


def run_gguf(
    m: ModelSpec,
    gpu: GpuSpec | None,
    ctx: int,
    users: int = 1,
    engine: str = "llama.cpp",
    kv_dtype: str = "auto",
    **settings: object,
) -> Scenario:
    """A 4-bit (Q4_K_M) llama.cpp-family scenario with engine settings as keywords."""
    return run(
        m,
        Workload(ctx, users),
        engine=engine,
        gpu=gpu,
        bits=4,
        kv_dtype=kv_dtype,
        settings=EngineSettings(**settings),  # type: ignore[arg-type]
    )


def view_int(s: Scenario, key: str) -> int:
    assert s.view is not None
    value = s.view.value(key)
    assert isinstance(value, int)
    return value
