"""Serving under load: what a benchmark prints for N users sending prompts to one replica."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from vramcalc.core.speed import Stepper
from vramcalc.errors import SpecError

Arrival = Literal["closed", "burst", "poisson"]

# Source: time a request spends in the server outside the GPU steps before its first token (HTTP,
# tokenization, scheduling, detokenizing the first token), by engine.
# Fitted by scripts/fit_speed.py on the fit half (by source) of the published benchmarks
# (2026-12-02); llama.cpp/Ollama keep a 2 / 10 ms guess (their one-user records print no TTFT).
REQUEST_OVERHEAD_S = {"vllm": 0.0183, "sglang": 0.0183, "tgi": 0.0183, "llama.cpp": 0.002, "ollama": 0.01}
# The closed-loop fixed point converges geometrically; 60 rounds reach 1e-9 relative change on every
# load tried (the prefill share of a step is below 1 whenever the engine keeps up).
FIXED_POINT_ROUNDS = 60
# A burst is simulated step by step: at most this many requests (benchmarks send 10-1,000).
MAX_BURST_REQUESTS = 10_000
# The most of the time prefills may take (a guard: past it no request would ever decode).
MAX_PREFILL_SHARE = 0.95


@dataclass(frozen=True, slots=True)
class Load:
    """N users of one replica, each request `prompt_tokens` in and `output_tokens` out.

    closed: each user sends the next request as soon as the last one ends (`--max-concurrency N`
    runs, a team of planners' users); burst: all N requests arrive at once (a benchmark with
    --num-prompts N at an infinite request rate); poisson: N requests arrive at random at
    `rate_per_s` (a benchmark's --request-rate). At most `running_cap` run at once (the KV pool,
    max_num_seqs or slots); the rest wait for a place. The engine packs up to `step_tokens` tokens
    into one step: every running sequence's next token first, then prompt chunks (chunked prefill).
    """

    users: int
    prompt_tokens: int
    output_tokens: int
    running_cap: int
    step_tokens: int
    arrival: Arrival = "closed"
    rate_per_s: float | None = None  # poisson: requests per second
    separate_prefill: bool = False  # prompts run in steps of their own (EnginePlan.prefill_apart)


@dataclass(frozen=True, slots=True)
class Serving:
    """The figures a serving benchmark prints, for one replica (times in seconds)."""

    users: int
    running: int  # sequences decoding at once in steady state
    step_s: float  # a decode step with the prompt chunks that ride in it
    tpot_s: float  # median time per output token after the first (vLLM bench's TPOT)
    ttft_s: float  # median time to first token, queueing for a place included
    queue_s: float  # the part of ttft_s spent waiting for a place
    e2e_s: float  # median request latency
    request_per_s: float
    output_tokens_per_s: float  # output token throughput

    @property
    def decode_tokens_per_s_per_user(self) -> float:
        """What a user reads once the stream starts: 1 / TPOT."""
        return 1.0 / self.tpot_s


def check_load(load: Load) -> None:
    """Refuse a load that cannot be served, naming the field."""
    if load.users < 1:
        raise SpecError(f"--users must be a positive integer, got {load.users}")
    if load.prompt_tokens < 1:
        raise SpecError(f"--prompt-tokens must be at least 1, got {load.prompt_tokens}")
    if load.output_tokens < 1:
        raise SpecError(f"--output-tokens must be at least 1, got {load.output_tokens}")
    if load.step_tokens < 1:
        raise SpecError(f"the engine's step holds at least one token, got {load.step_tokens}")
    if load.running_cap < 1:
        raise SpecError("no sequence runs at once: the deployment serves nobody")
    if load.arrival == "poisson" and not (
        load.rate_per_s is not None and math.isfinite(load.rate_per_s) and load.rate_per_s > 0
    ):
        raise SpecError(f"a request rate must be a positive number of requests/s, got {load.rate_per_s}")
    if load.arrival == "burst" and load.users > MAX_BURST_REQUESTS:
        raise SpecError(
            f"a burst is simulated for at most {MAX_BURST_REQUESTS:,} requests, got {load.users:,}"
        )


def serve(st: Stepper, load: Load, overhead_s: float | None = None) -> Serving:
    """Serve `load` on the step cost `st` (closed_loop or burst)."""
    check_load(load)
    extra = REQUEST_OVERHEAD_S.get(st.e.plan.engine, 0.0) if overhead_s is None else overhead_s
    if load.arrival == "burst":
        return _burst(st, load, extra)
    if load.arrival == "poisson":
        return _poisson(st, load, extra)
    return _closed(st, load, extra)


def _apart(st: Stepper, load: Load, r: float, x: float) -> tuple[float, float]:
    """(time per output token, prefill step) where prompts run in steps of their own
    (load.separate_prefill), with r sequences decoding and x prompts arriving per second.

    The prompts that arrive during one decode step s_d = step(r) are prefilled together (at least
    1, at most as many as the step's token budget T holds): b = clamp(x s_d, 1, T // P), in
    k = ceil(P / T) chunk steps, each step(0, b P / k). The decodes pause meanwhile: prefill takes
    f = x x that / b of the time, so each output token takes s_d / (1 - f)."""
    p, budget = load.prompt_tokens, load.step_tokens
    decode = st.step_s(r)
    chunks = math.ceil(p / budget)
    batch = max(1.0, min(x * decode, float(max(1, budget // p))))
    prefill = chunks * st.step_s(0, batch * p / chunks, p)
    share = min(MAX_PREFILL_SHARE, x * prefill / batch)
    return decode / (1 - share), prefill


def _closed(st: Stepper, load: Load, extra_s: float) -> Serving:
    """Closed loop in steady state, R = min(users, cap) requests running.

    A request's prompt is cut into k = ceil(P / (T - (R - 1))) chunks that ride in steps next to
    the other R - 1 sequences' decodes; it waits on average half a step (when others run) for the
    step under way to end. TTFT = extra + wait + k x step(R - 1, P / k). Then O - 1 decode steps,
    each carrying the prefill tokens that arrive meanwhile, q = X x P x s (X = requests/s):
    s = step(R, q). Latency L = TTFT + (O - 1) x s and X = R / L (Little's law), solved as a fixed
    point. Users beyond R wait for a place: N = X x (W + L), so W = (N - R) / R x L.
    """
    n, p, o = load.users, load.prompt_tokens, load.output_tokens
    r = min(n, load.running_cap)
    if load.separate_prefill:
        return _closed_apart(st, load, extra_s, r)
    room = max(1, load.step_tokens - (r - 1))
    chunks = math.ceil(p / room)
    first_step = st.step_s(r - 1, p / chunks, p)
    wait = 0.5 * first_step * (r - 1) / r
    ttft = extra_s + wait + chunks * first_step

    def step(s: float) -> float:
        q = r * p * s / (ttft + (o - 1) * s)  # prompt tokens arriving per step
        return st.step_s(r, min(q, float(load.step_tokens)), p)

    s = _fixed_point(step, st.step_s(r))
    latency = ttft + (o - 1) * s
    x = r / latency
    queue = (n - r) / r * latency
    tpot = s if o > 1 else first_step
    return Serving(n, r, s, tpot, ttft + queue, queue, queue + latency, x, x * o)


def _closed_apart(st: Stepper, load: Load, extra_s: float, r: int) -> Serving:
    """The closed loop where prompts run in steps of their own (_apart): a request waits half a
    decode step when others run, then its prefill step; TTFT = extra + s_d (R - 1) / (2 R) + prefill,
    L = TTFT + (O - 1) x TPOT and X = R / L, solved as a fixed point in X."""
    n, o = load.users, load.output_tokens
    wait = 0.5 * st.step_s(r) * (r - 1) / r

    def latency(x: float) -> tuple[float, float, float, float]:
        tpot, prefill = _apart(st, load, r, x)
        ttft = extra_s + wait + prefill
        return ttft + (o - 1) * tpot, ttft, tpot, prefill

    x = _fixed_point(lambda x: r / latency(x)[0], r / latency(0.0)[0])
    total, ttft, tpot, prefill = latency(x)
    queue = (n - r) / r * total
    x = r / total
    return Serving(n, r, tpot, tpot if o > 1 else prefill, ttft + queue, queue, queue + total, x, x * o)


def _poisson(st: Stepper, load: Load, extra_s: float) -> Serving:
    """N requests arriving at random at rate X (Poisson, no concurrency limit), in the fluid
    approximation: R requests run at once on average (Little's law, R = X x the time one holds a
    place), each step decodes them and carries the prompt tokens that arrive meanwhile,
    q = X x P x s. A request waits on average for half the step under way, then its prompt rides in
    k chunks next to the R decodes: TTFT = extra + s / 2 + k x step(R, P / k); it holds its place for
    H = k x step(R, P / k) + (O - 1) x s, and q = R x P x s / H. R = X x H is solved as a fixed point.

    Past what the engine can hold (R would exceed `running_cap`) it serves at mu = cap / H < X and
    the queue grows for the whole run: request i arrives at i / X and gets a place at about
    (i - cap) / mu, so the median request (i = N / 2) waits max(0, (N / 2 - cap) / mu - N / (2 X)).
    Throughput is the N requests over the run, the last arrival (N - 1) / X (or the last place,
    (N - cap) / mu) plus one holding time H."""
    n, p, o, cap = load.users, load.prompt_tokens, load.output_tokens, load.running_cap
    rate = float(load.rate_per_s or 0.0)

    def holding(r: float) -> tuple[float, float, float, float]:
        """(step s, first chunk step, chunks k, holding time H) with r requests running."""
        if load.separate_prefill:
            # Prompts in steps of their own (_apart), at the rate the engine serves them.
            def served(x: float) -> float:
                tpot, prefill = _apart(st, load, r, x)
                return min(rate, r / (prefill + (o - 1) * tpot))

            tpot, prefill = _apart(st, load, r, _fixed_point(served, rate))
            return tpot, prefill, 1, prefill + (o - 1) * tpot
        room = max(1.0, load.step_tokens - r)
        chunks = math.ceil(p / room)
        first = st.step_s(r, p / chunks, p)

        def step(s: float) -> float:
            q = r * p * s / (chunks * first + (o - 1) * s)  # served = r / H requests per second
            return st.step_s(r, min(q, float(load.step_tokens)), p)

        s = _fixed_point(step, st.step_s(r))
        return s, first, chunks, chunks * first + (o - 1) * s

    r = min(float(cap), rate * holding(1.0)[3])
    for _ in range(FIXED_POINT_ROUNDS):
        nxt = min(float(cap), rate * holding(max(r, 1e-9))[3])
        if abs(nxt - r) <= 1e-9 * max(1.0, r):
            r = nxt
            break
        r = 0.5 * (r + nxt)  # damped: the holding time grows with r
    s, first, chunks, hold = holding(max(r, 1e-9))
    ttft = extra_s + 0.5 * s * min(1.0, r) + chunks * first
    mu = cap / hold
    queue = 0.0
    end = (n - 1) / rate
    if rate * hold > cap:  # more arrives than the engine serves: the queue grows all run
        queue = max(0.0, (n / 2 - cap) / mu - n / (2 * rate))
        end = max(end, (n - cap) / mu)
    makespan = end + hold + extra_s
    tpot = s if o > 1 else first
    running = max(1, min(cap, round(r)))
    return Serving(
        n, running, s, tpot, ttft + queue, queue, queue + ttft + (o - 1) * s, n / makespan, n * o / makespan
    )


def _fixed_point(g: Callable[[float], float], s: float) -> float:
    """s = g(s) for a step time, to 1e-9 relative: secant steps on g(s) - s, each checked to stay
    positive and finite, else the plain iteration's next value (the same fixed point as iterating
    g, in 3-5 evaluations of g where iterating took up to 14)."""
    prev, g_prev = s, g(s)
    if abs(g_prev - prev) <= 1e-12 + 1e-9 * prev:
        return g_prev
    s = g_prev
    for _ in range(FIXED_POINT_ROUNDS):
        g_s = g(s)
        if abs(g_s - s) <= 1e-12 + 1e-9 * s:
            return g_s
        slope = (g_s - s) - (g_prev - prev)
        nxt = s - (g_s - s) * (s - prev) / slope if slope else g_s
        if not (math.isfinite(nxt) and nxt > 0):
            nxt = g_s
        prev, g_prev, s = s, g_s, nxt
    return s


def _burst(st: Stepper, load: Load, extra_s: float) -> Serving:
    """All N requests at t = 0, simulated step by step as the engine schedules them: each step
    first decodes every running sequence that has its first token, then fills the rest of the
    step's token budget with prompt chunks in arrival order, admitting a request while fewer than
    `running_cap` hold a place. A request's first token comes with the step that ends its prompt;
    it ends O - 1 decode steps later. Where prompts run apart (load.separate_prefill), a step with
    prompts waiting is a prefill step of up to the budget's tokens and nobody decodes in it.
    Figures are medians over the requests (TPOT per request = (end - first token) / (O - 1));
    throughput = N x O / the last end."""
    import statistics

    n, p, o = load.users, load.prompt_tokens, load.output_tokens
    cap, budget = load.running_cap, load.step_tokens
    first = [0.0] * n
    end = [0.0] * n
    next_up = 0  # next request to admit
    filling: deque[list[int]] = deque()  # [request, prompt tokens left], admitted, not yet prefilled
    ends: deque[tuple[int, int]] = deque()  # (request, step of its last token), in order of ending
    held = 0
    t = 0.0
    step = 0  # decode steps so far (every step where prompts ride along)
    while next_up < n or filling or ends:
        while held < cap and next_up < n:
            filling.append([next_up, p])
            next_up += 1
            held += 1
        apart = load.separate_prefill and bool(filling)
        decoding = 0 if apart else len(ends)
        room = max(0, budget - decoding)
        chunk = 0
        done: list[int] = []
        for item in filling:
            if room <= 0:
                break
            take = min(room, item[1])
            item[1] -= take
            room -= take
            chunk += take
            if item[1] == 0:
                done.append(item[0])
        t += st.step_s(decoding, chunk, p)
        step += 0 if apart else 1
        while filling and filling[0][1] == 0:
            filling.popleft()
        while ends and ends[0][1] <= step:
            req, _ = ends.popleft()
            end[req] = t + extra_s
            held -= 1
        for req in done:
            first[req] = t + extra_s
            if o == 1:
                end[req] = t + extra_s
                held -= 1
            else:
                ends.append((req, step + o - 1))
    makespan = max(end)
    tpots = [(end[i] - first[i]) / (o - 1) for i in range(n)] if o > 1 else [0.0]
    running = min(n, cap)
    return Serving(
        n,
        running,
        st.step_s(running),
        statistics.median(tpots) if o > 1 else st.step_s(running),
        statistics.median(first),
        0.0,
        statistics.median(end),
        n / makespan,
        n * o / makespan,
    )
