"""recommend: layouts, tiers, the reference scenarios, remedies, properties and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CliResult
from vramcalc.catalog import Catalog
from vramcalc.core.recommend import Request, evaluate, max_users, recommend, tier_of

Run = Callable[..., CliResult]
CAT = Catalog()
GEMMA = CAT.models.get("gemma-2-27b")
GPUS = list(CAT.gpus.all().values())


def test_tensor_parallel_halves_weights_replicas_do_not() -> None:
    """Gemma-2-27B int4 on L40S: tp=2 puts half of every matrix on each GPU (per-GPU weights ~7.4
    GiB of 14.8); two replicas each hold the whole 14.8 GiB and serve half the users."""
    req = Request(GEMMA, 10)
    single = evaluate(req, CAT.gpus.get("l40s"), 1, "single")
    tp2 = evaluate(req, CAT.gpus.get("l40s"), 2, "tensor-parallel")
    reps = evaluate(req, CAT.gpus.get("l40s"), 2, "replicas")
    w1 = single.scenario.estimate.weights_bytes
    assert tp2.scenario.estimate.weights_bytes == pytest.approx(w1 / 2, rel=0.02)
    assert reps.scenario.estimate.weights_bytes == w1
    assert reps.scenario.estimate.workload.users == 5  # 10 users over 2 replicas
    assert reps.max_users == 2 * single.max_users
    assert tp2.max_users > 2 * single.max_users  # the freed weight memory becomes KV


def test_max_users_is_the_boundary() -> None:
    assert max_users(lambda u: u <= 37, 5) == 37
    assert max_users(lambda u: u <= 37, 500) == 37
    assert max_users(lambda u: u <= 1, 1) == 1
    assert max_users(lambda u: False, 3) == 0


def test_tiers_by_marketed_memory() -> None:
    assert tier_of(CAT.gpus.get("rtx-4090")) == "24 GB"
    assert tier_of(CAT.gpus.get("rtx-5090")) == "32 GB"
    assert tier_of(CAT.gpus.get("l40s")) == "48 GB"
    assert tier_of(CAT.gpus.get("h100-sxm")) == "80 GB"
    assert tier_of(CAT.gpus.get("h200")) == "96-192 GB"


def test_reference_scenario_one_24gb_card() -> None:
    """Gemma-2-27B 4-bit at 4096 tokens: one RTX 4090 serves 1-2 users comfortably, not 10."""
    o = evaluate(Request(GEMMA, 10), CAT.gpus.get("rtx-4090"), 1, "single")
    assert 1 <= o.max_users <= 2
    assert not o.serves


def test_reference_scenario_10_users_48gb() -> None:
    r = recommend(Request(GEMMA, 10), GPUS)
    assert r.choice is not None and r.choice.tier == "48 GB"


def test_reference_scenario_20_users_80gb_or_48gb_with_fp8_kv() -> None:
    r = recommend(Request(GEMMA, 20), GPUS)
    assert r.choice is not None and r.choice.tier == "80 GB"
    tier, fixes = r.remedies[0]
    assert tier == "48 GB"
    fp8 = next(f for f in fixes if f.change == "kv_dtype: fp8")
    assert fp8.assessment.passes and fp8.assessment.users_at_once == 20
    assert fp8.plan_fields == {"kv_dtype": "fp8"}


def test_the_recommendation_fits_its_own_estimate() -> None:
    r = recommend(Request(GEMMA, 12), GPUS)
    o = r.choice
    assert o is not None
    a = o.assessment
    assert a.users == 12 and a.verdict == "fits" and a.users_at_once == 12
    assert a.demand_bytes <= 0.9 * o.usable_bytes
    assert a.kv_pool_bytes is not None and a.kv_bytes <= a.kv_pool_bytes


TIER_ORDER = ["16 GB", "24 GB", "32 GB", "48 GB", "80 GB", "96-192 GB", "multi-card"]


@settings(max_examples=6, deadline=None)
@given(st.integers(min_value=1, max_value=40))
def test_more_users_never_recommend_a_smaller_tier(users: int) -> None:
    a = recommend(Request(GEMMA, users), GPUS).choice
    b = recommend(Request(GEMMA, users + 8), GPUS).choice
    assert a is not None
    if b is not None:
        assert TIER_ORDER.index(b.tier) >= TIER_ORDER.index(a.tier)


def test_json_keys_and_exit_zero(run_cli: Run) -> None:
    r = run_cli("recommend", "--users", "20", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    rec = d["recommendation"]
    for key in ("gpu", "count", "layout", "max_users", "per_user_tokens_per_s", "ttft_s"):
        assert key in rec
    assert rec["gpu"] == "h100-sxm" and rec["max_users"] >= 20
    assert [t["tier"] for t in d["tiers"]] == TIER_ORDER
    assert all(
        {"tier", "gpu", "count", "layout", "max_users", "fits"} <= set(t) for t in d["tiers"] if t["gpu"]
    )
    assert d["scenario"]["default_scenario"] is True


def test_nothing_serves_exits_1(run_cli: Run) -> None:
    """DeepSeek-V3 in bf16 (1.3 TB) on at most one GPU: nothing in the catalog holds it."""
    r = run_cli("recommend", "deepseek-v3", "--users", "4", "--bits", "16", "--max-gpus", "1")
    assert r.exit_code == 1
    assert "Nothing in the catalog serves 4 users within 1 GPUs" in " ".join(r.stdout.split())


def test_project_file(run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vramcalc.toml").write_text('model = "llama-3.1-8b"\nusers = 4\nctx = 8192\n')
    monkeypatch.chdir(tmp_path)
    d = json.loads(run_cli("recommend", "--json").stdout)
    assert d["scenario"]["model"] == "llama-3.1-8b" and d["scenario"]["users"] == 4
    assert d["scenario"]["default_scenario"] is False
    d = json.loads(run_cli("recommend", "--users", "6", "--json").stdout)  # flags override the file
    assert d["scenario"]["users"] == 6


@pytest.mark.parametrize(
    ("args", "files", "needle"),
    [
        (("--users", "0"), {}, "--users must be a positive integer"),
        (("--headroom", "1.5"), {}, "--headroom must be in [0, 1)"),
        (("--engine", "vlm"), {}, "unknown --engine 'vlm'"),
        (("--config", "missing.toml"), {}, "--config missing.toml: no such file"),
        ((), {"vramcalc.toml": "usres = 4\n"}, "unknown key 'usres'"),
        ((), {"vramcalc.toml": "users = [\n"}, "malformed TOML"),
        ((), {".vramcalc.yaml": "users: -2\n"}, "users: Input should be greater than 0"),
    ],
)
def test_recommend_bad_input(
    run_cli: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    files: dict[str, str],
    needle: str,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    r = run_cli("recommend", *args)
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_markdown_and_table(run_cli: Run) -> None:
    md = run_cli("recommend", "--users", "10", "--format", "markdown")
    assert md.exit_code == 0 and "| tier | option | max users |" in md.stdout
    table = run_cli("recommend", "--users", "10")
    assert "Recommendation:" in table.stdout and "built-in default scenario" in table.stdout
