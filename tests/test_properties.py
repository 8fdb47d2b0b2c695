"""Layer 3: properties that must hold for every model and workload (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from vramcalc.catalog import Catalog
from vramcalc.core.estimate import Workload, weight_bytes
from vramcalc.core.formats import resolve_format
from vramcalc.core.kv import kv_bytes_per_token, kv_cache_bytes
from vramcalc.core.scenario import run

CATALOG = Catalog()
MODEL_IDS = sorted(p.stem for p in (ROOT / "models").glob("*.yaml"))
models = st.sampled_from(MODEL_IDS).map(CATALOG.models.get)
ctxs = st.integers(min_value=1, max_value=131_072)
users = st.integers(min_value=1, max_value=256)

# Nominal width order within each family of formats: fewer bits must never store more bytes.
GGUF_BY_BITS = ["Q3_K_M", "IQ4_XS", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16"]
DENSE_BY_BITS = ["nf4", "awq-int4", "gptq-int4", "fp8", "bf16"]


@settings(max_examples=60, deadline=None)
@given(models, ctxs, users, st.sampled_from(["bf16", "fp8"]))
def test_more_users_never_need_less_memory(m, ctx, n, kv) -> None:  # type: ignore[no-untyped-def]
    ctx = min(ctx, m.max_position_embeddings)
    fewer = run(m, Workload(ctx, n), kv_dtype=kv).estimate
    more = run(m, Workload(ctx, n + 1), kv_dtype=kv).estimate
    assert more.total_bytes >= fewer.total_bytes
    assert more.kv.bytes >= fewer.kv.bytes
    totals = [row.total_bytes for row in more.by_users]
    assert totals == sorted(totals)


def _k_quant_rows(m) -> bool:  # type: ignore[no-untyped-def]
    widths = [m.hidden_size, m.intermediate_size, m.num_attention_heads * m.head_dim]
    if m.moe:
        widths.append(m.moe.expert_intermediate_size)
    return all(w % 256 == 0 for w in widths)


@settings(max_examples=40, deadline=None)
@given(models)
def test_fewer_bits_never_more_weight_bytes(m) -> None:  # type: ignore[no-untyped-def]
    """Holds for dense formats always, and for GGUF mixes when every row fits 256-value K-quant
    blocks; otherwise llama.cpp's fallbacks can make a Q3_K_M file larger than Q4_0 (see
    test_formulas.test_k_quant_fallback_can_invert_the_order)."""
    orders = [DENSE_BY_BITS] + ([GGUF_BY_BITS] if _k_quant_rows(m) else [])
    for order in orders:
        sizes = [weight_bytes(m, resolve_format(f)).checkpoint_bytes for f in order]
        assert sizes == sorted(sizes), dict(zip(order, sizes, strict=True))


@settings(max_examples=80, deadline=None)
@given(models, ctxs, users)
def test_windowed_kv_never_exceeds_full_attention(m, ctx, n) -> None:  # type: ignore[no-untyped-def]
    """Windows only ever cap a layer: KV <= users x ctx x bytes-per-token-with-every-layer-full."""
    use = kv_cache_bytes(m, "bf16", ctx, n)
    assert use.bytes <= n * ctx * kv_bytes_per_token(m, "bf16")
    if m.layer_pattern.kind == "all_global":
        assert use.bytes == n * ctx * kv_bytes_per_token(m, "bf16")


@settings(max_examples=60, deadline=None)
@given(models, ctxs, users, st.data())
def test_shared_prefix_and_fill_only_reduce_kv(m, ctx, n, data) -> None:  # type: ignore[no-untyped-def]
    prefix = data.draw(st.integers(min_value=0, max_value=ctx))
    assert kv_cache_bytes(m, "bf16", ctx, n, prefix).bytes <= kv_cache_bytes(m, "bf16", ctx, n).bytes
    fill = data.draw(st.floats(min_value=0.01, max_value=1.0))
    ctx = min(ctx, m.max_position_embeddings)
    assert run(m, Workload(ctx, n, fill=fill)).estimate.kv.bytes <= run(m, Workload(ctx, n)).estimate.kv.bytes


@settings(max_examples=40, deadline=None)
@given(models, ctxs, users)
def test_total_is_the_sum_of_its_terms(m, ctx, n) -> None:  # type: ignore[no-untyped-def]
    ctx = min(ctx, m.max_position_embeddings)
    e = run(m, Workload(ctx, n, workers=2), quant="awq-int4", kv_dtype="fp8").estimate
    assert e.total_bytes == sum(t.bytes for t in e.terms)
    assert e.by_users[-1].total_bytes == e.total_bytes
