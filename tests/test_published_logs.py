"""Hold-out: published vLLM and SGLang startup logs nobody here fitted a constant to
(tests/fixtures/logs/published/sources*.yaml, each entry with its source).

The figures below were measured on 2026-12-07 with `scripts/vllm_log_accuracy.py` (which prints
every log, xfails and excluded entries included); the assertions hold them with a small margin, so
a change that makes the engine model worse on data it was not fitted to fails here.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, CliResult

PUBLISHED = ROOT / "tests" / "fixtures" / "logs" / "published"
Run = Callable[..., CliResult]


def _entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(PUBLISHED.glob("sources*.yaml")):
        out += (yaml.safe_load(path.read_text()) or {}).get("logs", [])
    return out


def _args(entry: dict[str, Any]) -> list[str]:
    return [str(a) for a in (entry.get("notes") or {}).get("args", [])]


VLLM = [
    e for e in _entries() if e.get("engine", "vllm") == "vllm" and not (e.get("notes") or {}).get("exclude")
]
SGLANG = [e for e in _entries() if e.get("engine") == "sglang"]


def test_every_entry_names_its_source_and_file() -> None:
    for e in _entries():
        assert e.get("source"), e["file"]
        assert (PUBLISHED / e["file"]).is_file(), e["file"]
    assert len(VLLM) >= 30 and len(SGLANG) >= 8


def _errors(run_cli: Run) -> dict[str, list[float]]:
    errors: dict[str, list[float]] = {}
    for e in VLLM:
        r = run_cli("calibrate", str(PUBLISHED / e["file"]), *_args(e), "--json")
        if r.exit_code == 2:
            continue
        for fig in json.loads(r.stdout)["figures"]:
            theirs, ours = fig.get("theirs"), fig.get("ours")
            if (
                isinstance(theirs, (int, float))
                and not isinstance(theirs, bool)
                and theirs
                and ours is not None
            ):
                errors.setdefault(fig["key"], []).append(abs(ours - theirs) / abs(theirs))
    return errors


def test_vllm_logs_hold_out(run_cli: Run) -> None:
    """26 of the 30 vLLM logs calibrate (4 name models the catalog lacks or print no context).
    Measured 2026-12-08: KV pool median 2.3% over 21 logs (worst 77%: a log whose max_num_seqs /
    batched tokens are not in the excerpt), KV tokens median 1.4% over 17 (worst 8.2%, a DGX Spark
    whose pool is free unified memory), concurrency median 2.2%, weights median 0.17% (worst 1.03%:
    Llama-3.1-405B on 8 MI300X, an AMD fork of 0.4.3), activation peak median 8.7% over 10 (worst
    87%, the same settings-less log; Qwen3-235B FP8 on 8 L40S with expert parallelism 64% low, on 4
    RTX PRO 6000 15% low with the fused MoE buffers, 68% without). vLLM 0.10.2+ logs sum up their
    budget in one "Actual usage is ..." line, read since 2026-12-08: it added the 21st pool and three
    activation peaks. Before vLLM's MXFP4 layout was modelled (2026-12-07): pool 2.3% over 20,
    tokens 2.05%, concurrency 2.4%, weights worst 11% (gpt-oss on an A100 in Marlin's padded layout,
    now +0.1%; DeepSeek-R1 on 8 H200s at 0.7.3 -5.4%, now -0.1% with MLA's absorbed copies)."""
    errors = _errors(run_cli)
    median = {key: statistics.median(v) for key, v in errors.items()}
    assert len(errors["kv_pool_bytes"]) == 21 and len(errors["kv_capacity_tokens"]) == 17
    assert median["kv_pool_bytes"] <= 0.024
    assert median["kv_capacity_tokens"] <= 0.015 and max(errors["kv_capacity_tokens"]) <= 0.09
    assert median["max_concurrency"] <= 0.023
    assert median["weights_bytes_per_gpu"] <= 0.002 and max(errors["weights_bytes_per_gpu"]) <= 0.011
    assert len(errors["activation_peak_bytes"]) == 10 and median["activation_peak_bytes"] <= 0.09


@pytest.mark.parametrize("entry", SGLANG, ids=[e["file"] for e in SGLANG])
def test_sglang_kv_tokens(entry: dict[str, Any], run_cli: Run) -> None:
    """Our `estimate --engine sglang` KV tokens against the log's "#tokens" (max_total_num_tokens).
    Measured: median 1.1%, worst 12.5% (an RTX 5080 log whose mem_fraction_static is not printed);
    each within 13%."""
    r = run_cli("estimate", *[str(a) for a in entry["estimate_args"]], "--json")
    assert r.exit_code in (0, 1), r.stderr
    ours = json.loads(r.stdout)["engine"]["kv_capacity_tokens"]
    theirs = entry["kv_tokens"]
    assert abs(ours - theirs) / theirs <= 0.13, (ours, theirs)


def test_sglang_median(run_cli: Run) -> None:
    errors = []
    for entry in SGLANG:
        r = run_cli("estimate", *[str(a) for a in entry["estimate_args"]], "--json")
        errors.append(
            abs(json.loads(r.stdout)["engine"]["kv_capacity_tokens"] - entry["kv_tokens"])
            / entry["kv_tokens"]
        )
    assert statistics.median(errors) <= 0.015
