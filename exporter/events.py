"""The event stream (the seeds' websocket_manager): recovery attempts and health changes,
kept in one ring and read by Server-Sent-Events and WebSocket subscribers. Publishing is
safe from any thread.

A publisher's cost does not grow with the number of subscribers: it appends to the ring and
asks each subscribers' loop (usually one) for a wake-up, at most one pending per loop and
at most one per WAKE_EVERY seconds. Subscribers then read what is new from the ring at
their own cursor; one that falls behind the ring's oldest event is cut (it resumes with
Last-Event-ID and learns what it missed from the journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from exporter.clock import Clock, SystemClock

HISTORY = 1000
WAKE_EVERY = 0.2
"""Seconds between wake-ups of a loop's subscribers at most: a burst of events costs each
subscriber one wake-up (and one write), not one per event. bench.hostile, 100 subscribers
during a webhook flood: 0.05 s cost medic 1.66x the CPU per notification."""


class Event:
    """One event; ids increase, so a client can resume with Last-Event-ID. Its encodings
    are made once, on first use, whatever the number of subscribers."""

    __slots__ = ("_message", "_sse", "data", "id", "kind", "time")

    def __init__(self, id: int, kind: str, time: float, data: dict[str, Any]) -> None:
        self.id, self.kind, self.time, self.data = id, kind, time, data
        self._sse: bytes | None = None
        self._message: str | None = None

    def payload(self) -> str:
        """The event's data as JSON (with its time); pydantic-core's encoder, a third of
        json.dumps' time for an attempt's fields."""
        return to_json({"time": self.time, **self.data}).decode()

    def sse(self) -> bytes:
        """The event in text/event-stream framing."""
        if self._sse is None:
            self._sse = f"id: {self.id}\nevent: {self.kind}\ndata: {self.payload()}\n\n".encode()
        return self._sse

    def message(self) -> str:
        """The event as one WebSocket text message."""
        if self._message is None:
            self._message = f'{{"id":{self.id},"event":"{self.kind}","data":{self.payload()}}}'
        return self._message


@dataclass(eq=False)
class Subscription:
    """A subscriber on its loop: where it has read up to, and its wake-up."""

    loop: asyncio.AbstractEventLoop
    cursor: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Loop:
    """The subscribers of one event loop and whether a wake-up is pending for them."""

    subscribers: set[Subscription] = field(default_factory=set)
    pending: bool = False
    last: float = 0.0


class EventHub:
    """Keeps the last events; subscribers read them at their own pace."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recent: deque[Event] = deque(maxlen=HISTORY)
        self._loops: dict[asyncio.AbstractEventLoop, _Loop] = {}
        self._chunk: tuple[tuple[int, int], bytes] = ((0, 0), b"")

    @property
    def subscribers(self) -> int:
        """How many subscribers there are now."""
        with self._lock:
            return sum(len(group.subscribers) for group in self._loops.values())

    def publish(self, kind: str, **data: Any) -> Event:
        """Record an event and wake its subscribers' loops (non-blocking, O(loops))."""
        with self._lock:
            event = Event(next(self._ids), kind, self._clock.time(), data)
            self._recent.append(event)
            due = [(loop, group) for loop, group in self._loops.items() if not group.pending]
            for _, group in due:
                group.pending = True
        for loop, group in due:
            with contextlib.suppress(RuntimeError):  # that loop has closed: it is leaving
                loop.call_soon_threadsafe(self._schedule, loop, group)
        return event

    def _schedule(self, loop: asyncio.AbstractEventLoop, group: _Loop) -> None:
        delay = group.last + WAKE_EVERY - self._clock.monotonic()
        if delay > 0:
            loop.call_later(delay, self._wake, group)
        else:
            self._wake(group)

    def _wake(self, group: _Loop) -> None:
        with self._lock:
            group.pending = False
            group.last = self._clock.monotonic()
            subscribers = list(group.subscribers)
        for sub in subscribers:
            sub.wake.set()

    def subscribe(self, after: int = 0) -> Subscription:
        """Subscribe on the running loop, reading from after `after` (0: only new events)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            newest = self._recent[-1].id if self._recent else 0
            oldest = self._recent[0].id - 1 if self._recent else 0
            # Resuming: from what is still kept (older events are in the journal).
            sub = Subscription(loop, max(min(after, newest), oldest) if after else newest)
            self._loops.setdefault(loop, _Loop()).subscribers.add(sub)
        if sub.cursor < newest:
            sub.wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop waking a subscriber."""
        with self._lock:
            group = self._loops.get(sub.loop)
            if group is not None:
                group.subscribers.discard(sub)
                if not group.subscribers and not group.pending:
                    del self._loops[sub.loop]

    def pending(self, sub: Subscription) -> bool:
        """Whether an event newer than the subscriber's cursor exists (or it fell behind)."""
        with self._lock:
            return bool(self._recent) and self._recent[-1].id > sub.cursor

    def read(self, sub: Subscription) -> list[Event] | None:
        """The events after the subscriber's cursor (moving it), or None when some it had
        not read have left the ring: it is too slow and must resume."""
        with self._lock:
            if not self._recent or self._recent[-1].id <= sub.cursor:
                return []
            first = self._recent[0].id
            if sub.cursor < first - 1:
                return None
            start = sub.cursor - first + 1
            events = list(itertools.islice(self._recent, start, None))
        sub.cursor = events[-1].id
        return events

    def read_sse(self, sub: Subscription) -> bytes | None:
        """read(), framed for text/event-stream: b"" when nothing is new. Subscribers woken
        together read the same events: the bytes are joined once for all of them."""
        events = self.read(sub)
        if not events:
            return None if events is None else b""
        span = (events[0].id, events[-1].id)
        with self._lock:
            if self._chunk[0] == span:
                return self._chunk[1]
        chunk = b"".join(e.sse() for e in events)
        with self._lock:
            self._chunk = (span, chunk)
        return chunk

    def recent(self) -> list[Event]:
        """The kept events, oldest first."""
        with self._lock:
            return list(self._recent)
