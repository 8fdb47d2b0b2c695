"""Published throughput figures (tests/calibration/throughput.yaml) against the speed model.

Shared by tests/test_speed.py and scripts/engine_accuracy.py. This module says how to rebuild each
record's setup (context, concurrency, what the figure counts) and reads the figures from the file.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import yaml

from tests.conftest import ROOT
from vramcalc.catalog import Catalog
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.estimate import Workload
from vramcalc.core.scenario import run
from vramcalc.core.speed import speed

THROUGHPUT = ROOT / "tests/calibration/throughput.yaml"
TOLERANCE = 0.25  # the aim for speed predictions

# Records whose figure is a bound, not the per-sequence decode speed, and why.
LOWER_BOUND = {
    "vllm-mistral-7b-v03-rtx4090-c16": "aggregate over the run including prefill and queueing, / 16",
}
XFAIL: dict[str, str] = {
    "llamacpp-llama3-8b-q4km-a100sxm-pp512": (
        "GEMM shape: Llama-3-8B's 4096-wide matrices at a 512-token ubatch reach ~100 TFLOPS on both "
        "A100s (PCIe and SXM alike), below the efficiency the 70B matrices reach on the same cards; "
        "the partial last wave of output tiles over 108 SMs is not modelled (no SM count in the "
        "catalog), and the SXM's 400 W leaves it below the power cap that bounds the PCIe card"
    ),
}


@dataclass(frozen=True)
class SpeedPoint:
    record: str
    label: str
    engine: str
    measured: float
    ours: float
    lower_bound: bool = False
    xfail: str = ""

    @property
    def rel_error(self) -> float:
        return (self.ours - self.measured) / self.measured


@cache
def _catalog() -> Catalog:
    return Catalog()


@cache
def records() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = yaml.safe_load(THROUGHPUT.read_text())["records"]
    return data


def _scenario(r: dict[str, Any], ctx: int, users: int, fill: float):  # type: ignore[no-untyped-def]
    cat = _catalog()
    engine = r["engine"]
    quant = {"fp16": "fp16", "bf16": "bf16"}.get(r["quant"], r["quant"])
    model = cat.models.get(r["catalog_model"])
    gguf = engine in ("llama.cpp", "ollama")
    sc = run(
        model,
        Workload(ctx, users, fill, allow_long_ctx=True),
        engine=engine,
        quant=quant,
        kv_dtype="fp16" if gguf else "auto",
        settings=EngineSettings(),
    )
    if r.get("llamacpp_version"):
        # Builds older than the oldest llama.cpp memory profile (2025.04) allocate as it does; the
        # build's month label only changes the prefill kernel path (core/speed.py MMQ_DEFAULT_SINCE).
        plan = replace(sc.estimate.plan, version=str(r["llamacpp_version"]))
        sc = replace(sc, estimate=replace(sc.estimate, plan=plan))
    return sc


def _decode(r: dict[str, Any], ctx: int, users: int, fill: float) -> float:
    sc = _scenario(r, ctx, users, fill)
    return speed(sc.estimate, _catalog().gpus.get(r["gpu"]), users).per_user_tokens_per_s


def _decode_setup(r: dict[str, Any]) -> tuple[int, int, float, float]:
    """(ctx, users, fill, measured per-sequence tokens/s) for a decode record."""
    m = r["measured"]
    prompt, output = r.get("prompt_tokens") or 0, r.get("output_tokens") or 0
    users = r["batch"] or 6  # the SGLang record ran at 4 requests/s: ~6 in flight (its notes)
    if "tokens_per_s" in m:
        value = float(m["tokens_per_s"])
    elif "derived" in r and r["derived"].get("per_sequence_tokens_per_s"):
        value = float(r["derived"]["per_sequence_tokens_per_s"])
    elif "median_tpot_ms" in m:
        value = 1000 / float(m["median_tpot_ms"])
    elif "inter_token_latency_ms" in m:
        value = 1000 / float(m["inter_token_latency_ms"])
    else:
        value = float(m["aggregate_output_tokens_per_s"]) / users
    if not prompt and not output:
        prompt, output = 256, 256  # short chat turns (records without lengths, see their notes)
    ctx = max(64, prompt + output)
    fill = (prompt + output / 2) / ctx
    return ctx, users, fill, value


def points() -> list[SpeedPoint]:
    out: list[SpeedPoint] = []
    gpus = _catalog().gpus
    for r in records():
        rid, engine = r["id"], r["engine"]
        if r["phase"] == "prefill":
            prompt = int(r["prompt_tokens"])
            sc = _scenario(r, prompt, 1, 1.0)
            ttft = speed(sc.estimate, gpus.get(r["gpu"]), 1, prompt_tokens=prompt).ttft_s
            if ttft is None:
                continue  # no tensor throughput in the catalog for this GPU (Apple)
            out.append(
                SpeedPoint(
                    rid,
                    "prompt tok/s",
                    engine,
                    float(r["measured"]["prompt_tokens_per_s"]),
                    prompt / ttft,
                    xfail=XFAIL.get(rid, ""),
                )
            )
            continue
        by_input = r["measured"].get("tokens_per_s_by_input_length")
        if by_input:
            output = int(r["output_tokens"])
            for prompt, value in by_input.items():
                ctx = int(prompt) + output
                sc = _scenario(r, ctx, 1, (int(prompt) + output / 2) / ctx)
                gpu = gpus.get(r["gpu"])
                step = 1 / speed(sc.estimate, gpu, 1).per_user_tokens_per_s
                ttft = speed(sc.estimate, gpu, 1, prompt_tokens=max(1, int(prompt))).ttft_s or 0.0
                ours = output / (ttft + output * step)  # the benchmark divides by the whole run
                key = f"{rid}@{prompt}"
                out.append(
                    SpeedPoint(
                        key, "tok/s incl. prefill", engine, float(value), ours, xfail=XFAIL.get(key, "")
                    )
                )
            continue
        ctx, users, fill, value = _decode_setup(r)
        ours = _decode(r, ctx, users, fill)
        out.append(
            SpeedPoint(
                rid, f"tok/s/user at {users}", engine, value, ours, rid in LOWER_BOUND, XFAIL.get(rid, "")
            )
        )
    return out


def summary(pts: list[SpeedPoint]) -> tuple[float, float]:
    errors = [abs(p.rel_error) for p in pts if not p.xfail and not p.lower_bound]
    return statistics.median(errors), max(errors)


def prefill_split(pts: list[SpeedPoint]) -> tuple[list[SpeedPoint], list[SpeedPoint]]:
    """(fit, test): the llama.cpp/Ollama prompt-processing points in file order; the even-numbered
    ones fitted GGUF_PREFILL_GEMM_EFFICIENCY and GGUF_PREFILL_TFLOPS_PER_WATT (core/speed.py), the
    odd-numbered ones test them."""
    gguf = [p for p in pts if p.label == "prompt tok/s" and p.engine in ("llama.cpp", "ollama")]
    return gguf[0::2], gguf[1::2]
