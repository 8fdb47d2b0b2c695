"""The one assessment: identical from estimate, check and recommend; queue and offload by hand; properties."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import CliResult
from vramcalc.catalog import Catalog
from vramcalc.core.assess import VERDICTS, Assessment, Deployment, LayoutKind, Request, assess
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.recommend import evaluate
from vramcalc.core.speed import HOST_MEMORY_BANDWIDTH_GBS, speed
from vramcalc.render.assessment import assessment_dict

Run = Callable[..., CliResult]
CATALOG = Catalog()

# --- layer 5: one assessment, three commands --------------------------------------------------------

ENGINES = ("vllm", "sglang", "tgi", "transformers", "llama.cpp", "ollama")
GGUF_ENGINES = frozenset({"llama.cpp", "ollama"})
# Per card, two models sized near its memory (bits; None = the checkpoint's own bf16), so that some
# deployments fit and some queue, offload, do not start or do not fit.
MODELS_BY_GPU: dict[str, tuple[tuple[str, int | None], tuple[str, int | None]]] = {
    "rtx-4090": (("gemma-2-27b", 4), ("llama-3.1-8b", None)),
    "rtx-3090": (("qwen2.5-7b", None), ("gemma-2-27b", 4)),
    "l40s": (("llama-3.1-70b", 4), ("gemma-2-27b", 16)),
    "h100-sxm": (("llama-3.1-70b", 8), ("gemma-2-27b", 16)),
    "a100-80gb-sxm": (("gemma-2-27b", 16), ("llama-3.1-70b", 4)),
}
LOADS = tuple((users, ctx) for users in (1, 3, 12) for ctx in (2048, 8192))


@dataclass(frozen=True)
class Case:
    model: str
    bits: int | None
    engine: str
    gpu: str
    users: int
    ctx: int
    output_tokens: int | None = None
    host_bandwidth_gbs: float | None = None
    kv_dtype: str = "auto"
    fill: float = 1.0
    shared_prefix: int = 0
    workers: int = 1
    max_num_seqs: int | None = None
    tp: int = 1

    # The optional fields as (plan key, estimate flag, value), those set only.
    def _options(self) -> list[tuple[str, str, object]]:
        options: list[tuple[str, str, object]] = [
            ("output_tokens", "--output-tokens", self.output_tokens),
            ("host_bandwidth_gbs", "--host-bandwidth", self.host_bandwidth_gbs),
            ("kv_dtype", "--kv-dtype", None if self.kv_dtype == "auto" else self.kv_dtype),
            ("fill", "--fill", None if self.fill == 1.0 else self.fill),
            ("shared_prefix", "--shared-prefix", self.shared_prefix or None),
            ("workers", "--workers", None if self.workers == 1 else self.workers),
        ]
        return [(key, flag, value) for key, flag, value in options if value is not None]

    @property
    def id(self) -> str:
        extra = "".join(f"-{key}={value}" for key, _, value in self._options())
        extra += (f"-seqs={self.max_num_seqs}" if self.max_num_seqs else "") + (
            f"-tp{self.tp}" if self.tp > 1 else ""
        )
        return f"{self.model}-b{self.bits}-{self.engine}-{self.gpu}-u{self.users}-c{self.ctx}{extra}"

    def plan_yaml(self) -> str:
        lines = ["deployments:", f"  - model: {self.model}"]
        lines += [f"    bits: {self.bits}"] if self.bits else []
        lines += [f"    engine: {self.engine}", f"    gpu: {self.gpu}", f"    ctx: {self.ctx}"]
        lines += [f"    users: {self.users}", "    headroom: 0"]
        lines += [f"    {key}: {value}" for key, _, value in self._options()]
        lines += ["    settings:", f"      max_num_seqs: {self.max_num_seqs}"] if self.max_num_seqs else []
        lines += [f"    gpu_count: {self.tp}", "    layout: tensor-parallel"] if self.tp > 1 else []
        return "\n".join(lines) + "\n"

    def estimate_args(self) -> list[str]:
        args = ["estimate", self.model, "--gpu", self.gpu, "--users", str(self.users), "--ctx", str(self.ctx)]
        args += ["--engine", self.engine, "--json"]
        args += ["--bits", str(self.bits)] if self.bits else []
        for _, flag, value in self._options():
            args += [flag, str(value)]
        args += ["--max-num-seqs", str(self.max_num_seqs)] if self.max_num_seqs else []
        args += ["--tp", str(self.tp)] if self.tp > 1 else []
        return args

    def request(self) -> Request:
        return Request(
            model=CATALOG.models.get(self.model),
            users=self.users,
            ctx_tokens=self.ctx,
            engine=self.engine,
            bits=self.bits,  # Request defaults to 4: pass the plan's width (None: the checkpoint's)
            kv_dtype=self.kv_dtype,
            fill=self.fill,
            shared_prefix_tokens=self.shared_prefix,
            headroom=0.0,
            min_tokens_per_s=0.0,
            workers=self.workers,
            output_tokens=self.output_tokens,
            host_bandwidth_gbs=self.host_bandwidth_gbs or HOST_MEMORY_BANDWIDTH_GBS,
            settings=EngineSettings(max_num_seqs=self.max_num_seqs),
        )

    def assessment(self) -> Assessment:
        layout: LayoutKind = "tensor-parallel" if self.tp > 1 else "single"
        return evaluate(self.request(), CATALOG.gpus.get(self.gpu), self.tp, layout).assessment


def _cases() -> list[Case]:
    """Every engine x five cards x two of the six (users, ctx) loads, rotated so each engine meets
    every load; llama.cpp and Ollama serve GGUF only, so a 16-bit (or checkpoint) width becomes
    Q8_0 there (a PyTorch checkpoint is a one-line error on those engines)."""
    out: list[Case] = []
    for e_i, engine in enumerate(ENGINES):
        for g_i, (gpu, models) in enumerate(MODELS_BY_GPU.items()):
            for k, (model, bits) in enumerate(models):
                users, ctx = LOADS[(e_i + 2 * g_i + 3 * k) % len(LOADS)]
                if engine in GGUF_ENGINES and bits in (None, 16):
                    bits = 8
                out.append(Case(model, bits, engine, gpu, users, ctx))
    # The other workload options and engine settings, one at a time, through all three commands.
    out += [
        Case("llama-3.1-70b", 4, "llama.cpp", "rtx-4090", 1, 8192, host_bandwidth_gbs=100.0),
        Case("gemma-2-27b", 4, "ollama", "rtx-4090", 12, 2048, host_bandwidth_gbs=80.0),
        Case("gemma-2-27b", 4, "vllm", "rtx-4090", 12, 8192, output_tokens=256),
        Case("llama-3.1-8b", None, "sglang", "rtx-4090", 12, 2048, output_tokens=1000),
        Case("gemma-2-27b", 4, "vllm", "rtx-4090", 10, 4096, kv_dtype="fp8"),
        Case("gemma-2-27b", 4, "llama.cpp", "rtx-4090", 6, 4096, kv_dtype="q8_0"),
        Case("llama-3.1-8b", None, "tgi", "rtx-4090", 12, 4096, fill=0.5),
        Case("llama-3.1-8b", None, "sglang", "l40s", 12, 8192, shared_prefix=1000),
        Case("llama-3.1-8b", None, "transformers", "l40s", 3, 4096, workers=2),
        Case("llama-3.1-8b", 8, "ollama", "rtx-3090", 3, 8192, max_num_seqs=2),
        Case("llama-3.1-70b", 4, "vllm", "l40s", 30, 8192, tp=2),
    ]
    return out


CASES = _cases()


def test_the_suite_is_large_and_covers_every_verdict() -> None:
    """At least 40 deployments, every engine, and between them every kind of verdict."""
    assert len(CASES) >= 40
    assert {c.engine for c in CASES} == set(ENGINES)
    assert set(LOADS) <= {(c.users, c.ctx) for c in CASES}
    verdicts = {c.assessment().verdict for c in CASES}
    assert verdicts == set(VERDICTS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_estimate_check_and_recommend_give_one_assessment(case: Case, run_cli: Run, tmp_path: Path) -> None:
    """`check` on a plan file, `estimate --gpu` with the same flags and recommend's evaluate() print
    the same `assessment` object, key for key, and exit alike (0 passes, 1 does not)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(case.plan_yaml())
    checked = run_cli("check", str(plan), "--format", "json")
    estimated = run_cli(*case.estimate_args())
    assert checked.exit_code in (0, 1), checked.stderr
    assert estimated.exit_code in (0, 1), estimated.stderr
    [deployment] = json.loads(checked.stdout)["deployments"]
    from_check = deployment["assessment"]
    from_estimate = json.loads(estimated.stdout)["assessment"]
    from_recommend = assessment_dict(case.assessment())
    assert from_check == from_recommend
    assert from_estimate == from_recommend
    expected_code = 0 if from_recommend["passes"] else 1
    assert (checked.exit_code, estimated.exit_code) == (expected_code, expected_code)


# --- layer 1: the queue and the offload by hand ------------------------------------------------------


def test_ten_users_queue_on_a_4090_by_hand() -> None:
    """Gemma-2-27B awq-int4 on vLLM 0.33 (sized before warmup; 0.34's sizing is in
    test_engines), one RTX 4090, 10 users x 4,096 tokens, 512 output tokens (the default): the
    pool holds 2 of the 10, 8 wait.

    Step (memory-bound): (weights 15,895,135,232 + 2 running x 1,543,503,872 KV) / (1,008 GB/s x 0.98)
    + 46 layers x 85.6 us = 0.0192158072 + 0.0039376 = 0.0231534072 s; the prompt tokens that
    ride in a step add compute, not bytes, so the step stays memory-bound at that figure.
    Per user: 1 / step = 43.190188 tokens/s (the two running stream at the batch's speed).
    Closed loop (core.serving): latency L = TTFT in the engine + 511 x step; the 8 beyond the
    running 2 wait W = (10 - 2) / 2 x L = 4 L = 57.350223 s; TTFT seen = engine TTFT + W.
    """
    gemma, rtx4090 = CATALOG.models.get("gemma-2-27b"), CATALOG.gpus.get("rtx-4090")
    a = assess(Deployment(gemma, rtx4090, 10, 4096, engine="vllm@0.33", bits=4))
    assert (a.verdict, a.users_at_once, a.deployment.output) == ("queues", 2, 512)
    assert a.speed is not None and a.serving is not None and a.ttft_s is not None and a.wait_s is not None
    step = a.speed.step_s
    assert step == pytest.approx(
        (15_895_135_232 + 2 * 1_543_503_872) / (1008e9 * 0.98) + 46 * 85.6e-6, rel=1e-9
    )
    assert step == pytest.approx(0.0231534072, rel=1e-9)
    assert a.serving.tpot_s == pytest.approx(step, rel=1e-9)
    assert a.decode_tokens_per_s_per_user == pytest.approx(43.190188, rel=1e-7)
    engine_ttft = a.ttft_s - a.wait_s
    assert a.wait_s == pytest.approx(4 * (engine_ttft + 511 * step), rel=1e-9)
    assert a.wait_s == pytest.approx(57.350223, rel=1e-7)
    assert a.aggregate_tokens_per_s == pytest.approx(2 * 512 / (engine_ttft + 511 * step), rel=1e-9)
    assert [m.kind for m in a.misses] == ["queue"]


LLAMA_70B_ON_4090 = Deployment(
    CATALOG.models.get("llama-3.1-70b"), CATALOG.gpus.get("rtx-4090"), 1, 8192, engine="llama.cpp", bits=4
)


def test_seventy_b_offloads_on_a_4090_by_hand() -> None:
    """Llama-3.1-70B Q4_K_M on llama.cpp, one RTX 4090, 1 user x 8,192 tokens: --fit keeps 43 of
    81 layers on the GPU (view figures), the rest is read from host memory every token.

    Weights 41,921,527,808 - model buffer on the GPU 22,038,740,992 = 19,882,786,816 B;
    KV 2,684,354,560 - KV buffer on the GPU 1,442,840,576 = 1,241,513,984 B;
    offloaded = 19,882,786,816 + 1,241,513,984 = 21,124,300,800 B.
    Step: GPU part (22,038,740,992 + 1,442,840,576) / (1,008 GB/s x 0.746) + 80 layers x 39.5 us
    = 0.0312268362 + 0.00316 = 0.0343868362 s; host part 21,124,300,800 / 50e9 = 0.4224860160 s;
    step 0.4568728522 s, decode 1 / step = 2.1887928 tokens/s.
    """
    a = assess(LLAMA_70B_ON_4090)
    e, view = a.scenario.estimate, a.scenario.view
    assert view is not None
    model_gpu, kv_gpu = view.value("model_buffer_bytes"), view.value("kv_buffer_bytes")
    assert isinstance(model_gpu, int) and isinstance(kv_gpu, int)
    assert a.verdict == "offloads"
    assert a.offloaded_bytes == (e.weights_bytes - model_gpu) + (e.kv.bytes - kv_gpu)
    assert (e.weights_bytes, model_gpu, e.kv.bytes, kv_gpu) == (
        41_921_527_808,
        22_038_740_992,
        2_684_354_560,
        1_442_840_576,
    )
    assert a.offloaded_bytes == 21_124_300_800
    assert a.speed is not None
    gpu_part = (22_038_740_992 + 1_442_840_576) / (1008e9 * 0.746) + 80 * 39.5e-6
    assert a.speed.step_s == pytest.approx(gpu_part + 21_124_300_800 / 50e9, rel=1e-9)
    assert a.decode_tokens_per_s_per_user == pytest.approx(1 / a.speed.step_s, rel=1e-9)
    assert a.decode_tokens_per_s_per_user == pytest.approx(2.1887928, rel=1e-7)
    assert [m.kind for m in a.misses] == ["offload"]


def test_the_offload_cliff_and_host_bandwidth() -> None:
    """The same 70B all on an H100 SXM (nothing offloaded) decodes more than ten times faster.

    Only the host part of the step depends on --host-bandwidth: step(50) - step(100) =
    21,124,300,800 x (1/50e9 - 1/100e9) = 0.2112430080 s, step(50) - step(200) = 0.3168645120 s;
    and assess passes exactly its host bytes to core.speed (same Speed value).
    """
    a = assess(LLAMA_70B_ON_4090)
    on_h100 = assess(replace(LLAMA_70B_ON_4090, gpu=CATALOG.gpus.get("h100-sxm")))
    assert (on_h100.verdict, on_h100.offloaded_bytes) == ("fits", 0)
    assert a.decode_tokens_per_s_per_user is not None and on_h100.decode_tokens_per_s_per_user is not None
    assert a.decode_tokens_per_s_per_user < on_h100.decode_tokens_per_s_per_user / 10

    faster = assess(replace(LLAMA_70B_ON_4090, host_bandwidth_gbs=100.0))
    fastest = assess(replace(LLAMA_70B_ON_4090, host_bandwidth_gbs=200.0))
    assert a.speed is not None and faster.speed is not None and fastest.speed is not None
    assert faster.decode_tokens_per_s_per_user is not None
    assert faster.decode_tokens_per_s_per_user > a.decode_tokens_per_s_per_user
    assert faster.offloaded_bytes == a.offloaded_bytes  # the bandwidth moves no layer
    assert a.speed.step_s - faster.speed.step_s == pytest.approx(0.2112430080, rel=1e-9)
    assert a.speed.step_s - fastest.speed.step_s == pytest.approx(0.3168645120, rel=1e-9)

    e = a.scenario.estimate
    direct = speed(
        e,
        LLAMA_70B_ON_4090.gpu,
        1,
        prompt_tokens=LLAMA_70B_ON_4090.prompt_tokens,
        offloaded_bytes=19_882_786_816,
        host_kv_bytes=1_241_513_984,
        host_bandwidth_gbs=50.0,
    )
    assert direct == a.speed
    no_host = speed(e, LLAMA_70B_ON_4090.gpu, 1, prompt_tokens=LLAMA_70B_ON_4090.prompt_tokens)
    assert no_host.step_s < a.speed.step_s


# --- layer 3: properties over users and context -----------------------------------------------------

GEMMA_ON_4090 = {
    engine: Deployment(
        CATALOG.models.get("gemma-2-27b"), CATALOG.gpus.get("rtx-4090"), 1, 4096, engine=engine, bits=4
    )
    for engine in ("vllm", "llama.cpp")
}
engines = st.sampled_from(sorted(GEMMA_ON_4090))
users = st.integers(min_value=1, max_value=40)
ctxs = st.sampled_from([1024, 2048, 4096, 8192])


def _at(engine: str, n: int, ctx: int) -> Assessment:
    return assess(replace(GEMMA_ON_4090[engine], users=n, ctx_tokens=ctx))


@settings(max_examples=40, deadline=None)
@given(engines, users, ctxs)
@example("vllm", 2, 4096)  # fits -> queues
@example("llama.cpp", 2, 8192)  # fits -> offloads
def test_more_users_never_faster_nor_smaller(engine: str, n: int, ctx: int) -> None:
    """One more user: decode per user never rises; the workload (demand), the KV of all users and
    the footprint (GPU + host bytes) never shrink; passing with n + 1 implies passing with n; no
    more run at once than there are users.

    GPU bytes alone only grow while every layer is on the GPU: once llama.cpp offloads, --fit moves
    whole layers, so the GPU share drops by up to one layer when a user makes layers larger
    (e.g. 8,192 ctx, 27 -> 28 users: 24,109,246,464 -> 22,607,874,048 B on the GPU).
    """
    fewer, more = _at(engine, n, ctx), _at(engine, n + 1, ctx)
    assert (more.decode_tokens_per_s_per_user or 0.0) <= (fewer.decode_tokens_per_s_per_user or 0.0)
    assert more.demand_bytes >= fewer.demand_bytes
    assert more.kv_bytes >= fewer.kv_bytes
    assert more.per_gpu_bytes + more.offloaded_bytes >= fewer.per_gpu_bytes + fewer.offloaded_bytes
    assert more.offloaded_bytes >= fewer.offloaded_bytes
    if more.offloaded_bytes == 0:
        assert more.per_gpu_bytes >= fewer.per_gpu_bytes
    assert not more.passes or fewer.passes
    assert fewer.users_at_once <= n and more.users_at_once <= n + 1


@settings(max_examples=30, deadline=None)
@given(engines, users, st.sampled_from([1024, 2048, 4096]))
@example("vllm", 9, 1024)  # 9 running at 1,024 tokens, 4 at 2,048
def test_longer_context_never_faster_nor_smaller(engine: str, n: int, ctx: int) -> None:
    """Twice the context: the first token never comes sooner; while as many run at once, decode
    per user never rises (with fewer running, each running stream may be faster: the others
    wait); the KV of all users and the footprint never shrink; fewer (never more) run at once;
    passing at 2 x ctx implies passing at ctx.

    Demand counts the KV of the users running at once, so a queue whose batch halves while each
    user's KV doubles can need less (vLLM, 9 users: 1,024 -> 2,048 tokens, 9 -> 4 running,
    23,130,697,605 -> 22,744,821,637 B); it never shrinks while everyone runs.
    """
    short, long = _at(engine, n, ctx), _at(engine, n, 2 * ctx)
    if long.users_at_once == short.users_at_once:
        assert (long.decode_tokens_per_s_per_user or 0.0) <= (short.decode_tokens_per_s_per_user or 0.0) * (
            1 + 1e-9
        )
    if long.ttft_s is not None and short.ttft_s is not None:
        assert long.ttft_s >= short.ttft_s * (1 - 1e-9)
    assert long.kv_bytes >= short.kv_bytes
    assert long.per_gpu_bytes + long.offloaded_bytes >= short.per_gpu_bytes + short.offloaded_bytes
    assert long.users_at_once <= short.users_at_once
    if long.users_at_once == n:
        assert long.demand_bytes >= short.demand_bytes
    if long.offloaded_bytes == 0:
        assert long.per_gpu_bytes >= short.per_gpu_bytes
    assert not long.passes or short.passes


# --- layer 5: bad input, one line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "option"),
    [
        (["--output-tokens", "5000"], "--output-tokens"),
        (["--output-tokens", "0"], "--output-tokens"),
        (["--host-bandwidth", "-5"], "--host-bandwidth"),
        (["--host-bandwidth", "nan"], "--host-bandwidth"),
    ],
    ids=["output-above-ctx", "output-zero", "host-negative", "host-nan"],
)
def test_bad_estimate_options_are_one_line(flags: list[str], option: str, run_cli: Run) -> None:
    """Exit 2, nothing on stdout, one line on stderr that names the option (ctx is 4,096)."""
    r = run_cli("estimate", "gemma-2-27b", "--gpu", "rtx-4090", *flags)
    assert r.exit_code == 2
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith("vramcalc: error: ") and option in line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output_tokens", "5000"),
        ("output_tokens", "0"),
        ("host_bandwidth_gbs", "-5"),
        ("host_bandwidth_gbs", ".nan"),
    ],
    ids=["output-above-ctx", "output-zero", "host-negative", "host-nan"],
)
def test_bad_plan_fields_are_one_line(field: str, value: str, run_cli: Run, tmp_path: Path) -> None:
    """The same values in a plan file: exit 2, nothing on stdout, one line naming the field."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        Case("gemma-2-27b", 4, "vllm", "rtx-4090", 1, 4096).plan_yaml() + f"    {field}: {value}\n"
    )
    r = run_cli("check", str(plan), "--format", "json")
    assert r.exit_code == 2
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert f"deployments.0.{field}" in line


@pytest.mark.parametrize("engine_name", ["vllm", "sglang", "tgi"])
def test_pool_engines_plan_once_per_deployment_whatever_the_user_count(engine_name: str) -> None:
    """vLLM's, SGLang's and TGI's plans and startup views read the context, never the user count
    (their pools are sized before any user arrives), so scenario.run plans a deployment once and
    reuses it for every count the capacity search and the users table ask about; the figures are
    those of a fresh plan. (llama.cpp, Ollama and transformers size slots or a batch by users.)"""
    from vramcalc.core import scenario
    from vramcalc.core.assess import by_users
    from vramcalc.core.engines import get_engine
    from vramcalc.core.estimate import Workload
    from vramcalc.core.formats import resolve_format

    cat = Catalog()
    model, gpu = cat.models.get("qwen3-8b"), cat.gpus.get("l40s")
    engine = get_engine(engine_name)
    assert engine.plan_reads_users is False
    fmt = resolve_format("bf16")
    plans = [
        engine.plan(model, Workload(8192, users), fmt, "bf16", gpu, EngineSettings(), engine.default_version)
        for users in (1, 7, 60)
    ]
    assert plans[0] == plans[1] == plans[2]
    scenario._plan_and_view.cache_clear()
    d = Deployment(
        model=model,
        gpu=gpu,
        users=12,
        count=1,
        layout="single",
        engine=engine_name,
        quant="bf16",
        ctx_tokens=8192,
    )
    rows = by_users(d, list(range(1, 13)))
    info = scenario._plan_and_view.cache_info()
    assert (info.misses, info.hits) == (1, 11)
    fresh = plans[0]
    assert all(a.scenario.estimate.plan == fresh for a in rows)
    assert [a.scenario.estimate.kv.bytes for a in rows] == sorted(
        {a.scenario.estimate.kv.bytes for a in rows}
    )
    for other in ("llama.cpp", "ollama", "transformers"):
        assert get_engine(other).plan_reads_users is True
