"""The event stream (the seeds' websocket_manager): recovery attempts and health changes,
fanned out to Server-Sent-Events subscribers. Publishing is safe from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from exporter.clock import Clock, SystemClock

HISTORY = 1000


@dataclass(frozen=True, slots=True)
class Event:
    """One event; ids increase, so a client can resume with Last-Event-ID."""

    id: int
    kind: str
    time: float
    data: dict[str, Any]

    def sse(self) -> bytes:
        """The event in text/event-stream framing."""
        payload = json.dumps({"time": self.time, **self.data}, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {payload}\n\n".encode()


@dataclass(eq=False)
class Subscription:
    """A subscriber's queue on its own event loop; a slow one is cut off, not waited for."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(HISTORY))


class EventHub:
    """Keeps the last events and hands new ones to every subscriber."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recent: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: set[Subscription] = set()

    def publish(self, kind: str, **data: Any) -> Event:
        """Record an event and deliver it to every subscriber (non-blocking)."""
        with self._lock:
            event = Event(next(self._ids), kind, self._clock.time(), data)
            self._recent.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):  # that loop has closed: it is leaving
                sub.loop.call_soon_threadsafe(self._deliver, sub, event)
        return event

    def _deliver(self, sub: Subscription, event: Event) -> None:
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:  # too slow to keep up: end its stream rather than block
            self.unsubscribe(sub)
            with contextlib.suppress(asyncio.QueueEmpty):
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)

    def subscribe(self, after: int = 0) -> tuple[Subscription, list[Event]]:
        """Subscribe on the running loop; also returns kept events with id > after."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(sub)
            backlog = [e for e in self._recent if e.id > after] if after else []
        return sub, backlog

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to a subscriber."""
        with self._lock:
            self._subscribers.discard(sub)

    def recent(self) -> list[Event]:
        """The kept events, oldest first."""
        with self._lock:
            return list(self._recent)
