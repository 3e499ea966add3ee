"""From an alert to the engine: identity, route, claim. Shared by push (the webhook) and pull
(polling Alertmanager), so both answer the same way and share episode identity."""

from __future__ import annotations

import logging
import threading
from collections.abc import Container
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.config.webhook import WebhookConfig
from exporter.recovery.engine import RecoveryEngine
from exporter.recovery.types import FailureEvent
from exporter.webhook.identity import Identity
from exporter.webhook.matchers import Matcher, any_of, matches_all, parse_matcher
from exporter.webhook.models import Alert, Notification

log = logging.getLogger(__name__)

# Engine answers to what an alert's answer reports.
_RESULTS = {
    "accepted": "accepted",
    "duplicate": "duplicate",
    "ignored_resolved": "ignored",
    "unknown_failure_type": "ignored",
    "queue_full": "refused",
    "journal_down": "refused",
    "stopped": "refused",
}


class Answer(NamedTuple):
    """What became of one alert."""

    result: str
    """accepted | duplicate | ignored | resolved | refused"""
    detail: str
    persisted: Future[bool] | None = None
    """The claim's commit the answer must wait for."""
    counted_as: str = ""
    """The result as medic_webhook_alerts_total counts it, when it says more (other host)."""


@dataclass
class Summary:
    """The 202 body: how many alerts went where."""

    accepted: int = 0
    duplicate: int = 0
    ignored: int = 0
    resolved: int = 0
    refused: int = 0
    details: list[dict[str, str]] = field(default_factory=list)
    persisted: list[Future[bool]] = field(default_factory=list)
    """Claims to wait for before answering: accepted alerts must survive a crash, and a
    duplicate is only a duplicate of something the journal holds."""
    seen: set[int] = field(default_factory=set, repr=False)
    """Ids of the futures in persisted (batches share one)."""

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


class Router:
    """Which failure type an alert becomes: webhook.routes in order, or the annotation."""

    def __init__(self, config: WebhookConfig, failures: Container[str]) -> None:
        """`failures`: the failure types with a ladder (read at each alert)."""
        self.routes: list[tuple[list[Matcher], str]] = [
            ([parse_matcher(m) for m in route.matchers], route.failure_type)
            for route in config.routes
        ]
        self._said = [", ".join(route.matchers) for route in config.routes]
        self.annotation = config.failure_type_annotation
        self._failures = failures

    def which(self, alert: Alert) -> tuple[str | None, str]:
        """The failure type (None when no route takes the alert) and what decided it.

        An annotation may pick the failure type only when the config names the annotation,
        and only among the failure types the config has ladders for: an alert can choose,
        never add.
        """
        if self.annotation is not None:
            chosen = alert.annotations.get(self.annotation)
            if chosen is not None and chosen in self._failures:
                return chosen, f"annotation {self.annotation}"
        for index, (matchers, failure_type) in enumerate(self.routes):
            if matches_all(matchers, alert.labels):
                return failure_type, f"webhook.routes[{index}] ({self._said[index]})"
        return None, "no route matches"

    def route(self, alert: Alert) -> str | None:
        """The failure type for an alert, or None when no route takes it."""
        return self.which(alert)[0]


class Intake:
    """Decides each alert: not this host's, not routed, resolved, or claimed."""

    def __init__(self, config: WebhookConfig, engine: RecoveryEngine, identity: Identity) -> None:
        self.router = Router(config, engine.config.failures)
        self._engine = engine
        self.identity = identity
        self._lock = threading.Lock()
        self.alert_counts: dict[tuple[str, str], int] = {}
        self.truncated = 0

    def route(self, alert: Alert) -> str | None:
        """The failure type for an alert, or None when no route takes it."""
        return self.router.route(alert)

    def filters(self) -> list[str]:
        """Alertmanager filter matchers that keep every alert this intake could take: the
        identity's and the routes', where each can be said as one matcher (see any_of)."""
        found = [self.identity.pushdown()]
        routes = self.router.routes
        if self.router.annotation is None and all(len(ms) == 1 for ms, _ in routes):
            found.append(any_of([ms[0] for ms, _ in routes]))  # None when no routes
        return [f for f in found if f]

    def handle(self, notification: Notification) -> Summary:
        """Every alert of a pushed notification; never raises for an alert."""
        summary = self.begin(notification)
        self.take(summary, notification.alerts)
        return summary

    def begin(self, notification: Notification) -> Summary:
        """A notification's summary, before its alerts (see take)."""
        if notification.truncatedAlerts:
            log.warning(
                "Alertmanager truncated %d alerts of group %s; raise max_alerts on the receiver",
                notification.truncatedAlerts, notification.groupKey,
            )  # fmt: skip
            with self._lock:
                self.truncated += notification.truncatedAlerts
        return Summary()

    def take_on_engine(self, summary: Summary, alerts: list[Alert]) -> Future[None]:
        """take(), on the recovery engine's thread (see RecoveryEngine.run_soon)."""
        return self._engine.run_soon(lambda: self.take(summary, alerts))

    def take(self, summary: Summary, alerts: list[Alert]) -> None:
        """Decide some of a notification's alerts (all at once, or a slice at a time)."""
        seen = summary.seen
        for alert in alerts:
            answer = self.one(alert)
            setattr(summary, answer.result, getattr(summary, answer.result) + 1)
            summary.details.append(
                {"fingerprint": alert.fingerprint, "status": alert.status,
                 "result": answer.result, "detail": answer.detail}
            )  # fmt: skip
            if answer.persisted is not None and id(answer.persisted) not in seen:
                seen.add(id(answer.persisted))
                summary.persisted.append(answer.persisted)
            self.count(alert.status, answer)

    def count(self, status: str, answer: Answer) -> None:
        """Count an answer in medic_webhook_alerts_total."""
        key = (status, answer.counted_as or answer.result)
        with self._lock:
            self.alert_counts[key] = self.alert_counts.get(key, 0) + 1

    def one(self, alert: Alert) -> Answer:
        """Decide one alert (pushed or pulled)."""
        verdict = self.identity.check(alert.labels)
        if not verdict.mine:
            return Answer("ignored", f"other_host: {verdict.reason} is not this host",
                          counted_as="ignored_other_host")  # fmt: skip
        failure_type = self.route(alert)
        if alert.status == "resolved":
            if failure_type is None:
                return Answer("resolved", "no route matches; nothing to close")
            cancelled = self._engine.resolve(alert.episode)
            return Answer("resolved", "queued attempt cancelled" if cancelled else "episode closed")
        if failure_type is None:
            return Answer("ignored", "no route matches")
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
        result = _RESULTS.get(submission.result, "refused")
        return Answer(result, submission.detail or failure_type, submission.persisted)
