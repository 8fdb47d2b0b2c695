"""Serving under load (core/serving.py): hand-computed closed loops and bursts, and properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramcalc.catalog import Catalog
from vramcalc.core.assess import Deployment, assess
from vramcalc.core.serving import Load, serve
from vramcalc.errors import SpecError


@dataclass
class LinearStep:
    """A step that costs `base` + `per_seq` x seqs + `per_token` x prompt tokens (seconds)."""

    base: float
    per_seq: float
    per_token: float
    e: object = field(default_factory=lambda: SimpleNamespace(plan=SimpleNamespace(engine="test")))

    def step_s(self, seqs: float, prefill_tokens: float = 0.0, prompt_tokens: int | None = None) -> float:
        return self.base + self.per_seq * seqs + self.per_token * prefill_tokens


def test_one_user_closed_loop_by_hand() -> None:
    """One user, 100-token prompts, 11 output tokens, step = 10 ms + 1 ms/seq + 0.1 ms/prompt token,
    no request overhead.

    TTFT: R = 1, room = 1000 - 0 = 1000 >= 100, one chunk; no one else runs, so no wait:
    step(0, 100) = 0.010 + 0.0100 = 0.020 s.
    Decode: latency L = 0.020 + 10 s; prompt tokens per step q = 1 x 100 x s / L.
    Fixed point s = 0.011 + 0.0001 x 100 s / (0.020 + 10 s): s = 0.011 + 0.01 s / (0.02 + 10 s).
    With s = 0.0113: 0.01 x 0.0113 / 0.133 = 0.000849... -> 0.011849; iterate to s* where
    s = 0.011 + 0.01 s / (0.02 + 10 s): 10 s^2 + 0.02 s = 0.00022 + 0.11 s + 0.0002 s... solved
    numerically below with the same equation, and output/s = 11 / (0.02 + 10 s).
    """
    srv = serve(LinearStep(0.010, 0.001, 0.0001), Load(1, 100, 11, 8, 1000), overhead_s=0.0)  # type: ignore[arg-type]
    s = 0.011
    for _ in range(200):
        s = 0.011 + 0.0001 * 100 * s / (0.020 + 10 * s)
    assert srv.ttft_s == pytest.approx(0.020, rel=1e-12)
    assert srv.tpot_s == pytest.approx(s, rel=1e-9)
    assert srv.output_tokens_per_s == pytest.approx(11 / (0.020 + 10 * s), rel=1e-9)
    assert srv.queue_s == 0.0


def test_queue_past_the_running_cap_by_hand() -> None:
    """4 users, 2 run at once (cap), prompts 10 tokens, 3 output tokens, constant 5 ms steps
    (per_seq = per_token = 0), 2 ms request overhead.

    TTFT in the engine: one chunk; half a step's wait when one other runs: 0.5 x 0.005 x 1/2 =
    0.00125; + 0.005 + 0.002 = 0.00825 s. L = 0.00825 + 2 x 0.005 = 0.01825 s; X = 2 / L.
    Queue W = (4 - 2) / 2 x L = 0.01825 s; TTFT seen = 0.00825 + 0.01825 = 0.0265 s;
    output = X x 3 = 6 / 0.01825 = 328.767 tokens/s.
    """
    srv = serve(LinearStep(0.005, 0.0, 0.0), Load(4, 10, 3, 2, 100), overhead_s=0.002)  # type: ignore[arg-type]
    assert srv.running == 2
    assert srv.queue_s == pytest.approx(0.01825, rel=1e-12)
    assert srv.ttft_s == pytest.approx(0.0265, rel=1e-12)
    assert srv.output_tokens_per_s == pytest.approx(6 / 0.01825, rel=1e-12)
    assert srv.request_per_s == pytest.approx(2 / 0.01825, rel=1e-12)


def test_burst_by_hand() -> None:
    """3 requests at once, 4-token prompts, 2 output tokens, budget 5 tokens a step, cap 3,
    step = 1 s + 1 s per prompt token (per_seq 0), no overhead.

    Step 1: no one decodes; prompts A (4) + 1 of B -> 5 tokens: 6 s; A's first token at 6.
    Step 2: A decodes (1), room 4: 3 of B + 1 of C: 5 s, t = 11; B first at 11; A ends (its
    last token is step 1 + 2 - 1 = 2) at 11.
    Step 3: B decodes, room 4: 3 of C: 4 s, t = 15; C first at 15; B ends at 15.
    Step 4: C decodes, nothing to prefill: 1 s, t = 16; C ends at 16.
    Medians: TTFT 11; TPOT (end - first) / 1: A 5, B 4, C 1 -> 4; output 3 x 2 / 16.
    """
    srv = serve(LinearStep(1.0, 0.0, 1.0), Load(3, 4, 2, 3, 5, "burst"), overhead_s=0.0)  # type: ignore[arg-type]
    assert srv.ttft_s == pytest.approx(11.0)
    assert srv.tpot_s == pytest.approx(4.0)
    assert srv.e2e_s == pytest.approx(15.0)
    assert srv.output_tokens_per_s == pytest.approx(6 / 16)


def test_burst_with_prompts_apart_by_hand() -> None:
    """The burst of test_burst_by_hand with prompts in steps of their own (SGLang): 3 requests,
    4-token prompts, 2 output tokens, budget 5, step = 1 s + 1 s per prompt token.

    Step 1 prefills A (4) + 1 of B: 6 s; A's first token at 6. Step 2 prefills the rest of B (3)
    and 2 of C: 6 s, t = 12; B first at 12; nobody decodes while prompts wait. Step 3 prefills
    C's last 2: 3 s, t = 15; C first at 15. Step 4 decodes A, B and C: 1 s, t = 16; all end.
    Medians: TTFT 12; TPOT (end - first) / 1: A 10, B 4, C 1 -> 4; output 3 x 2 / 16."""
    srv = serve(
        LinearStep(1.0, 0.0, 1.0), Load(3, 4, 2, 3, 5, "burst", separate_prefill=True), overhead_s=0.0
    )  # type: ignore[arg-type]
    assert srv.ttft_s == pytest.approx(12.0)
    assert srv.tpot_s == pytest.approx(4.0)
    assert srv.output_tokens_per_s == pytest.approx(6 / 16)


def test_burst_waits_for_places() -> None:
    """A burst of 4 with room for 2: the last two start only when the first two end, so their
    first token comes after two whole requests' time; with constant 1 s steps, prompts of 1 token,
    2 outputs, budget 10: step 1 prefills A and B (t=1), step 2 decodes them and they end (t=2),
    step 3 prefills C and D (t=3), step 4 ends them (t=4). Median TTFT = (1 + 3) / 2 = 2."""
    srv = serve(LinearStep(1.0, 0.0, 0.0), Load(4, 1, 2, 2, 10, "burst"), overhead_s=0.0)  # type: ignore[arg-type]
    assert srv.ttft_s == pytest.approx(2.0)
    assert srv.output_tokens_per_s == pytest.approx(8 / 4)


def test_poisson_arrivals_by_hand() -> None:
    """100 requests at 5 per second (Poisson), 10-token prompts, 11 output tokens, budget 100,
    room for 8, constant 10 ms steps, 2 ms request overhead.

    A request holds its place for one prompt chunk (10 <= 100 - R tokens) + 10 decode steps:
    H = 0.01 + 10 x 0.01 = 0.11 s, so R = 5 x 0.11 = 0.55 run at once on average (under 8).
    TTFT = 0.002 + half a step x min(1, R) + one chunk = 0.002 + 0.005 x 0.55 + 0.01 = 0.01475 s.
    The last request arrives at 99 / 5 = 19.8 s and ends H + 0.002 later: 19.912 s, so
    100 / 19.912 requests/s and 1,100 / 19.912 output tokens/s."""
    srv = serve(LinearStep(0.01, 0.0, 0.0), Load(100, 10, 11, 8, 100, "poisson", 5.0), overhead_s=0.002)  # type: ignore[arg-type]
    assert srv.ttft_s == pytest.approx(0.01475, rel=1e-9)
    assert srv.tpot_s == pytest.approx(0.01, rel=1e-12) and srv.queue_s == 0.0
    assert srv.request_per_s == pytest.approx(100 / 19.912, rel=1e-9)
    assert srv.output_tokens_per_s == pytest.approx(1100 / 19.912, rel=1e-9)


def test_poisson_past_what_the_engine_holds_by_hand() -> None:
    """The same at 100 requests per second with room for 2: R would be 100 x 0.11 = 11 > 2, so
    2 run and they are served at mu = 2 / 0.11 = 18.18 per second; the queue grows all run.
    The median request (i = 50) arrives at 0.5 s and gets a place at (50 - 2) / mu = 2.64 s:
    it waits 2.14 s. TTFT = 2.14 + 0.002 + 0.005 (a whole half step: R >= 1) + 0.01 = 2.157 s.
    The last place frees at (100 - 2) / mu = 5.39 s (after the last arrival, 0.99 s), so the run
    ends at 5.39 + 0.11 + 0.002 = 5.502 s: 1,100 / 5.502 output tokens/s."""
    srv = serve(LinearStep(0.01, 0.0, 0.0), Load(100, 10, 11, 2, 100, "poisson", 100.0), overhead_s=0.002)  # type: ignore[arg-type]
    mu = 2 / 0.11
    assert srv.running == 2
    assert srv.queue_s == pytest.approx(48 / mu - 0.5, rel=1e-9)
    assert srv.ttft_s == pytest.approx(48 / mu - 0.5 + 0.017, rel=1e-9)
    assert srv.output_tokens_per_s == pytest.approx(1100 / (98 / mu + 0.112), rel=1e-9)


def test_prompts_in_steps_of_their_own_by_hand() -> None:
    """SGLang's default (no --enable-mixed-chunk): 4 users in a closed loop, 100-token prompts,
    11 output tokens, budget 1,000, step = 10 ms + 1 ms/seq + 0.1 ms/prompt token, no overhead.

    Decode step s_d = 0.010 + 4 x 0.001 = 0.014 s; a prompt's own step (b = 1: fewer than one
    prompt arrives per decode step) = 0.010 + 100 x 0.0001 = 0.020 s. At x requests/s prefill takes
    0.020 x of the time, so TPOT = 0.014 / (1 - 0.020 x). TTFT = half a decode step while 3 of 4
    others run, 0.5 x 0.014 x 3 / 4 = 0.00525, + 0.020 = 0.02525 s. L = TTFT + 10 TPOT and
    x = 4 / L, iterated below; the mixed step would have carried the prompt tokens instead."""
    srv = serve(
        LinearStep(0.010, 0.001, 0.0001), Load(4, 100, 11, 4, 1000, separate_prefill=True), overhead_s=0.0
    )  # type: ignore[arg-type]
    x = 1.0
    for _ in range(500):
        x = 4 / (0.02525 + 10 * 0.014 / (1 - 0.020 * x))
    assert srv.ttft_s == pytest.approx(0.02525, rel=1e-12)
    assert srv.tpot_s == pytest.approx(0.014 / (1 - 0.020 * x), rel=1e-9)
    assert srv.request_per_s == pytest.approx(x, rel=1e-9)
    assert srv.output_tokens_per_s == pytest.approx(11 * x, rel=1e-9)


@pytest.mark.parametrize(
    ("load", "match"),
    [
        (Load(10, 10, 10, 1, 10, "poisson", 0.0), "request rate"),
        (Load(10, 10, 10, 1, 10, "poisson", float("nan")), "request rate"),
        (Load(0, 10, 10, 1, 10), "--users"),
        (Load(1, 0, 10, 1, 10), "--prompt-tokens"),
        (Load(1, 10, 0, 1, 10), "--output-tokens"),
        (Load(1, 10, 10, 0, 10), "serves nobody"),
        (Load(20_000, 10, 10, 1, 10, "burst"), "at most 10,000"),
    ],
)
def test_bad_loads_are_refused(load: Load, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        serve(LinearStep(1.0, 0.0, 0.0), load)  # type: ignore[arg-type]


CATALOG = Catalog()
GEMMA = CATALOG.models.get("gemma-2-9b")
L40S = CATALOG.gpus.get("l40s")


@settings(max_examples=25, deadline=None)
@given(users=st.integers(1, 40))
def test_per_user_speed_never_rises_with_users(users: int) -> None:
    """One more user never makes anyone's stream faster, and the TTFT never shorter."""
    d = Deployment(GEMMA, L40S, users, 4096, quant="fp8")
    one, more = assess(d), assess(Deployment(GEMMA, L40S, users + 1, 4096, quant="fp8"))
    assert one.serving is not None and more.serving is not None
    assert more.serving.decode_tokens_per_s_per_user <= one.serving.decode_tokens_per_s_per_user * (1 + 1e-9)
    assert more.serving.ttft_s >= one.serving.ttft_s * (1 - 1e-9)


def test_throughput_grows_until_the_compute_crossover() -> None:
    """Aggregate output throughput does not fall as users rise while the step is memory-bound."""
    last = 0.0
    for users in (1, 2, 4, 8, 16, 32):
        a = assess(Deployment(GEMMA, L40S, users, 4096, quant="fp8"))
        assert a.serving is not None and a.speed is not None
        if a.speed.bound == "compute":
            break
        assert a.serving.output_tokens_per_s >= last
        last = a.serving.output_tokens_per_s


@settings(max_examples=20, deadline=None)
@given(prompt=st.integers(1, 3000))
def test_ttft_never_falls_with_a_longer_prompt(prompt: int) -> None:
    def ttft(p: int) -> float:
        a = assess(Deployment(GEMMA, L40S, 4, 4096, quant="fp8", output_tokens=256,
                              settings=_prompt(p)))  # fmt: skip
        assert a.ttft_s is not None
        return a.ttft_s

    assert ttft(prompt + 500) >= ttft(prompt) * (1 - 1e-9)


@settings(max_examples=40, deadline=None)
@given(rate=st.floats(0.1, 50.0), factor=st.floats(1.01, 4.0), cap=st.integers(1, 64), apart=st.booleans())
def test_poisson_waits_more_and_serves_more_as_the_rate_grows(
    rate: float, factor: float, cap: int, apart: bool
) -> None:
    """Poisson arrivals on a step that grows with the batch and the prompt tokens it carries
    (10 ms + 0.5 ms per sequence + 0.02 ms per prompt token), 200 requests of 300 in / 100 out,
    with the prompts riding in the decode steps or in steps of their own (SGLang):
    a higher rate never shortens the first token or the time per output token, and never
    lowers the output throughput (the run ends sooner or the engine is already full)."""
    step = LinearStep(0.010, 0.0005, 0.00002)

    def run(r: float):  # type: ignore[no-untyped-def]
        load = Load(200, 300, 100, cap, 2048, "poisson", r, separate_prefill=apart)
        return serve(step, load, overhead_s=0.01)  # type: ignore[arg-type]

    low, high = run(rate), run(rate * factor)
    assert high.ttft_s >= low.ttft_s * (1 - 1e-9)
    assert high.tpot_s >= low.tpot_s * (1 - 1e-9)
    assert high.output_tokens_per_s >= low.output_tokens_per_s * (1 - 1e-9)


def _prompt(p: int):  # type: ignore[no-untyped-def]
    from vramcalc.core.engines.base import EngineSettings

    return EngineSettings(prompt_tokens=p)


@pytest.mark.parametrize(
    ("prompt", "output", "match"),
    [
        (4096, None, "--prompt-tokens must be at least 1 and below --ctx 4,096"),
        (4000, 200, r"--prompt-tokens 4,000 \+ --output-tokens 200 = 4,200 is above --ctx 4,096"),
    ],
)
def test_prompt_and_output_must_fit_the_context(prompt: int, output: int | None, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        assess(Deployment(GEMMA, L40S, 1, 4096, quant="fp8", output_tokens=output, settings=_prompt(prompt)))
