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
from vramcalc.core.assess import REFERENCE_GPUS, Deployment, EstimateReport, report_on_gpu, report_on_tiers

GOLDEN = ROOT / "tests/golden"
UPDATE = os.environ.get("VRAMCALC_UPDATE_GOLDEN") == "1"

CASES: dict[str, dict[str, object]] = {
    "gemma-2-27b-int4-10users": {"model": "gemma-2-27b", "users": 10, "quant": "awq-int4", "kv": "bf16"},
    "gemma-2-27b-int4-4090-2users": {
        "model": "gemma-2-27b", "users": 2, "quant": "awq-int4", "kv": "bf16", "gpu": "rtx-4090",
    },
    "llama-3.1-8b-fp8-20users-prefix": {
        "model": "llama-3.1-8b", "users": 20, "ctx": 8192, "fill": 0.5, "prefix": 1024, "quant": "fp8",
        "kv": "fp8", "gpu": "h100-sxm", "engine": "sglang",
    },
}  # fmt: skip


def _scenario(case: str) -> EstimateReport:
    c = CASES[case]
    cat = Catalog()
    gpu = c.get("gpu")
    cards = tuple((label, cat.gpus.get(card)) for label, card in REFERENCE_GPUS)
    d = Deployment(
        model=cat.models.get(str(c["model"])),
        gpu=cat.gpus.get(str(gpu)) if gpu else cards[0][1],
        users=int(c["users"]),  # type: ignore[call-overload]
        ctx_tokens=int(c.get("ctx", 4096)),  # type: ignore[call-overload]
        fill=float(c.get("fill", 1.0)),  # type: ignore[arg-type]
        shared_prefix_tokens=int(c.get("prefix", 0)),  # type: ignore[call-overload]
        engine=str(c.get("engine", "vllm")),
        quant=str(c["quant"]),
        kv_dtype=str(c["kv"]),
    )
    return report_on_gpu(d) if gpu else report_on_tiers(d, cards)


def _check(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path}; run with VRAMCALC_UPDATE_GOLDEN=1"
    assert actual == path.read_text()


@pytest.mark.parametrize("width", [60, 120])
@pytest.mark.parametrize("case", sorted(CASES))
def test_table_golden(case: str, width: int) -> None:
    """At 60 columns the split bar shrinks or goes and headers take two lines; no number is cut."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
    sc = _scenario(case)
    console.print(render.estimate_table(sc, explain=True))
    assert "…" not in buf.getvalue()
    _check(GOLDEN / f"{case}-{width}.txt", buf.getvalue())


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_golden(case: str) -> None:
    sc = _scenario(case)
    actual = render.estimate_dict(sc)
    path = GOLDEN / f"{case}.json"
    if UPDATE:
        path.write_text(render.to_json(actual))
    assert actual == json.loads(path.read_text())


def test_markdown_golden() -> None:
    _check(
        GOLDEN / "gemma-2-27b-int4-10users.md",
        render.estimate_markdown(_scenario("gemma-2-27b-int4-10users")),
    )
