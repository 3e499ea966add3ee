"""Webhook families: requests by status code, alerts by status and result."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.webhook.intake import Intake
from exporter.webhook.stats import WebhookStats


class WebhookCollector(Collector):
    """medic_webhook_requests_total, medic_webhook_alerts_total, truncated alerts."""

    def __init__(self, intake: Intake, stats: WebhookStats) -> None:
        self._intake = intake
        self._stats = stats

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def version(self) -> int:
        """Changes with every request."""
        return self._stats.version

    def collect(self) -> Iterator[Metric]:
        """The webhook families."""
        requests = CounterMetricFamily(
            "medic_webhook_requests", "Webhook requests by HTTP status code.", labels=["code"]
        )
        for code, count in sorted(self._stats.snapshot().items()):
            requests.add_metric([code], count)
        yield requests
        alerts = CounterMetricFamily(
            "medic_webhook_alerts", "Alerts received, by their status and what medic did.",
            labels=["status", "result"],
        )  # fmt: skip
        for (status, result), count in sorted(dict(self._intake.alert_counts).items()):
            alerts.add_metric([status, result], count)
        yield alerts
        yield CounterMetricFamily(
            "medic_webhook_truncated_alerts", "Alerts Alertmanager left out of notifications.",
            value=self._intake.truncated,
        )  # fmt: skip
