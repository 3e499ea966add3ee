"""Local triggers: a check that becomes failing runs its failure type's ladder.

The seeds' FallbackRecoverySystem recovered from its own health monitoring; here a check
with `trigger: FAILURE_TYPE` does, so one host recovers with no Prometheus or Alertmanager
in the path (and when the network is what failed). The event passes the same claim and
gates as an alert. One failing streak is one episode (its key is the streak's first
failure); the streak ending closes it, as a resolved alert would — except for a log check,
whose streak is an event's hold time, not the service's state. With Alertmanager peers
configured, an active silence matching the trigger's labels holds it until it expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from exporter.checks import CheckResult, HealthChecker
from exporter.recovery.engine import RecoveryEngine
from exporter.recovery.types import FailureEvent

log = logging.getLogger(__name__)

RESULTS = ("accepted", "duplicate", "held_silenced", "refused")
"""What became of a trigger: medic_check_triggers_total's result label."""
ALERTNAME = "MedicLocalTrigger"
"""The alertname a local trigger carries, for silences and the journal's labels."""


class Silences(Protocol):
    """Active silences of the Alertmanager cluster medic knows."""

    def holding(self, labels: Mapping[str, str]) -> str | None:
        """The id of an active silence whose matchers all match, or None."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class LocalTriggers:
    """A HealthChecker listener: submits a check's failure type when it becomes failing."""

    def __init__(
        self,
        health: HealthChecker,
        engine: RecoveryEngine,
        triggers: Mapping[str, str],
        host_labels: Mapping[str, str],
        *,
        silences: Silences | None = None,
        on_change: Callable[[], None] = lambda: None,
        events: frozenset[str] = frozenset(),
    ) -> None:
        """triggers: check name -> failure type; host_labels: what names this host in the
        trigger's labels (node, instance …), so silences by host hold it. `events`: checks
        that report events (a log line), not states: their streak ending says nothing about
        recovery, so it does not close the episode."""
        self._health, self._engine = health, engine
        self._triggers = dict(triggers)
        self._host = dict(host_labels)
        self._silences = silences
        self._on_change = on_change
        self._events = events
        self._lock = threading.Lock()
        self._fired: dict[str, str] = {}  # check -> the episode key of its failing streak
        self._held: dict[str, str] = {}  # check -> the silence holding it (logged once)
        self.counts: dict[tuple[str, str], int] = {
            (check, result): 0 for check in self._triggers for result in RESULTS
        }

    def labels(self, check: str) -> dict[str, str]:
        """The labels a trigger of this check carries (silences match on them)."""
        failure_type = self._triggers[check]
        return {**self._host, "alertname": ALERTNAME, "check": check,
                "failure_type": failure_type, "medic_failure_type": failure_type}  # fmt: skip

    def __call__(self, result: CheckResult | None) -> None:
        """After each run of a check with a trigger (from the thread that ran it)."""
        if result is None or result.name not in self._triggers:
            return
        name = result.name
        streak = self._health.streak(name)
        key = f"check:{name}:{streak.since:.6f}"
        with self._lock:
            fired = self._fired.get(name)
        if not streak.failing:
            if fired is not None:
                with self._lock:
                    self._fired.pop(name, None)
                if name not in self._events:
                    self._engine.resolve(fired)  # the streak ended: as a resolved alert
            return
        if fired == key:
            return  # this streak is handled
        labels = self.labels(name)
        silence = self._silences.holding(labels) if self._silences is not None else None
        if silence is not None:
            if self._held.get(name) != silence:
                log.info("check %s is failing; silence %s holds its %s trigger",
                         name, silence, self._triggers[name])  # fmt: skip
                self._held[name] = silence
            self._count(name, "held_silenced")
            return
        self._held.pop(name, None)
        event = FailureEvent(
            self._triggers[name], "check", labels, dedup_key=key,
            detail=f"check {name} failing: {result.reason}"[:500],
        )  # fmt: skip
        submission = self._engine.submit(event)
        if submission.result in ("accepted", "duplicate"):
            with self._lock:
                self._fired[name] = key
            self._count(name, submission.result)
        else:  # refused (queue full, journal down, stopping): the next run tries again
            self._count(name, "refused")

    def close(self) -> None:
        """Release the silences' connections (medic's stop)."""
        if self._silences is not None:
            self._silences.close()

    def _count(self, check: str, result: str) -> None:
        with self._lock:
            self.counts[(check, result)] += 1
        self._on_change()
