"""Pre-rendered /metrics bodies: rendered off the request path, served as bytes.

Rendering ~400 series costs milliseconds; doing it inside the async handler would block the
event loop (and every webhook) for that long. Instead a render thread re-renders after the
state changes, coalescing bursts, and the handler only picks the right pre-built body.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE_OM
from prometheus_client.openmetrics.exposition import generate_latest as generate_om
from prometheus_client.registry import Collector

from exporter.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class _Snapshot(Collector):
    """Families collected once, offered to both encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendering in both formats, plain and gzipped."""

    text: bytes
    text_gz: bytes
    openmetrics: bytes
    openmetrics_gz: bytes
    rendered_at: float


def wants_openmetrics(accept: str) -> bool:
    """True when the scraper lists OpenMetrics among the media types it accepts."""
    return any(
        part.split(";", 1)[0].strip() == "application/openmetrics-text"
        for part in accept.split(",")
    )


def accepts_gzip(accept_encoding: str) -> bool:
    """True when gzip is an accepted content coding (and not refused with q=0)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class Exposition:
    """Holds the latest rendering of a registry and picks a body per request."""

    def __init__(self, registry: CollectorRegistry, clock: Clock | None = None) -> None:
        self._registry = registry
        self._clock = clock or SystemClock()
        self._render_lock = threading.Lock()
        self._current = Rendered(b"", b"", b"# EOF\n", b"", 0.0)

    @property
    def current(self) -> Rendered:
        """The latest rendering (an atomic reference read)."""
        return self._current

    def render(self) -> Rendered:
        """Render now, on the calling thread, and publish the result."""
        with self._render_lock:
            snapshot = _Snapshot(list(self._registry.collect()))  # collect once, encode twice
            text = generate_text(snapshot)
            openmetrics = generate_om(snapshot)  # type: ignore[no-untyped-call]
            rendered = Rendered(
                text,
                gzip.compress(text, compresslevel=6, mtime=0),
                openmetrics,
                gzip.compress(openmetrics, compresslevel=6, mtime=0),
                self._clock.time(),
            )
            self._current = rendered
            return rendered

    def select(self, accept: str, accept_encoding: str) -> tuple[bytes, str, str | None]:
        """(body, content type, content encoding) for a request's Accept headers."""
        current = self._current
        gz = accepts_gzip(accept_encoding)
        if wants_openmetrics(accept):
            body = current.openmetrics_gz if gz else current.openmetrics
            return body, CONTENT_TYPE_OM, "gzip" if gz else None
        body = current.text_gz if gz else current.text
        return body, CONTENT_TYPE_PLAIN_0_0_4, "gzip" if gz else None


class RenderLoop:
    """A thread that re-renders after invalidate(), at most once per min_interval.

    Counters that change on every guarded call (breaker calls, retries) do not invalidate:
    that would cost a wake-up per call. Their owners expose a version number instead, and
    the loop polls those every `poll_interval`, so such counters are at most that stale.
    """

    def __init__(
        self, exposition: Exposition, min_interval: float = 0.05, poll_interval: float = 1.0
    ) -> None:
        self._exposition = exposition
        self._min_interval = min_interval
        self._poll_interval = poll_interval
        self._versions: list[Callable[[], int]] = []
        self._seen_version = -1
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Render once now, then follow invalidations on a daemon thread."""
        self._exposition.render()
        self._thread = threading.Thread(target=self._loop, name="medic-render", daemon=True)
        self._thread.start()

    def watch(self, version: Callable[[], int]) -> None:
        """Re-render (within poll_interval) whenever version() changes."""
        self._versions.append(version)

    def _polled_version(self) -> int:
        return sum(version() for version in self._versions)

    def invalidate(self, *_: object) -> None:
        """Ask for a re-render soon; cheap and safe from any thread."""
        self._dirty.set()

    def stop(self) -> None:
        """Stop the thread (it exits within one wait)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            woken = self._dirty.wait(self._poll_interval if self._versions else None)
            if self._stopping.is_set():
                return
            version = self._polled_version() if self._versions else 0
            if not woken and version == self._seen_version:
                continue
            self._seen_version = version
            self._dirty.clear()
            try:
                self._exposition.render()
            except Exception:
                log.exception("rendering /metrics failed; serving the previous rendering")
            self._stopping.wait(self._min_interval)
