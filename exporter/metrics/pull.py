"""Pull-mode families: polls of Alertmanager's API, per peer, and what the alerts became.

Every series exists from the first scrape (at 0), so an alert on a rate works at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.webhook.pull import Puller


class PullCollector(Collector):
    """medic_alertmanager_poll_* from the puller's stats."""

    def __init__(self, puller: Puller) -> None:
        self._puller = puller

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def version(self) -> int:
        """Changes with every poll."""
        return self._puller.stats.version

    def collect(self) -> Iterator[Metric]:
        """The pull families."""
        stats = self._puller.stats
        requests = CounterMetricFamily(
            "medic_alertmanager_poll_requests",
            "Requests to Alertmanager's API v2, by peer and result (success or error).",
            labels=["peer", "result"],
        )
        for (peer, result), count in sorted(dict(stats.requests).items()):
            requests.add_metric([peer, result], count)
        yield requests
        durations = HistogramMetricFamily(
            "medic_alertmanager_poll_duration_seconds",
            "How long a poll took, failing over between peers included.",
        )
        polled = stats.durations.copy()
        durations.add_metric([], polled.samples(), polled.total)
        yield durations
        yield GaugeMetricFamily(
            "medic_alertmanager_poll_last_success_timestamp_seconds",
            "When a peer last answered a poll (0: never).", value=stats.last_success,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "medic_alertmanager_poll_alerts",
            "Alerts the last successful poll returned (after the pushed-down filters).",
            value=stats.last_alerts,
        )
        yield GaugeMetricFamily(
            "medic_alertmanager_poll_failing",
            "Polls in a row that no peer answered.", value=stats.failing,
        )  # fmt: skip
        alerts = CounterMetricFamily(
            "medic_alertmanager_poll_alerts",
            "Pulled alerts by what medic did with them when they appeared or went away.",
            labels=["result"],
        )
        for result, count in sorted(dict(stats.alerts).items()):
            alerts.add_metric([result], count)
        yield alerts
