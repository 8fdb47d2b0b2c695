"""Check planned deployments: the assessment of each, and when it fails, the fix search."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vramcalc.core.assess import Assessment, Deployment, LayoutKind, Miss, Request, assess, by_users
from vramcalc.core.fixes import Fix, most_users, search
from vramcalc.errors import PlanError, VramcalcError
from vramcalc.specs import GpuSpec

__all__ = ["CheckResult", "Fix", "Miss", "Planned", "check", "check_all"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One deployment from a plan file, resolved: where it was written, and what to assess."""

    name: str
    source: str  # the plan file, as given (for reports and annotations)
    line: int | None
    request: Request  # model, engine, format, workload, headroom and goals
    gpu: GpuSpec
    count: int
    layout: LayoutKind

    @property
    def deployment(self) -> Deployment:
        return self.request.on(self.gpu, self.count, self.layout)

    @property
    def replicas(self) -> int:
        return self.deployment.replicas

    @property
    def users_per_replica(self) -> int:
        return self.deployment.users_per_replica

    @property
    def tp(self) -> int:
        return self.deployment.tp

    @property
    def pp(self) -> int:
        return self.deployment.pp


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The assessment of one planned deployment, and, when it fails, what would make it pass."""

    planned: Planned
    assessment: Assessment
    most_users: int | None  # when it fails: the most users that pass as planned (0: none)
    fixes: tuple[Fix, ...]

    @property
    def passed(self) -> bool:
        return self.assessment.passes

    @property
    def misses(self) -> tuple[Miss, ...]:
        return self.assessment.misses


def check(p: Planned) -> CheckResult:
    """Assess one deployment as estimate and recommend do; search fixes when it fails."""
    d = p.deployment
    a = assess(d)
    if a.passes:
        return CheckResult(p, a, None, ())
    return CheckResult(p, a, most_users(d), search(d, a))


def users_curve(p: Planned, most: int = 24) -> tuple[Assessment, ...]:
    """The deployment assessed at 1..users (at most `most` counts, evenly spaced, both ends kept):
    the rows of the chart in check's Markdown report."""
    n = p.request.users
    counts = (
        sorted({1 + round(i * (n - 1) / (most - 1)) for i in range(most)}) if n > most else range(1, n + 1)
    )
    return by_users(p.deployment, list(counts))


def check_all(planned: Iterable[Planned]) -> list[CheckResult]:
    """Check every deployment; a deployment the estimator refuses (a setting the engine lacks, a
    context beyond the model) is bad input: all such problems are raised together, one line each."""
    results: list[CheckResult] = []
    errors: list[str] = []
    for p in planned:
        try:
            results.append(check(p))
        except VramcalcError as exc:
            errors.append(f"{p.source}:{p.line or 1}: {p.name}: {exc}")
    if errors:
        raise PlanError(errors)
    return results
