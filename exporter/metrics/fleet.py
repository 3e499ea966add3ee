"""Fleet families: held rungs by reason, this host's slots, guard answers, etcd requests."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.fleet.gate import REASONS, FleetGate
from exporter.fleet.semaphore import OPS


class FleetCollector(Collector):
    """Reads the fleet stage's state; every series an alert uses exists at 0."""

    def __init__(self, fleet: FleetGate) -> None:
        self._fleet = fleet

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every fleet family."""
        fleet = self._fleet
        held = GaugeMetricFamily(
            "medic_fleet_held_rungs",
            "Disruptive rungs the fleet holds now, by reason: limit (a budget is exceeded), "
            "unknown (Prometheus or etcd does not answer; fail closed), slot (waited "
            "hold_after for a slot). A person is needed (medic fleet status / release).",
            labels=["reason"],
        )
        counts = dict.fromkeys(REASONS.values(), 0)
        for each in list(fleet.held.values()):
            counts[REASONS[each.outcome]] += 1
        for reason, n in sorted(counts.items()):
            held.add_metric([reason], n)
        yield held
        if fleet.semaphore is not None:
            slots = dict(fleet.slots)
            yield GaugeMetricFamily(
                "medic_fleet_slots_held", "Fleet slots (one per scope each) this host holds now.",
                value=len(slots),
            )  # fmt: skip
            since = GaugeMetricFamily(
                "medic_fleet_slot_held_since_timestamp_seconds",
                "When this host took its oldest slot it still holds (absent: none).",
            )
            if slots:
                since.add_metric([], min(slots.values()))
            yield since
            yield CounterMetricFamily(
                "medic_fleet_slot_leases_lost",
                "Slots whose lease expired while their rung ran (etcd unreachable for the TTL).",
                value=fleet.lost,
            )  # fmt: skip
            requests = CounterMetricFamily(
                "medic_fleet_etcd_requests", "Requests to etcd by operation and result.",
                labels=["op", "result"],
            )  # fmt: skip
            for op in OPS:
                for result in ("ok", "error"):
                    requests.add_metric([op, result], fleet.semaphore.requests[(op, result)])
            yield requests
        if fleet.guard is not None:
            answers = CounterMetricFamily(
                "medic_fleet_guard_answers",
                "The blast-radius guard's answers: ok, over (a budget exceeded), unknown "
                "(Prometheus did not answer).",
                labels=["answer"],
            )
            for answer, n in sorted(fleet.guard_answers.items()):
                answers.add_metric([answer], n)
            yield answers
        wait = HistogramMetricFamily(
            "medic_fleet_wait_seconds",
            "How long disruptive rungs waited for the guard and a slot before they ran.",
        )
        wait.add_metric([], fleet.wait.samples(), fleet.wait.total)
        yield wait
