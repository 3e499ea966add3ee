"""Recovery families: attempts by outcome, durations, in progress, cooldowns, queue, journal."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.recovery.engine import RecoveryEngine
from exporter.recovery.triggers import LocalTriggers


class RecoveryCollector(Collector):
    """Reads the engine's counters; never touches the journal's disk."""

    def __init__(self, engine: RecoveryEngine) -> None:
        self._engine = engine

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every recovery family."""
        snap = self._engine.snapshot()
        attempts = CounterMetricFamily(
            "medic_recovery_attempts", "Recovery attempts by failure type, action and outcome.",
            labels=["failure_type", "action", "outcome"],
        )  # fmt: skip
        for (failure_type, action, outcome), count in sorted(snap["attempts"].items()):
            attempts.add_metric([failure_type, action, outcome], count)
        yield attempts
        durations = HistogramMetricFamily(
            "medic_recovery_duration_seconds", "How long recovery actions ran.",
            labels=["action"],
        )  # fmt: skip
        for action, histogram in sorted(snap["durations"].items()):
            durations.add_metric([action], histogram.samples(), histogram.total)
        yield durations
        yield GaugeMetricFamily(
            "medic_recovery_in_progress", "Ladders running now.", value=snap["in_progress"]
        )
        yield GaugeMetricFamily(
            "medic_recovery_disruptive_in_progress",
            "Disruptive rungs (restarts, commands …) running now; the fleet guard counts hosts "
            "with one.", value=snap["disruptive_in_progress"],
        )  # fmt: skip
        cooldown = GaugeMetricFamily(
            "medic_recovery_cooldown_until_timestamp_seconds",
            "When the failure type's cooldown ends (0: none); recovery is skipped before then.",
            labels=["failure_type"],
        )
        for failure_type, until in sorted(self._engine.cooldowns().items()):
            cooldown.add_metric([failure_type], until)
        yield cooldown
        yield GaugeMetricFamily(
            "medic_recovery_queue_length",
            "Accepted episodes whose ladder has not started.",
            value=snap["queue"],
        )
        resumed = CounterMetricFamily(
            "medic_recovery_resumed_episodes",
            "Open episodes a start found in the journal, by what it did with them.",
            labels=["how"],
        )
        for how, count in sorted(snap["resumed"].items()):
            resumed.add_metric([how], count)
        yield resumed
        altered = CounterMetricFamily(
            "medic_recovery_command_labels_altered",
            "Alert label values changed on their way into a command's environment: "
            "nul_dropped (a NUL byte: not passed), truncated (cut at 4096 characters).",
            labels=["how"],
        )
        for how, count in sorted(snap["labels_altered"].items()):
            altered.add_metric([how], count)
        yield altered
        events = CounterMetricFamily(
            "medic_recovery_events", "Failure events submitted, by what became of them.",
            labels=["result"],
        )  # fmt: skip
        for result, count in sorted(snap["events"].items()):
            events.add_metric([result], count)
        yield events
        yield GaugeMetricFamily(
            "medic_recovery_journal_up", "1 while the journal's writes reach the disk.",
            value=1.0 if self._engine.journal_healthy else 0.0,
        )  # fmt: skip


class TriggerCollector(Collector):
    """medic_check_triggers_total: what became of each local trigger (born at 0)."""

    def __init__(self, triggers: LocalTriggers) -> None:
        self._triggers = triggers

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One series per check with a trigger and result."""
        family = CounterMetricFamily(
            "medic_check_triggers",
            "Local triggers of checks that became failing, by what became of them: accepted, "
            "duplicate, held_silenced (an Alertmanager silence holds it), refused.",
            labels=["check", "result"],
        )
        for (check, result), count in sorted(dict(self._triggers.counts).items()):
            family.add_metric([check, result], count)
        yield family
