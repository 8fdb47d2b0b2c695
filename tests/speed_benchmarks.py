"""Published speed benchmarks (tests/calibration/serving.yaml, single_user.yaml) against the assessment.

Shared by tests/test_speed_benchmarks.py and scripts/fit_speed.py. Each record becomes the
Deployment its benchmark ran (model, GPU, engine, format, prompt and output lengths, concurrency,
closed loop or burst), is assessed, and each printed figure is held against ours. Records are split
by source (not by row): the sources in even positions of the sorted list fit the speed constants,
the odd ones test them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from tests.conftest import ROOT
from vramcalc.catalog import Catalog
from vramcalc.core.assess import Deployment
from vramcalc.core.benchmark import check_run
from vramcalc.core.engines.base import EngineSettings
from vramcalc.readings import BenchmarkRun

FILES = ("tests/calibration/serving.yaml", "tests/calibration/single_user.yaml")

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
        if self.figure == "median_ttft_s":
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


def _ms(m: dict[str, Any], key: str) -> float | None:
    return None if m.get(key) is None else float(m[key]) / 1000


def run_of(r: dict[str, Any]) -> BenchmarkRun:
    """The record as the reader would give it (vramcalc.readings): its load and printed figures.
    A batched-bench S_TG (B sequences decoding together) is B x the per-sequence decode rate."""
    m = r.get("measured") or {}
    single = r.get("mode") == "single"
    users = 1 if single else r.get("concurrency")
    decode = m.get("decode_tokens_per_s") or m.get("decode_tokens_per_s_per_user")
    if decode is None and m.get("batch_decode_tokens_per_s") and users:
        decode = float(m["batch_decode_tokens_per_s"]) / int(users)
    return BenchmarkRun(
        label=str(r["id"]),
        concurrency=None if users is None else int(users),
        request_rate_per_s=r.get("request_rate"),
        prompt_tokens=int(r.get("prompt_tokens") or 0) or None,
        output_tokens=int(r.get("output_tokens") or 0) or None,
        completed=1 if single else r.get("num_prompts"),
        output_tokens_per_s=m.get("output_tokens_per_s"),
        request_per_s=m.get("request_per_s"),
        median_ttft_s=_ms(m, "median_ttft_ms"),
        median_tpot_s=_ms(m, "median_tpot_ms"),
        median_itl_s=None if m.get("median_tpot_ms") else _ms(m, "median_itl_ms"),
        decode_tokens_per_s=None if decode is None else float(decode),
        prompt_tokens_per_s=m.get("prompt_tokens_per_s") or m.get("batch_prompt_tokens_per_s"),
        flash_attn=r.get("flash_attn"),
    )


def base_deployment(r: dict[str, Any]) -> Deployment:
    """Model, GPU, engine, format and settings of the record (the load comes from its run)."""
    cat = _catalog()
    tp = int(r.get("tensor_parallel") or 1)
    return Deployment(
        model=cat.models.get(r["catalog_model"]),
        gpu=cat.gpus.get(r["gpu"]),
        users=1,
        count=tp,
        layout="tensor-parallel" if tp > 1 else "single",
        engine=r["engine"],
        quant=r["quant"],
        kv_dtype=_kv(r),
        settings=EngineSettings(
            enforce_eager=r.get("enforce_eager") if r["engine"] in ("vllm", "sglang") else None,
            max_num_seqs=int(r["concurrency"])
            if r.get("mode") == "batch" and r["engine"] in ("llama.cpp", "ollama")
            else None,
        ),
    )


def observations() -> list[Observation]:
    out: list[Observation] = []
    for r in records():
        checked = check_run(run_of(r), base_deployment(r))
        for f in checked.figures:
            key = f"{r['id']}:{f.figure}"
            users = 1 if r.get("mode") == "single" else int(r.get("concurrency") or 1)
            out.append(
                Observation(
                    r["id"], source_key(r), r["engine"], r["gpu"], f.figure, users, f.measured, f.ours,
                    XFAIL.get(key, XFAIL.get(r["id"], "")),
                )
            )  # fmt: skip
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
