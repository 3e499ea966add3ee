"""Failure events, attempt records and outcomes (the seeds' names)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.StrEnum):
    """How one attempt ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    NOT_RECOVERED = "not_recovered"
    SKIPPED_UNAVAILABLE = "skipped_unavailable"
    SKIPPED_COOLDOWN = "skipped_cooldown"
    SKIPPED_BREAKER_OPEN = "skipped_breaker_open"
    SKIPPED_DUPLICATE = "skipped_duplicate"
    SKIPPED_CONCURRENCY = "skipped_concurrency"
    SKIPPED_RATE_LIMIT = "skipped_rate_limit"
    SKIPPED_TARGET_BUSY = "skipped_target_busy"
    """Another ladder's rung is acting on the same target (a unit, a container …) now."""
    SKIPPED_TARGET_COOLDOWN = "skipped_target_cooldown"
    """The target rests after a disruptive action, whichever failure type asks."""
    SKIPPED_TARGET_BUDGET = "skipped_target_budget"
    """The target had its budget of disruptive actions in the window."""
    HELD_FLEET_LIMIT = "held_fleet_limit"
    """A fleet budget is exceeded (fleet.guard): the rung waits for the fleet or a person."""
    HELD_FLEET_UNKNOWN = "held_fleet_unknown"
    """Prometheus or etcd does not answer and the fail mode is hold."""
    HELD_FLEET_SLOT = "held_fleet_slot"
    """The rung waited fleet.semaphore.hold_after for a slot and still waits."""
    DRY_RUN = "dry_run"
    INTERRUPTED = "interrupted"
    EXHAUSTED = "exhausted"
    CANCELLED = "cancelled"
    """The episode was resolved before its next rung started."""


RAN = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TIMEOUT, Outcome.NOT_RECOVERED})
"""Outcomes of an attempt whose action really executed (for commands: the process ran)."""

QUEUED = "queued"
RUNNING = "running"
OPEN_STATES = frozenset({QUEUED, RUNNING})
"""An episode is open while queued or running; every other state is final (an Outcome's
value: succeeded, exhausted, cancelled, skipped_*, dry_run, interrupted), or "resolved" for
a resolved alert medic never saw firing."""
RESOLVED = "resolved"


LADDER = "ladder"
"""The action name on records about a whole ladder (exhausted, cooldown, duplicate)."""


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """Something to remediate: from an alert, the embedding app, or an operator."""

    failure_type: str
    source: str
    """"alert", "app", "api" or "check" (a local trigger)."""
    labels: dict[str, str] = field(default_factory=dict)
    dedup_key: str | None = None
    """Same key, same episode: handled once. An alert's is fingerprint + startsAt."""
    fingerprint: str | None = None
    starts_at: str | None = None
    detail: str = ""


@dataclass(slots=True)
class RecoveryAttempt:
    """One row of the journal: an action tried (or skipped) for a failure."""

    id: int
    failure_type: str
    action: str
    source: str
    started: float
    outcome: Outcome = Outcome.RUNNING
    ended: float | None = None
    detail: str = ""
    dry_run: bool = False
    fingerprint: str | None = None
    starts_at: str | None = None
    dedup_key: str | None = None
    episode_id: int | None = None
    rung: int | None = None
    """Index of the rung in its ladder; None on records about the whole ladder."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "failure_type": self.failure_type,
            "action": self.action,
            "source": self.source,
            "started": self.started,
            "ended": self.ended,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "dry_run": self.dry_run,
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at,
            "dedup_key": self.dedup_key,
            "episode_id": self.episode_id,
            "rung": self.rung,
        }


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action reports: ok, failed, or unavailable here (skipped with a reason)."""

    ok: bool
    detail: str = ""
    unavailable: bool = False
