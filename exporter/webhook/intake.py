"""From a validated notification to engine submissions, one alert at a time."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from exporter.config.webhook import WebhookConfig
from exporter.recovery.engine import RecoveryEngine
from exporter.recovery.types import FailureEvent
from exporter.webhook.matchers import Matcher, matches_all, parse_matcher
from exporter.webhook.models import Alert, Notification

log = logging.getLogger(__name__)

# Engine answers to what the webhook reports per alert.
_RESULTS = {
    "accepted": "accepted",
    "duplicate": "duplicate",
    "ignored_resolved": "ignored",
    "unknown_failure_type": "ignored",
    "queue_full": "refused",
    "stopped": "refused",
}


@dataclass
class Summary:
    """The 202 body: how many alerts went where."""

    accepted: int = 0
    duplicate: int = 0
    ignored: int = 0
    resolved: int = 0
    refused: int = 0
    details: list[dict[str, str]] = field(default_factory=list)
    persisted: Future[bool] | None = None
    """The last accepted event's commit, to wait for before answering: accepted events must
    survive a crash. The database commits in queue order, so it covers the earlier ones."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "ignored": self.ignored,
            "resolved": self.resolved,
            "refused": self.refused,
            "alerts": self.details,
        }


class Intake:
    """Routes each alert to a failure type and hands it to the engine."""

    def __init__(self, config: WebhookConfig, engine: RecoveryEngine) -> None:
        self._routes: list[tuple[list[Matcher], str]] = [
            ([parse_matcher(m) for m in route.matchers], route.failure_type)
            for route in config.routes
        ]
        self._annotation = config.failure_type_annotation
        self._engine = engine
        self._lock = threading.Lock()
        self.alert_counts: dict[tuple[str, str], int] = {}
        self.truncated = 0

    def route(self, alert: Alert) -> str | None:
        """The failure type for a firing alert, or None when no route takes it.

        An annotation may pick the failure type only when the config names the annotation,
        and only among the failure types the config has ladders for: an alert can choose,
        never add.
        """
        if self._annotation is not None:
            chosen = alert.annotations.get(self._annotation)
            if chosen is not None and chosen in self._engine.config.failures:
                return chosen
        for matchers, failure_type in self._routes:
            if matches_all(matchers, alert.labels):
                return failure_type
        return None

    def handle(self, notification: Notification) -> Summary:
        """Submit firing alerts, close resolved episodes; never raises for an alert."""
        summary = Summary()
        if notification.truncatedAlerts:
            log.warning(
                "Alertmanager truncated %d alerts of group %s; raise max_alerts on the receiver",
                notification.truncatedAlerts, notification.groupKey,
            )  # fmt: skip
            with self._lock:
                self.truncated += notification.truncatedAlerts
        for alert in notification.alerts:
            status, result, detail = alert.status, *self._one(alert, summary)
            setattr(summary, result, getattr(summary, result) + 1)
            summary.details.append(
                {"fingerprint": alert.fingerprint, "status": status, "result": result,
                 "detail": detail}
            )  # fmt: skip
            with self._lock:
                key = (status, result)
                self.alert_counts[key] = self.alert_counts.get(key, 0) + 1
        return summary

    def _one(self, alert: Alert, summary: Summary) -> tuple[str, str]:
        if alert.status == "resolved":
            cancelled = self._engine.resolve(alert.episode)
            return "resolved", "queued attempt cancelled" if cancelled else "episode closed"
        failure_type = self.route(alert)
        if failure_type is None:
            return "ignored", "no route matches"
        event = FailureEvent(
            failure_type,
            "alert",
            dict(alert.labels),
            dedup_key=alert.episode,
            fingerprint=alert.fingerprint,
            starts_at=alert.startsAt,
            detail=alert.annotations.get("summary", "")[:500],
        )
        submission = self._engine.submit(event)
        if submission.persisted is not None:
            summary.persisted = submission.persisted
        return _RESULTS.get(submission.result, "refused"), submission.detail or failure_type
