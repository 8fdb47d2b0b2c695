"""What every engine profile answers, as data the one estimator consumes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramcalc.core.types import EngineFigure, EnginePlan, EngineSettings, EngineView

__all__ = ["Engine", "EngineFigure", "EnginePlan", "EngineSettings", "EngineView", "PlanFn", "ViewFn"]

if TYPE_CHECKING:
    from vramcalc.core.estimate import Estimate, Workload
    from vramcalc.core.formats import WeightFormat
    from vramcalc.specs import GpuSpec, ModelSpec


PlanFn = Callable[
    ["ModelSpec", "Workload", "WeightFormat", str, "GpuSpec | None", EngineSettings, str], EnginePlan
]
ViewFn = Callable[["Estimate", "GpuSpec", EngineSettings, str], EngineView]


@dataclass(frozen=True, slots=True)
class Engine:
    """One engine profile (one module per engine under vramcalc.core.engines)."""

    name: str
    versions: tuple[str, ...]  # behaviour changes we model, oldest first; the last is the default
    settings: frozenset[str]  # EngineSettings fields this engine has
    gguf: bool  # serves GGUF files (llama.cpp family)
    kv_dtypes: tuple[str, ...]  # KV cache dtypes it offers (our names: bf16, fp16, fp8, q8_0, q4_0)
    plan: PlanFn
    view: ViewFn
    # The plan and view read the workload's context but not its user count (vLLM: the pool is sized
    # before any user arrives), so one plan serves every user count of a deployment.
    plan_reads_users: bool = True

    @property
    def default_version(self) -> str:
        return self.versions[-1]
