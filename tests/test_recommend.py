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
TIER_ORDER = [
    "under 20 GiB", "20-28 GiB", "28-40 GiB", "40-64 GiB", "64-100 GiB", "100-200 GiB", "200 GiB and up", "multi-card",
]  # fmt: skip


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


def test_tiers_by_usable_memory_hold_every_catalog_card() -> None:
    """Tiers are read off usable GiB (nvidia-smi's MiB / 1024): each card's memory lies inside its
    tier's bounds, and every card has one (the B300's 288 GiB is not in a 96-192 tier)."""
    from vramcalc.core.estimate import usable_gpu_bytes
    from vramcalc.core.recommend import TIERS

    for gpu in GPUS:
        name = tier_of(gpu)
        [(low, high)] = [(lo, hi) for n, lo, hi in TIERS if n == name]
        assert low <= usable_gpu_bytes(gpu)[0] / 2**30 < high, gpu.id
    assert tier_of(CAT.gpus.get("rtx-4090")) == "20-28 GiB"  # 24,564 MiB = 23.99 GiB
    assert tier_of(CAT.gpus.get("l40s")) == "40-64 GiB"
    assert tier_of(CAT.gpus.get("h100-sxm")) == "64-100 GiB"
    assert tier_of(CAT.gpus.get("b300")) == "200 GiB and up"


def test_reference_scenario_one_24gb_card() -> None:
    """Gemma-2-27B 4-bit at 4096 tokens: one RTX 4090 serves 1-2 users comfortably, not 10."""
    o = evaluate(Request(GEMMA, 10), CAT.gpus.get("rtx-4090"), 1, "single")
    assert 1 <= o.max_users <= 2
    assert not o.serves and o.assessment.verdict == "queues"


@pytest.mark.parametrize(
    ("users", "objective", "pick"),
    [
        # cost: the cheapest serving option among the catalog's priced cards; four 16 GB cards in
        # tensor parallel ($499 each) undercut one 48 GB card ($3,999). For 20, eight of them no
        # longer keep 10 tokens/s: GeForce cards have no P2P, so every all-reduce crosses host
        # memory (SHM_ALL_REDUCE_GBS); four 24 GB RX 7900 XTX ($999 each) do.
        (10, "cost", ("rtx-4060-ti-16gb", 4, "tensor-parallel")),
        (20, "cost", ("rx-7900-xtx", 4, "tensor-parallel")),
        # gpus: one card; the cheapest that serves 10 is the 48 GB W7900 ($3,999), 20 need the
        # 96 GB RTX PRO 6000 ($8,565), not the $27,500 H100 that serves 32
        (10, "gpus", ("radeon-pro-w7900", 1, "single")),
        (20, "gpus", ("rtx-pro-6000-blackwell", 1, "single")),
        # speed: the fastest per-user decode the catalog offers within 8 GPUs
        (10, "speed", ("b200", 8, "replicas")),
    ],
)
def test_guide_scenarios_per_objective(users: int, objective: str, pick: tuple[str, int, str]) -> None:
    r = recommend(Request(GEMMA, users), GPUS, objective=objective)  # type: ignore[arg-type]
    c = r.choice
    assert c is not None and (c.gpu.id, c.count, c.layout) == pick
    assert c.assessment.passes and c.assessment.users_at_once == users
    serving = [o for o in r.options if o.serves]
    if objective == "cost":
        priced = [o.cost_usd for o in serving if o.cost_usd is not None]
        assert c.cost_usd == min(priced)
    if objective == "gpus":
        assert c.count == min(o.count for o in serving)
    if objective == "speed":
        best = max(o.assessment.decode_tokens_per_s_per_user or 0 for o in serving)
        assert c.assessment.decode_tokens_per_s_per_user == best


def test_make_my_4090_work() -> None:
    """--gpu rtx-4090 for 10 users: the fix search's levers on one card come first (Ollama with
    Q4_K_M and a q4_0 KV cache fits: $1,599, or $0 when the card is owned), then 2 cards in TP."""
    from vramcalc.core.recommend import Filters

    r = recommend(Request(GEMMA, 10), GPUS, filters=Filters(gpus=("rtx-4090",)))
    c = r.choice
    assert c is not None and c.count == 1
    assert c.changes == {"engine": "ollama", "quant": "Q4_K_M", "bits": None, "kv_dtype": "q4_0"}
    assert c.cost_usd == 1599 and c.assessment.verdict == "fits"
    owned = recommend(Request(GEMMA, 10), GPUS, filters=Filters(gpus=("rtx-4090",), have=(("rtx-4090", 1),)))
    assert owned.choice is not None and owned.choice.cost_usd == 0
    two = next(o for o in owned.options if o.count == 2 and o.layout == "tensor-parallel")
    assert two.cost_usd == 1599 and two.price_usd == 2 * 1599  # only the added card is paid for
    where, fixes = r.remedies[0]
    assert where == "1 x rtx-4090" and any("kv_dtype: q4_0" in f.change for f in fixes)


def test_max_gpus_one_is_respected_by_every_fix() -> None:
    r = recommend(Request(GEMMA, 4, max_gpus=1), GPUS)
    assert all(o.count == 1 for o in r.options)
    for _, fixes in r.remedies:
        assert all(f.assessment.deployment.count == 1 for f in fixes)


def test_fp8_kv_only_where_fp8_runs() -> None:
    """No FP8 tensor cores on an RTX 3090: an fp8 KV ask is not offered there (and says why)."""
    r = recommend(Request(GEMMA, 4, kv_dtype="fp8"), GPUS)
    assert all(o.gpu.fp8_dense_tflops is not None for o in r.options)
    assert any("rtx-3090 has no FP8 tensor cores" in note for note in r.assumptions)


def test_every_option_is_the_estimate_assessment() -> None:
    """Each option's assessment equals the one `estimate --gpu` makes of the same deployment."""
    from vramcalc.core.assess import assess

    r = recommend(Request(GEMMA, 10), [CAT.gpus.get(g) for g in ("rtx-4090", "l40s", "rtx-5090")])
    for o in r.options:
        assert o.assessment == assess(Request(GEMMA, 10).on(o.gpu, o.count, o.layout))


def test_the_recommendation_fits_its_own_estimate() -> None:
    r = recommend(Request(GEMMA, 12), GPUS)
    o = r.choice
    assert o is not None
    a = o.assessment
    assert a.users == 12 and a.verdict == "fits" and a.users_at_once == 12
    assert a.demand_bytes <= 0.9 * o.usable_bytes
    assert a.kv_pool_bytes is not None and a.kv_bytes <= a.kv_pool_bytes


@settings(max_examples=3, deadline=None)
@given(st.integers(min_value=1, max_value=30))
def test_more_users_never_pick_a_cheaper_option(users: int) -> None:
    """What serves more users serves fewer, so the cheapest pick never gets cheaper with more users."""
    a = recommend(Request(GEMMA, users), GPUS).choice
    b = recommend(Request(GEMMA, users + 8), GPUS).choice
    assert a is not None and a.cost_usd is not None
    if b is not None and b.cost_usd is not None:
        assert b.cost_usd >= a.cost_usd


def test_parse_users() -> None:
    from vramcalc.core.recommend import parse_users

    assert parse_users("10") == (10,)
    assert parse_users("20,5,10") == (5, 10, 20)
    assert parse_users("10-20") == (10, 12, 15, 18, 20)  # 5 points: 10 + round(i x 10 / 4)
    assert parse_users("3-4") == (3, 4)


def test_json_keys_and_exit_zero(run_cli: Run) -> None:
    r = run_cli("recommend", "--users", "20", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    rec = d["recommendation"]
    for key in ("gpu", "count", "layout", "max_users", "per_user_tokens_per_s", "ttft_s"):
        assert key in rec
    assert rec["gpu"] == "rx-7900-xtx" and rec["max_users"] >= 20 and d["objective"] == "cost"
    assert rec["usd_per_user"] == round(rec["price_usd"] / rec["max_users"], 2)
    assert [t["tier"] for t in d["tiers"]] == TIER_ORDER
    assert all(o["fits"] for o in d["options"] if not o.get("nearest_not_serving"))
    assert {"gpu", "count", "layout", "tier", "max_users", "price_usd", "usd_per_user", "assessment"} <= set(
        d["options"][0]
    )
    assert all(
        {"tier", "gpu", "count", "layout", "max_users", "fits"} <= set(t) for t in d["tiers"] if t["gpu"]
    )
    assert d["scenario"]["default_scenario"] is True


def test_nothing_serves_exits_1(run_cli: Run) -> None:
    """DeepSeek-V3 in bf16 (1.3 TB) on at most one GPU: nothing in the catalog holds it."""
    r = run_cli("recommend", "deepseek-v3", "--users", "4", "--bits", "16", "--max-gpus", "1")
    assert r.exit_code == 1
    assert "Nothing in the catalog serves 4 users within 1 GPU." in " ".join(r.stdout.split())


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
        (("--users", "0"), {}, "--users must be positive integers"),
        (("--users", "ten"), {}, "--users 'ten': give a count (10), a list (5,10,20) or a range"),
        (("--vendor", "nvdia"), {}, "unknown --vendor 'nvdia'; choose nvidia, amd, apple, intel"),
        (("--optimize", "price"), {}, "unknown --optimize 'price'; choose cost, speed, gpus"),
        (("--gpu", "rtx-4900"), {}, "unknown GPU 'rtx-4900'"),
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
    assert "Recommendation (cost):" in table.stdout and "built-in default scenario" in table.stdout


def test_users_range_shows_how_the_pick_changes(run_cli: Run) -> None:
    """--users 10-20 --optimize gpus: one 48 GB card up to 15 users, the 96 GB card from 18."""
    d = json.loads(run_cli("recommend", "--users", "10-20", "--optimize", "gpus", "--json").stdout)
    picks = [(row["users"], row["recommendation"]["gpu"]) for row in d["by_users"]]
    assert picks == [
        (10, "radeon-pro-w7900"),
        (12, "radeon-pro-w7900"),
        (15, "rtx-a6000"),
        (18, "rtx-pro-6000-blackwell"),
        (20, "rtx-pro-6000-blackwell"),
    ]
    table = run_cli("recommend", "--users", "10-20", "--optimize", "gpus").stdout
    assert "The pick by number of users" in table
