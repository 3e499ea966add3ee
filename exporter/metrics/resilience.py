"""Breaker, retry and degradation families, read from the objects at render time.

Every breaker shows from the first scrape after it exists, with one 0/1 series per state,
not only after its first transition.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.resilience.degradation import GracefulDegradation
from exporter.resilience.registry import BreakerRegistry
from exporter.resilience.retry import RetryManager
from exporter.resilience.state import BreakerState


class ResilienceCollector(Collector):
    """medic_circuitbreaker_*, medic_retry_calls_total, medic_component_degraded, fallbacks."""

    def __init__(
        self,
        breakers: BreakerRegistry,
        retries: RetryManager,
        degradation: GracefulDegradation,
    ) -> None:
        self._breakers = breakers
        self._retries = retries
        self._degradation = degradation

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def version(self) -> int:
        """Changes whenever anything this collector reports changes."""
        return self._breakers.version() + self._retries.version + self._degradation.version

    def collect(self) -> Iterator[Metric]:
        """Read every object once and emit its families."""
        yield from self._breaker_families()
        retries = CounterMetricFamily(
            "medic_retry_calls", "Calls through a retry, by outcome.", labels=["name", "kind"]
        )
        for (name, kind), count in sorted(self._retries.counts().items()):
            retries.add_metric([name, kind], count)
        yield retries
        degraded = GaugeMetricFamily(
            "medic_component_degraded", "1 while a component serves its fallback.",
            labels=["component"],
        )  # fmt: skip
        for component, is_degraded in self._degradation.degraded().items():
            degraded.add_metric([component], 1.0 if is_degraded else 0.0)
        yield degraded
        fallbacks = CounterMetricFamily(
            "medic_fallback_calls", "Calls through execute_with_fallback, by how they ended.",
            labels=["component", "kind"],
        )  # fmt: skip
        for (component, kind), count in sorted(self._degradation.counts().items()):
            fallbacks.add_metric([component, kind], count)
        yield fallbacks

    def _breaker_families(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "medic_circuitbreaker_state", "1 for the state the breaker is in, 0 for the others.",
            labels=["name", "state"],
        )  # fmt: skip
        calls = CounterMetricFamily(
            "medic_circuitbreaker_calls", "Calls the breaker let through, by outcome.",
            labels=["name", "kind"],
        )  # fmt: skip
        rejected = CounterMetricFamily(
            "medic_circuitbreaker_not_permitted_calls", "Calls the breaker refused.",
            labels=["name"],
        )  # fmt: skip
        transitions = CounterMetricFamily(
            "medic_circuitbreaker_state_transitions", "State changes.",
            labels=["name", "from_state", "to_state"],
        )  # fmt: skip
        for breaker in sorted(self._breakers.all(), key=lambda b: b.name):
            snap = breaker.snapshot()
            for each in BreakerState:
                state.add_metric([snap.name, each.value], 1.0 if snap.state is each else 0.0)
            calls.add_metric([snap.name, "successful"], snap.successful)
            calls.add_metric([snap.name, "failed"], snap.failed)
            calls.add_metric([snap.name, "ignored"], snap.ignored)
            rejected.add_metric([snap.name], snap.not_permitted)
            for (source, to), count in sorted(snap.transitions.items()):
                transitions.add_metric([snap.name, source.value, to.value], count)
        yield from (state, calls, rejected, transitions)
