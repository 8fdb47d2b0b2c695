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


def _errors(run_cli: Run, entries: list[dict[str, Any]] | None = None) -> dict[str, list[float]]:
    """|ours - theirs| / theirs per figure key over `entries` (default: the vLLM logs); a vLLM log
    that cannot be calibrated is skipped, any other entry must calibrate."""
    errors: dict[str, list[float]] = {}
    for e in VLLM if entries is None else entries:
        r = run_cli("calibrate", str(PUBLISHED / e["file"]), *_args(e), "--json")
        if r.exit_code == 2 and entries is None:
            continue
        assert r.exit_code in (0, 1), (e["file"], r.stderr)
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
    """32 of the 37 vLLM logs calibrate (5 name models the catalog lacks or print no context).
    Measured 2026-12-08, with share d (seven logs of 0.15-0.27, added after the model below):
    KV pool median 2.8% over 27 logs (worst 74%: a log whose max_num_seqs / batched tokens are not
    in the excerpt), KV tokens median 2.4% over 22 (worst 13%: a cold start on an RTX 4090, whose
    torch.compile raised the profile's peak by 1 GiB over the same machine's warm start),
    concurrency median 2.35%, weights median 0.12% (worst 0.63%; it was 1.03% on Llama-3.1-405B
    on 8 MI300X until that log's MP16 checkpoint, 16 KV heads, got its own catalog entry),
    activation peak median 9.4% over 13; every start / refusal predicted.
    Share d showed the V2 model runner's logits-only profile (0.25-0.32): before it was modelled,
    Qwen3-32B at TP 2 on RTX PRO 6000s was predicted not to start (KV pool -60%) and two warm
    starts on an RTX 4090 were 11% low; now -0.1%, -3.6% and -5.9%, while the cold starts sit 1.5-13%
    high (the verdict's side, the sort path's peak, covers them). Before share d: pool 2.3% over
    21, tokens 1.5% over 17, concurrency 2.2%, activation 1.9% over 10.
    GPUs without peer-to-peer (the log's "Custom allreduce is disabled because your platform lacks
    GPU P2P" / "... spans across nodes"; vllm_engine.default_p2p) keep NCCL's ring buffers in host
    memory: four A100 logs went from -0.9..-3.1% to +0.0..+1.0% (KV pool median 2.8% -> 1.6%, tokens
    2.4% -> 2.2%), while the two RTX 3090 TP 2 logs moved from +2.1 / -0.3% to +6.4 / +3.9%, beside
    the same machine's TP 1 log at +5.2%."""
    errors = _errors(run_cli)
    median = {key: statistics.median(v) for key, v in errors.items()}
    assert len(errors["kv_pool_bytes"]) == 27 and len(errors["kv_capacity_tokens"]) == 22
    assert median["kv_pool_bytes"] <= 0.017
    assert median["kv_capacity_tokens"] <= 0.023 and max(errors["kv_capacity_tokens"]) <= 0.14
    assert median["max_concurrency"] <= 0.024
    assert median["weights_bytes_per_gpu"] <= 0.002 and max(errors["weights_bytes_per_gpu"]) <= 0.0065
    assert len(errors["activation_peak_bytes"]) == 13 and median["activation_peak_bytes"] <= 0.095


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


GGUF_LOGS = [e for e in _entries() if e.get("engine") in ("llama.cpp", "ollama")]


def test_gguf_logs_hold_out(run_cli: Run) -> None:
    """Published llama.cpp and Ollama startup logs (sources-llamacpp.yaml, sources-ollama.yaml; a
    helper collected them on 2026-12-08, nothing was fitted to them). Measured with
    scripts/gguf_log_accuracy.py, excluded entries (-ot tensor overrides, a log with uncertain
    settings) left out: Ollama's estimate over 5 logs (0.5.x-era, one on 4 L4s with 44 of 81 layers
    spread over the cards) - required.full worst 0.88%, KV worst 0.16%, graphs worst 0.55%,
    layers.offload exact; the runner's model and KV buffers exact on one GPU, KV exact summed over
    two; compute buffers median 0.7% (3.6% before the f32 KQ mask was counted), worst 15.7% (a
    Vulkan run at ubatch 1024), 1.7% summed over two T4s. Before this session's fixes, Ollama 0.5.4
    was modelled as 0.30 (nine figures unchecked), the 4-GPU log gave 17 layers for 44, and the
    two-T4 log's compute buffers were 63% low (its 2 GPUs not passed on)."""
    errors = _errors(run_cli, [e for e in GGUF_LOGS if not (e.get("notes") or {}).get("exclude")])
    assert len(errors["required_full_bytes"]) == 5 and max(errors["required_full_bytes"]) <= 0.01
    assert max(errors["required_kv_bytes"]) <= 0.002 and max(errors["graph_full_bytes"]) <= 0.006
    assert max(errors["layers_offload"]) == 0 and max(errors["gpu_layers"]) == 0
    assert max(errors["kv_buffer_bytes"]) <= 0.001 and max(errors["model_buffer_bytes"]) <= 0.001
    assert max(errors["gpus_kv_bytes"]) <= 0.001 and max(errors["gpus_compute_bytes"]) <= 0.02
    assert (
        statistics.median(errors["compute_buffer_bytes"]) <= 0.01
        and max(errors["compute_buffer_bytes"]) <= 0.16
    )
