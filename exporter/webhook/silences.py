"""Active silences from Alertmanager's API v2, so that silences hold local triggers too.

Read from the same peers, credentials and TLS as pull mode, cached for one poll interval
(a check may run every second), and failing open: when no peer answers, no silence is known
and the trigger goes on — a host cut off from the network is when it matters most.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from exporter.clock import Clock, SystemClock
from exporter.config.webhook import PullConfig
from exporter.webhook.matchers import Matcher
from exporter.webhook.pull import http_client

log = logging.getLogger(__name__)


def matchers_of(silence: Mapping[str, Any]) -> list[Matcher]:
    """An API v2 silence's matchers (isRegex, isEqual) as medic's Matchers."""
    found = []
    for raw in silence.get("matchers", []):
        regex, equal = bool(raw.get("isRegex")), raw.get("isEqual", True) is not False
        op = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
        value = str(raw.get("value", ""))
        found.append(Matcher(str(raw.get("name", "")), op, value,  # type: ignore[arg-type]
                             re.compile(value) if regex else None))  # fmt: skip
    return found


class AlertmanagerSilences:
    """Which active silence, if any, matches a set of labels."""

    def __init__(self, config: PullConfig, clock: Clock | None = None) -> None:
        self._peers = [peer.rstrip("/") for peer in config.alertmanagers]
        self._client = http_client(config)
        self._clock = clock or SystemClock()
        self._cache_seconds = config.interval
        self._lock = threading.Lock()
        self._fetched_at: float | None = None
        self._active: list[tuple[str, list[Matcher]]] = []

    def holding(self, labels: Mapping[str, str]) -> str | None:
        """The id of an active silence matching every one of its matchers, or None."""
        plain = dict(labels)
        for silence_id, matchers in self._current():
            if matchers and all(m.matches(plain) for m in matchers):
                return silence_id
        return None

    def _current(self) -> list[tuple[str, list[Matcher]]]:
        with self._lock:
            now = self._clock.monotonic()
            if self._fetched_at is None or now - self._fetched_at >= self._cache_seconds:
                self._active = self._fetch()
                self._fetched_at = now
            return self._active

    def _fetch(self) -> list[tuple[str, list[Matcher]]]:
        for peer in self._peers:
            try:
                response = self._client.get(f"{peer}/api/v2/silences")
                response.raise_for_status()
                silences = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("silences from %s: %s", peer, exc)
                continue
            return [
                (str(s.get("id", "")), matchers_of(s))
                for s in silences
                if isinstance(s, dict) and (s.get("status") or {}).get("state") == "active"
            ]
        log.warning("no Alertmanager peer answered for silences: local triggers are not held")
        return []

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
