"""Layer 4: golden output. Tables rendered on a fixed-width colourless console; JSON compared as data.

Regenerate after an intended change with VRAMCALC_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import ROOT
from vramcalc import render
from vramcalc.catalog import Catalog
from vramcalc.core.estimate import Workload
from vramcalc.core.scenario import Scenario, run

GOLDEN = ROOT / "tests/golden"
UPDATE = os.environ.get("VRAMCALC_UPDATE_GOLDEN") == "1"

CASES = {
    "gemma-2-27b-int4-10users": ("gemma-2-27b", Workload(4096, 10), "awq-int4", "bf16", None, "vllm"),
    "gemma-2-27b-int4-4090-2users": (
        "gemma-2-27b",
        Workload(4096, 2),
        "awq-int4",
        "bf16",
        "rtx-4090",
        "vllm",
    ),
    "llama-3.1-8b-fp8-20users-prefix": (
        "llama-3.1-8b",
        Workload(8192, 20, fill=0.5, shared_prefix_tokens=1024),
        "fp8",
        "fp8",
        "h100-sxm",
        "sglang",
    ),
}


def _scenario(case: str) -> Scenario:
    model, work, fmt, kv, gpu, engine = CASES[case]
    cat = Catalog()
    return run(
        cat.models.get(model),
        work,
        engine=engine,
        gpu=cat.gpus.get(gpu) if gpu else None,
        quant=fmt,
        kv_dtype=kv,
    )


def _check(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path}; run with VRAMCALC_UPDATE_GOLDEN=1"
    assert actual == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_table_golden(case: str) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system=None, force_terminal=False, highlight=False)
    sc = _scenario(case)
    console.print(render.estimate_table(sc.estimate, explain=True, view=sc.view))
    _check(GOLDEN / f"{case}.txt", buf.getvalue())


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_golden(case: str) -> None:
    sc = _scenario(case)
    actual = render.estimate_dict(sc.estimate, sc.view)
    path = GOLDEN / f"{case}.json"
    if UPDATE:
        path.write_text(render.to_json(actual))
    assert actual == json.loads(path.read_text())


def test_markdown_golden() -> None:
    _check(
        GOLDEN / "gemma-2-27b-int4-10users.md",
        render.estimate_markdown(_scenario("gemma-2-27b-int4-10users").estimate),
    )
