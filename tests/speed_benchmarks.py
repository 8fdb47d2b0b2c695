"""Published speed benchmarks (tests/calibration/serving.yaml, single_user.yaml) against the assessment.

Shared by tests/test_speed_benchmarks.py and scripts/fit_speed.py. Each record becomes the
Deployment its benchmark ran (model, GPU, engine, format, prompt and output lengths, concurrency,
closed loop or burst), is assessed, and each printed figure is held against ours. Records are split
by source (not by row): the sources in even positions of the sorted list fit the speed constants,
the odd ones test them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from tests.conftest import ROOT
from vramcalc.catalog import Catalog
from vramcalc.core.assess import Assessment, Deployment, assess
from vramcalc.core.engines.base import EngineSettings

FILES = ("tests/calibration/serving.yaml", "tests/calibration/single_user.yaml")

# figure key in `measured` -> (label, how it converts to ours' unit)
FIGURES = (
    "decode_tokens_per_s",
    "prompt_tokens_per_s",
    "median_tpot_ms",
    "median_itl_ms",
    "median_ttft_ms",
    "output_tokens_per_s",
    "request_per_s",
    "batch_decode_tokens_per_s",
    "decode_tokens_per_s_per_user",
)
DECODE_FIGURES = frozenset({"decode_tokens_per_s", "median_tpot_ms", "median_itl_ms", "decode_tokens_per_s_per_user"})
LOAD_FIGURES = frozenset({"output_tokens_per_s", "request_per_s", "batch_decode_tokens_per_s"})

# Records the model does not cover, and why (kept in the tables, left out of the summaries).
XFAIL: dict[str, str] = {}


@dataclass(frozen=True)
class Observation:
    record: str
    source: str
    engine: str
    gpu: str
    figure: str
    concurrency: int
    measured: float
    ours: float
    xfail: str = ""

    @property
    def rel_error(self) -> float:
        return (self.ours - self.measured) / self.measured

    @property
    def kind(self) -> str:
        """decode (one user), prefill, load (2+ users: decode, throughput) or ttft."""
        if self.figure == "prompt_tokens_per_s":
            return "prefill"
        if self.figure == "median_ttft_ms":
            return "ttft"
        if self.concurrency > 1:
            return "load"
        return "decode"


@cache
def _catalog() -> Catalog:
    return Catalog()


def records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in FILES:
        path = ROOT / name
        if path.exists():
            out += yaml.safe_load(path.read_text())["records"]
    return out


def sources() -> list[str]:
    """Distinct sources, sorted; one source = the text of `source` up to its first comma."""
    return sorted({source_key(r) for r in records()})


def source_key(r: dict[str, Any]) -> str:
    return str(r["source"]).split(",")[0].split(" (")[0].strip()


def split() -> tuple[frozenset[str], frozenset[str]]:
    """(fit sources, test sources): even and odd positions of the sorted sources."""
    keys = sources()
    return frozenset(keys[0::2]), frozenset(keys[1::2])


def _kv(r: dict[str, Any]) -> str:
    kv = str(r.get("kv_dtype") or "auto").lower()
    if r["engine"] in ("llama.cpp", "ollama"):
        return {"auto": "fp16", "f16": "fp16", "fp16": "fp16", "q8_0": "q8_0", "q4_0": "q4_0"}.get(kv, "fp16")
    return "fp8" if kv.startswith("fp8") else "auto"


def deployment(r: dict[str, Any]) -> Deployment:
    """The benchmark's setup as a Deployment: context = prompt + output (at least 64), each
    sequence half way through its output on average, closed loop unless every prompt was sent at
    once (num_prompts <= concurrency at an unbounded rate), which is a burst."""
    cat = _catalog()
    prompt = max(1, int(r.get("prompt_tokens") or 1))
    output = max(1, int(r.get("output_tokens") or 1))
    ctx = max(64, prompt + output + 1)
    users = int(r.get("concurrency") or 1)
    burst = r.get("mode") == "closed_loop" and r.get("num_prompts") and int(r["num_prompts"]) <= users
    batch = r.get("mode") == "batch"
    tp = int(r.get("tensor_parallel") or 1)
    return Deployment(
        model=cat.models.get(r["catalog_model"]),
        gpu=cat.gpus.get(r["gpu"]),
        users=users,
        ctx_tokens=ctx,
        count=tp,
        layout="tensor-parallel" if tp > 1 else "single",
        engine=r["engine"],
        quant=r["quant"],
        kv_dtype=_kv(r),
        fill=min(1.0, (prompt + output / 2) / ctx),
        output_tokens=output,
        settings=EngineSettings(
            prompt_tokens=prompt,
            flash_attn=r.get("flash_attn") if r["engine"] in ("llama.cpp", "ollama") else None,
            enforce_eager=r.get("enforce_eager") if r["engine"] in ("vllm", "sglang") else None,
            max_num_seqs=users if batch and r["engine"] in ("llama.cpp", "ollama") else None,
        ),
        allow_long_ctx=True,
        arrival="burst" if burst or batch else "closed",
    )


def _ours(r: dict[str, Any], a: Assessment, figure: str) -> float | None:
    """Our value of `figure` in the record's unit. One-user llama-bench/Ollama figures have no
    server around them: decode = the step alone, prompt = the prefill alone."""
    spd, srv = a.speed, a.serving
    if spd is None or srv is None:
        return None
    prompt = int(r.get("prompt_tokens") or 1)
    single = r.get("mode") == "single" or int(r.get("concurrency") or 1) == 1
    if figure == "prompt_tokens_per_s":
        return prompt / spd.ttft_s if spd.ttft_s else None
    if figure in ("decode_tokens_per_s", "decode_tokens_per_s_per_user"):
        return spd.per_user_tokens_per_s if single else srv.decode_tokens_per_s_per_user
    if figure in ("median_tpot_ms", "median_itl_ms"):
        return srv.tpot_s * 1000
    if figure == "median_ttft_ms":
        return srv.ttft_s * 1000
    if figure == "output_tokens_per_s":
        return srv.output_tokens_per_s
    if figure == "request_per_s":
        return srv.request_per_s
    if figure == "batch_decode_tokens_per_s":
        return srv.running / spd.step_s
    return None


def observations() -> list[Observation]:
    out: list[Observation] = []
    for r in records():
        if r.get("mode") == "request_rate":
            continue  # Poisson arrivals: not modelled (closed loop and bursts only)
        a = assess(deployment(r))
        for figure in FIGURES:
            value = (r.get("measured") or {}).get(figure)
            if value is None:
                continue
            ours = _ours(r, a, figure)
            if ours is None or not math.isfinite(ours):
                continue
            key = f"{r['id']}:{figure}"
            out.append(
                Observation(
                    r["id"],
                    source_key(r),
                    r["engine"],
                    r["gpu"],
                    figure,
                    int(r.get("concurrency") or 1),
                    float(value),
                    ours,
                    XFAIL.get(key, XFAIL.get(r["id"], "")),
                )
            )
    return out


def summary(obs: list[Observation]) -> tuple[float, float, int]:
    """(median |error|, worst |error|, count), xfails left out."""
    errors = [abs(o.rel_error) for o in obs if not o.xfail]
    if not errors:
        return 0.0, 0.0, 0
    return statistics.median(errors), max(errors), len(errors)


def with_figure(obs: list[Observation], kind: str) -> list[Observation]:
    return [o for o in obs if o.kind == kind]


def halves(obs: list[Observation]) -> tuple[list[Observation], list[Observation]]:
    fit, test = split()
    return [o for o in obs if o.source in fit], [o for o in obs if o.source in test]
