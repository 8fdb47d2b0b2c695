"""Load the weight-calibration records and compare each with vramcalc's weight bytes.

Shared by tests/test_calibration_weights.py and scripts/calibration_table.py. The records live in
tests/calibration/measurements.yaml; each carries a `vramcalc:` block naming the catalog model,
the weight format, which WeightUse field to compare (`checkpoint_bytes` or `gpu_bytes`), the
measured figure in bytes and a relative tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from vramcalc.catalog import Catalog
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.estimate import Workload, weight_bytes
from vramcalc.core.formats import resolve_format
from vramcalc.core.scenario import run

MEASUREMENTS = Path(__file__).resolve().parent / "calibration" / "measurements.yaml"

# Report order of the record kinds.
KINDS = ("gguf file", "ollama download", "vllm weights", "transformers")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One record against vramcalc: bytes on both sides and the verdict under the record's rule."""

    id: str
    kind: str
    model: str
    format: str
    compare: str
    measured_as_printed: str
    measured_bytes: int
    ours_bytes: int
    tolerance: float
    one_sided: bool
    xfail: str | None

    @property
    def rel_error(self) -> float:
        """(ours - measured) / measured: negative when vramcalc is below the measurement."""
        return (self.ours_bytes - self.measured_bytes) / self.measured_bytes

    @property
    def within(self) -> bool:
        """The record's rule.

        Two-sided: |ours - measured| / measured <= tolerance.
        One-sided (measured is a peak that contains the weights): 0 <= (measured - ours) / measured
        <= tolerance, i.e. ours may not exceed the peak and may sit at most `tolerance` below it.
        """
        if self.one_sided:
            return 0.0 <= -self.rel_error <= self.tolerance
        return abs(self.rel_error) <= self.tolerance


def load_records(path: Path = MEASUREMENTS) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    records: list[dict[str, Any]] = data["records"]
    return records


@cache
def _catalog() -> Catalog:
    return Catalog()


def compare(record: dict[str, Any]) -> Comparison:
    """Compute vramcalc's figure for one record (ours / tp for per-GPU figures)."""
    v = record["vramcalc"]
    model = _catalog().models.get(v["model"])
    tp = int(v.get("tp", 1))
    if v["kind"] == "vllm weights":
        # vLLM's "weights loaded" is what the engine holds per GPU: the tp shard of every tensor
        # plus the rotary cos/sin cache it registers as a buffer (vllm/v1 engine profile).
        work = Workload(min(4096, model.max_position_embeddings), 1)
        gpu = _catalog().gpus.get(v["gpu"]) if "gpu" in v else None
        sc = run(model, work, quant=v["format"], gpu=gpu, settings=EngineSettings(tp=tp))
        ours = sc.estimate.weights_bytes
    else:
        ours = getattr(weight_bytes(model, resolve_format(v["format"])), v["compare"]) // tp
    return Comparison(
        id=record["id"],
        kind=v["kind"],
        model=v["model"],
        format=v["format"],
        compare=v["compare"],
        measured_as_printed=str(v["measured_as_printed"]),
        measured_bytes=int(v["measured_bytes"]),
        ours_bytes=ours,
        tolerance=float(v["tolerance"]),
        one_sided=bool(v.get("one_sided", False)),
        xfail=v.get("xfail"),
    )
