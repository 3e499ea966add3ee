"""One episode: a failure medic accepted, from its claim to its final state."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import NamedTuple

from exporter.recovery.types import QUEUED, FailureEvent, RecoveryAttempt


class Launch(NamedTuple):
    """Who a command's process is: its pid, its start time (clock ticks after boot, from
    /proc/PID/stat) and the boot it started in. A pid alone could be reused."""

    pid: int
    start: int
    boot_id: str


@dataclass(eq=False, slots=True)
class Episode:
    """An accepted failure event and where its ladder stands.

    Mutated only under the claims lock (arrival threads and the engine's loop both touch
    it). `rung` is the index of the rung running, or of the next one to start.
    """

    id: int
    event: FailureEvent
    received: float
    state: str = QUEUED
    rung: int = 0
    resolved: bool = False
    interruptions: int = 0
    claimed: Future[bool] | None = None
    """The claim's commit: nothing runs until it resolves True (None: no journal)."""
    attempt: RecoveryAttempt | None = None
    """The rung in flight: set from its start record until its end is recorded."""
    launch: Launch | None = None
    """The in-flight rung's command process, once recorded."""
    started: bool = False
    """A rung has been committed to start: a resolved alert can no longer cancel it."""
    dropped: bool = False
    """Its claim failed to commit and its source retries (an alert): it never existed."""
    unclaimed: bool = False
    """Its claim failed to commit but nobody retries it (the app's own report): the claim
    is written again before its first action, which waits until that commits."""
    resume: str | None = None
    """After a restart: what to do with the rung that was in flight (see resume.py)."""

    @property
    def key(self) -> str | None:
        """The dedup key (alerts: fingerprint@startsAt); None for one-off reports."""
        return self.event.dedup_key

    @property
    def failure_type(self) -> str:
        """The failure type whose ladder this episode walks."""
        return self.event.failure_type
