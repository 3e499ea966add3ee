"""The webhook's request counts, by status code (for /metrics)."""

from __future__ import annotations

import threading


class WebhookStats:
    """Requests by status code; a version number for the render loop to poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.version = 0

    def count(self, code: int) -> None:
        """Count one answered request."""
        with self._lock:
            key = str(code)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.version += 1

    def snapshot(self) -> dict[str, int]:
        """Requests per code."""
        with self._lock:
            return dict(self.requests)
