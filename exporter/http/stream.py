"""/api/v1/events: medic's event hub as Server-Sent Events, and the same over a WebSocket.

Both resume after an event id (SSE: the Last-Event-ID header; WebSocket: that header or the
`last_event_id` query parameter), share one cap on subscribers (503 beyond it; a WebSocket
handshake beyond it is refused) and cut a subscriber that cannot keep up: one that falls
behind the hub's ring, or whose socket takes more than WRITE_TIMEOUT to take a write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from exporter.events import EventHub, Subscription
from exporter.http.asgi import Turns, header, respond

KEEPALIVE = 15.0
WRITE_TIMEOUT = 10.0
MAX_EVENT_ID = 10**18
JSON = b"application/json"


class BadEventId(ValueError):
    """A Last-Event-ID that is not an event id."""


def event_id(value: str | None) -> int:
    """The id to resume after (0: none given); BadEventId when it is not a number in range."""
    if value is None or value == "":
        return 0
    value = value.strip()
    if not value.isdigit() or len(value) > 18 or int(value) > MAX_EVENT_ID:
        raise BadEventId(f"Last-Event-ID must be an event id, got {value[:40]!r}")
    return int(value)


class EventsEndpoint:
    """GET /api/v1/events (text/event-stream) and its WebSocket form, as plain ASGI."""

    def __init__(self, hub: EventHub, max_subscribers: int) -> None:
        self._hub = hub
        self._max = max_subscribers
        self._turns = Turns()
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._sse(scope, receive, send)

    def _after(self, scope: Scope) -> int:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        given = header(scope, b"last-event-id")
        if given is None and query.get("last_event_id"):
            given = query["last_event_id"][0]
        return event_id(given)

    @contextlib.asynccontextmanager
    async def _subscribed(
        self, after: int, receive: Receive, disconnect: str
    ) -> AsyncIterator[tuple[Subscription, Gone]]:
        """A subscription counted against the cap, with a watcher that marks the client
        gone (and wakes the subscription) at its disconnect message."""
        self.active += 1
        sub = self._hub.subscribe(after)
        gone = Gone()
        watcher = asyncio.ensure_future(gone.watch(receive, disconnect, sub))
        try:
            yield sub, gone
        except (OSError, TimeoutError):
            pass  # gone (uvicorn's ClientDisconnected is an OSError) or stalled: it closes
        finally:
            watcher.cancel()
            self._hub.unsubscribe(sub)
            self.active -= 1

    # --- Server-Sent Events -------------------------------------------------------------
    async def _sse(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            after = self._after(scope)
        except BadEventId as exc:
            await respond(send, 400, to_json({"detail": str(exc)}), JSON)
            return
        if self.active >= self._max:
            body = b'{"detail":"too many event-stream subscribers"}'
            await respond(send, 503, body, JSON, [(b"retry-after", b"10")])
            return
        async with self._subscribed(after, receive, "http.disconnect") as (sub, gone):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"),
            ]})  # fmt: skip
            await self._write(send, b": medic events\n\n")
            while not gone.done:
                chunk = self._hub.read_sse(sub) if await self._wait(sub) else b""
                if chunk is None:
                    break  # too slow: the client resumes with Last-Event-ID
                # Woken together, subscribers write a few per loop turn: a scrape that
                # arrives meanwhile is not queued behind a hundred writes.
                await self._turns.take()
                if gone.done:
                    break
                await self._write(send, chunk or b": keep-alive\n\n")
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await send({"type": "http.response.body", "body": b""})

    async def _write(self, send: Send, chunk: bytes) -> None:
        # asyncio.timeout, not wait_for: no task per write (a hundred subscribers write
        # at every wake-up).
        async with asyncio.timeout(WRITE_TIMEOUT):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _wait(self, sub: Subscription) -> bool:
        """Until something is new for sub, or it is cut, or its client is gone (its
        watcher wakes it): True; False after KEEPALIVE seconds of nothing."""
        if self._hub.pending(sub):
            return True
        sub.wake.clear()
        if self._hub.pending(sub):  # published between the look and the clear
            return True
        try:
            async with asyncio.timeout(KEEPALIVE):
                await sub.wake.wait()
        except TimeoutError:
            return False
        return True

    # --- WebSocket ----------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            after = self._after(scope)
        except BadEventId:
            await send({"type": "websocket.close", "code": 1008})
            return
        if self.active >= self._max:
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        async with self._subscribed(after, receive, "websocket.disconnect") as (sub, gone):
            await send({"type": "websocket.accept"})
            while not gone.done:
                events = self._hub.read(sub) if await self._wait(sub) else []
                if events is None:
                    await send({"type": "websocket.close", "code": 1008,
                                "reason": "too slow; resume with last_event_id"})  # fmt: skip
                    break
                await self._turns.take()
                for event in events:
                    if gone.done:
                        break
                    async with asyncio.timeout(WRITE_TIMEOUT):
                        await send({"type": "websocket.send", "text": event.message()})


class Gone:
    """Whether the client has gone; its watcher wakes the subscription when it goes."""

    def __init__(self) -> None:
        self.done = False

    async def watch(self, receive: Receive, kind: str, sub: Subscription) -> None:
        """Read the client's messages until `kind` (a disconnect)."""
        while (await receive())["type"] != kind:
            pass
        self.done = True
        sub.wake.set()
