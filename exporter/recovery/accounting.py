"""What the engine counts and tells: metrics counters, the event stream, log lines.

Nothing here decides anything; the engine and the ladder report to it. Counters that alerts
use exist at 0 from the start (the recovery collector reads `snapshot()`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from exporter.events import EventHub
from exporter.histogram import Histogram
from exporter.recovery.types import LADDER, Outcome, RecoveryAttempt

log = logging.getLogger("exporter.recovery")

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RESUMED = ("requeued", "continued", "adopted", "finished_while_down", "never_ran",
           "interrupted")  # fmt: skip
"""What a start did with each open episode it found (see resume.py)."""
ALERTED = (Outcome.EXHAUSTED, Outcome.INTERRUPTED)
"""Ladder outcomes that page a person: their series exist at 0 per failure type."""
FAILING = (Outcome.FAILED, Outcome.TIMEOUT)
"""Rung outcomes MedicRecoveryFailing counts: their series exist at 0 per configured rung
(a counter born at its first count reads one low in increase())."""


LABEL_CHANGES = ("nul_dropped", "truncated")
"""What can happen to an alert label on its way into a command's environment: a value with
a NUL byte cannot be an environment variable (dropped); a value is cut at 4,096 chars."""


class Accounting:
    """Counters read by the metrics collector, plus events and logs for each attempt."""

    def __init__(
        self,
        ladders: Mapping[str, Iterable[str]],
        events: EventHub | None,
        on_change: Callable[[], None],
    ) -> None:
        """`ladders` maps each configured failure type to its rungs' action names."""
        self._lock = threading.Lock()
        self._events = events
        self._on_change = on_change
        self.attempts: dict[tuple[str, str, str], int] = {
            (ft, LADDER, outcome.value): 0 for ft in ladders for outcome in ALERTED
        }
        for ft, actions in ladders.items():
            for action in actions:
                for outcome in FAILING:
                    self.attempts[(ft, action, outcome.value)] = 0
        self.results: dict[str, int] = {}
        self.resumed: dict[str, int] = dict.fromkeys(RESUMED, 0)
        self.labels_altered: dict[str, int] = dict.fromkeys(LABEL_CHANGES, 0)
        self.durations: dict[str, Histogram] = {}
        self.in_progress = 0
        self.disruptive_in_progress = 0

    def started(self, attempt: RecoveryAttempt) -> None:
        """An action starts: logged (journald then says why a unit restarted, before the
        unit's own lines), and published."""
        log.info("%s: starting %s (episode %s, rung %s, attempt %d, from %s)",
                 attempt.failure_type, attempt.action, attempt.dedup_key or attempt.episode_id,
                 attempt.rung, attempt.id, attempt.source)  # fmt: skip
        if self._events is not None:
            self._events.publish("attempt_started", **attempt.as_dict())

    def finished(self, attempt: RecoveryAttempt, elapsed: float | None = None) -> None:
        """An attempt (or a record about a whole ladder) is final."""
        key = (attempt.failure_type, attempt.action, attempt.outcome.value)
        with self._lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if elapsed is not None:
                histogram = self.durations.get(attempt.action)
                if histogram is None:
                    histogram = Histogram(DURATION_BUCKETS)
                    self.durations[attempt.action] = histogram
                histogram.observe(elapsed)
        if self._events is not None:
            self._events.publish("attempt_finished", **attempt.as_dict())
        if attempt.action != LADDER or attempt.outcome in ALERTED:
            quiet = attempt.outcome in (Outcome.SUCCEEDED, Outcome.DRY_RUN)
            log.log(logging.INFO if quiet else logging.WARNING, "%s: %s %s: %s",
                    attempt.failure_type, attempt.action, attempt.outcome.value,
                    attempt.detail)  # fmt: skip
        self._on_change()

    def result(self, result: str, n: int = 1) -> None:
        """A submitted event's result (accepted, duplicate, ..., cancelled_resolved)."""
        with self._lock:
            self.results[result] = self.results.get(result, 0) + n
        self._on_change()

    def resume(self, how: str) -> None:
        """What a start did with one open episode."""
        with self._lock:
            self.resumed[how] += 1

    def label_altered(self, how: str, n: int = 1) -> None:
        """A label value reached a command changed (see external.label_environment)."""
        with self._lock:
            self.labels_altered[how] += n
        self._on_change()

    def ladder(self, delta: int) -> None:
        """A ladder starts (+1) or ends (-1)."""
        with self._lock:
            self.in_progress += delta
        self._on_change()

    def disruptive(self, delta: int) -> None:
        """A disruptive rung starts (+1) or ends (-1): what the fleet guard counts."""
        if delta:
            with self._lock:
                self.disruptive_in_progress += delta
            self._on_change()

    def snapshot(self) -> dict[str, Any]:
        """Every counter, read together."""
        with self._lock:
            return {
                "attempts": dict(self.attempts),
                "events": dict(self.results),
                "resumed": dict(self.resumed),
                "labels_altered": dict(self.labels_altered),
                "durations": {k: v.copy() for k, v in self.durations.items()},
                "in_progress": self.in_progress,
                "disruptive_in_progress": self.disruptive_in_progress,
            }
