"""What a check is, what it returns, and how results add up to a health status."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Observation:
    """What one run of a probe saw: facts to export, and problems that make the check fail.

    A probe may also return True/None (healthy, nothing to export) or False (failed).
    """

    facts: tuple[object, ...] = ()
    problems: tuple[str, ...] = ()
    skipped: str = ""
    """Why this run did not probe at all (a request still in flight, the server busy making
    progress): neither a pass nor a failure; the check's state stays as it was."""


@dataclass(frozen=True, slots=True)
class ProbeFact:
    """What one run of a probe of the model server (http, tcp) saw."""

    kind: str
    success: bool
    duration: float
    status_code: int | None = None


ProbeResult = Observation | bool | None
Probe = Callable[[], ProbeResult]


@runtime_checkable
class ManagedProbe(Protocol):
    """A probe that owns something (a helper process) and can say it is stuck on it."""

    def __call__(self) -> ProbeResult:
        """Run once."""
        ...

    def stuck(self) -> bool:
        """True while an abandoned call of this probe has not returned."""
        ...

    def close(self) -> None:
        """Release what it owns without waiting on anything that may hang."""
        ...


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A named probe and how it is scheduled; the seeds' HealthChecker registered these."""

    name: str
    probe: Probe
    interval: float = 15.0
    timeout: float = 5.0
    critical: bool = False
    enabled: bool = True
    failure_threshold: int = 1
    """Failed runs in a row that make the check failing (its streak; Kubernetes' name)."""
    success_threshold: int = 1
    """Passed runs in a row that end a failing streak."""
    start_period: float = 0.0
    """Seconds after registration in which failures are not counted."""

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError(f"check {self.name!r}: interval and timeout must be > 0")
        if self.failure_threshold < 1 or self.success_threshold < 1 or self.start_period < 0:
            raise ValueError(f"check {self.name!r}: thresholds must be >= 1, start_period >= 0")


@dataclass(frozen=True, slots=True)
class Streak:
    """Where a check stands over its recent runs: failing once `failure_threshold` runs in
    a row failed, until `success_threshold` runs in a row pass."""

    failing: bool = False
    since: float = 0.0
    """Wall-clock time of the first counted failure of the current (or last) streak."""
    failures: int = 0
    successes: int = 0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one run of a check."""

    name: str
    ok: bool
    reason: str
    """Empty when ok; else "timeout", "stuck", "ErrorClass: message" or the probe's problems."""
    started_at: float
    """Wall-clock seconds since the epoch."""
    duration: float
    facts: tuple[object, ...] = field(default=())


class SystemHealthStatus(enum.StrEnum):
    """Overall health, as in the seeds: any failing critical check makes the host unhealthy."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


def overall_status(results: dict[str, CheckResult], critical: set[str]) -> SystemHealthStatus:
    """Healthy when all pass; unhealthy when a critical check fails; degraded otherwise."""
    failing = {name for name, result in results.items() if not result.ok}
    if failing & critical:
        return SystemHealthStatus.UNHEALTHY
    if failing:
        return SystemHealthStatus.DEGRADED
    return SystemHealthStatus.HEALTHY
