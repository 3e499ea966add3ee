"""`medic explain ALERT.json`: what medic would do with an alert, without doing any of it.

For each alert of a webhook body (or a single alert, or a list): whether it is this host's,
which route takes it to which failure type, the ladder and verification it would run, and
the gates it would meet on the way, with their configured figures. Nothing is claimed,
journaled or run; no running medic is needed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from exporter.config import Config
from exporter.config.recovery import ActionConfig, FailureConfig
from exporter.config.references import BUILTIN_ACTIONS
from exporter.webhook.identity import Identity
from exporter.webhook.intake import Router
from exporter.webhook.models import Alert, Notification


class ExplainError(Exception):
    """The input is not an alert, a list of alerts or an Alertmanager webhook body."""


def read_alerts(text: str) -> list[Alert]:
    """Alerts from a webhook body, a JSON list of alerts, or one alert."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExplainError(f"not JSON: {exc}") from None
    try:
        if isinstance(data, dict) and "alerts" in data:
            return list(Notification.model_validate(data).alerts)
        items = data if isinstance(data, list) else [data]
        return [Alert.model_validate(_as_webhook_alert(item)) for item in items]
    except (ValidationError, TypeError) as exc:
        raise ExplainError(f"not an Alertmanager webhook body or alert: {exc}") from None


def _as_webhook_alert(item: Any) -> Any:
    """A hand-written alert or one from Alertmanager's API v2 (`GET /api/v2/alerts`, whose
    status is an object) in the webhook's shape: firing unless it says resolved."""
    if not isinstance(item, dict):
        return item
    alert = {"status": "firing", "fingerprint": "-", "startsAt": "1970-01-01T00:00:00Z", **item}
    if not isinstance(alert["status"], str):
        alert["status"] = "firing"
    return alert


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _action(name: str, actions: dict[str, ActionConfig]) -> str:
    spec = actions.get(name)
    if spec is None:
        return "built in" if name in BUILTIN_ACTIONS else "not defined"
    return spec.describe()


def _gates(config: Config, failure_type: str, spec: FailureConfig) -> list[str]:
    recovery = config.recovery
    cooldown = spec.cooldown or recovery.cooldown
    return [
        "identity and claim: the episode (fingerprint, startsAt) is handled once; a repeat "
        "is skipped_duplicate",
        f"cooldown: {_duration(cooldown.base)} after a ladder of {failure_type}, "
        f"x{cooldown.multiplier:g} after each that failed, at most {_duration(cooldown.max)} "
        "(skipped_cooldown)",
        f"one ladder of {failure_type} at a time; {recovery.max_waiting_per_type} more may "
        "wait (skipped_concurrency)",
        f"before each rung: the action's breaker opens after {recovery.action_breaker_failures}"
        f" failures in a row, for {_duration(recovery.action_breaker_wait)} "
        "(skipped_breaker_open)",
        f"before each rung: at most {recovery.rate_limit.actions} rungs per "
        f"{_duration(recovery.rate_limit.per)} across all failure types (skipped_rate_limit)",
        "dry run: on, nothing would run (dry_run)" if recovery.dry_run else "dry run: off",
    ]


def explain(config: Config, alerts: list[Alert], identity: Identity | None = None) -> list[
    dict[str, Any]
]:  # fmt: skip
    """What medic would decide for each alert, as plain data."""
    identity = identity or Identity.from_config(config.identity)
    router = Router(config.webhook, config.recovery.failures)
    out = []
    for alert in alerts:
        verdict = identity.check(alert.labels)
        failure_type, decided_by = router.which(alert)
        entry: dict[str, Any] = {
            "alert": alert.labels.get("alertname", ""),
            "labels": dict(alert.labels),
            "status": alert.status,
            "episode": alert.episode,
            "this_host": verdict.mine,
            "host": verdict.reason,
            "route": decided_by,
            "failure_type": failure_type,
        }
        if not verdict.mine:
            entry["outcome"] = "ignored: another host's alert (counted ignored_other_host)"
        elif failure_type is None:
            entry["outcome"] = "ignored: no route matches (counted ignored)"
        elif alert.status == "resolved":
            entry["outcome"] = "resolved: closes the episode, cancelling an attempt still queued"
        else:
            spec = config.recovery.failures[failure_type]
            entry["ladder"] = [
                {"action": rung.action, "does": _action(rung.action, config.recovery.actions),
                 "timeout": rung.timeout}
                for rung in spec.ladder
            ]  # fmt: skip
            entry["verify"] = list(spec.verify)
            entry["settle_delay"] = spec.settle_delay
            entry["gates"] = _gates(config, failure_type, spec)
            entry["outcome"] = "accepted: the ladder runs, rung by rung, until verify passes"
        out.append(entry)
    return out


def render(entries: list[dict[str, Any]]) -> str:
    """The explanation for people."""
    lines: list[str] = []
    for entry in entries:
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(entry["labels"].items()))
        lines.append(f"{entry['alert'] or '(no alertname)'} {{{labels}}} {entry['status']}")
        lines.append(f"  episode   {entry['episode']}")
        host = "this host's" if entry["this_host"] else "not this host's"
        lines.append(f"  host      {host} ({entry['host']})")
        target = f" -> {entry['failure_type']}" if entry["failure_type"] else ""
        lines.append(f"  route     {entry['route']}{target}")
        for index, rung in enumerate(entry.get("ladder", []), 1):
            head = "  ladder   " if index == 1 else "           "
            lines.append(f"{head} {index}. {rung['action']}: {rung['does']} "
                         f"(timeout {_duration(rung['timeout'])})")  # fmt: skip
        if "verify" in entry:
            checks = ", ".join(entry["verify"]) or "none: a rung that succeeds ends the ladder"
            lines.append(f"  verify    {checks} (after each rung, settle "
                         f"{_duration(entry['settle_delay'])})")  # fmt: skip
        for index, gate in enumerate(entry.get("gates", []), 1):
            head = "  gates    " if index == 1 else "           "
            lines.append(f"{head} {index}. {gate}")
        lines.append(f"  outcome   {entry['outcome']} (nothing was run)")
        lines.append("")
    return "\n".join(lines).rstrip("\n")
