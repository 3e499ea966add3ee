"""Connection hygiene below the ASGI app: size limits, timeouts and a connection cap that
keeps room for Prometheus.

uvicorn's httptools protocol has no limit on a request's head (a 64 MiB header line is
buffered whole), no timeout until a request's headers are in (a silent or trickling socket
is held forever) and one global concurrency limit that answers 503 to scrapes as well. This
subclass adds, per connection:

- the head (request line and headers) at most `max_header_bytes` (431; a longer URL: 414),
  and a body at most the path's limit (413), counted as it arrives, never buffered past it;
- a deadline for the head (from connect, or from the previous response on keep-alive), and
  one for the body once the head is in (408, then closed);
- a cap on open connections: at the cap, a new connection evicts the connection that has
  waited longest without a request in progress (idle keep-alive or an unfinished head, the
  slowloris kind), so an attacker's idle sockets never keep a scrape out; and at most
  `max_connections - reserved_connections` requests in progress on paths other than the
  reserved ones (/metrics and the health endpoints), so busy requests cannot either.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

RESERVED_PATHS = frozenset({"/metrics", "/-/healthy", "/-/ready"})
FD_MARGIN = 64
"""Descriptors kept free of connections: the journal, check helpers, commands' files."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server allows (from server.limits)."""

    max_header_bytes: int = 16 * 1024
    max_url_bytes: int = 8 * 1024
    max_body_bytes: int = 64 * 1024
    """For every path but those in body_limits."""
    body_limits: dict[str, int | None] = field(default_factory=dict)
    """Per path; None: the endpoint bounds (and counts) its own body."""
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512
    reserved_connections: int = 16
    reserved_paths: frozenset[str] = RESERVED_PATHS


class Book:
    """The open connections of one server, oldest-idle first, and the requests in progress
    on ordinary (not reserved) paths. Used from the server's event loop only."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._idle: dict[GuardedProtocol, None] = {}  # insertion order: longest idle first
        self._busy: set[GuardedProtocol] = set()
        self.ordinary_busy = 0

    @property
    def open(self) -> int:
        """Connections held now."""
        return len(self._idle) + len(self._busy)

    def admit(self, conn: GuardedProtocol) -> bool:
        """Make room for a new connection (evicting the longest idle one at the cap)."""
        if self.open >= self.limits.max_connections:
            victim = next(iter(self._idle), None)
            if victim is None:
                return False
            self.forget(victim)
            victim.evict()
        self._idle[conn] = None
        return True

    def busy(self, conn: GuardedProtocol, ordinary: bool) -> bool:
        """A request's head is in; False if an ordinary request would eat the reserve."""
        if ordinary:
            room = self.limits.max_connections - self.limits.reserved_connections
            if self.ordinary_busy >= room:
                return False
            self.ordinary_busy += 1
        self._idle.pop(conn, None)
        self._busy.add(conn)
        return True

    def idle(self, conn: GuardedProtocol, ordinary: bool) -> None:
        """Its response is done: waiting for the next request (newest idle)."""
        if ordinary:
            self.ordinary_busy -= 1
        if not conn.requests:  # no pipelined request behind it
            self._busy.discard(conn)
            self._idle[conn] = None

    def forget(self, conn: GuardedProtocol) -> None:
        """Closed (or handed to the WebSocket protocol)."""
        if conn in self._busy:
            self.ordinary_busy -= sum(conn.requests)
        self._busy.discard(conn)
        self._idle.pop(conn, None)


HEAD_LATE = (408, "request head not received in time\n")
BODY_LATE = (408, "request body not received in time\n")
URL_TOO_LONG = (414, "request URL too long\n")
HEAD_TOO_LARGE = (431, "request header fields too large\n")


def _reply(status: int, message: str) -> bytes:
    body = message.encode()
    return b"".join([
        STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body,
    ])  # fmt: skip


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (see the module's docstring)."""

    book: Book  # set on the subclass that protocol_class() makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.book.limits
        self._head_bytes = 0
        self._head_done = False
        self._body_bytes = 0
        self._body_limit: int | None = self._limits.max_body_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._in_book = False
        self.requests: deque[bool] = deque()
        """Per request in progress (pipelined ones too): whether it counts as ordinary."""

    # --- connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.book.admit(self):
            transport.write(_reply(503, "too many connections\n"))
            transport.close()
            return
        self._in_book = True
        self._arm(self._limits.header_timeout, *HEAD_LATE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._in_book:
            self._in_book = False
            self.book.forget(self)
        super().connection_lost(exc)

    def evict(self) -> None:
        """Closed to make room for a new connection (this one had no request running)."""
        self._in_book = False
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        if self._in_book:  # the WebSocket protocol takes the transport: its own caps apply
            self._in_book = False
            self.book.forget(self)
        super().handle_websocket_upgrade()

    # --- deadlines ----------------------------------------------------------------------
    def _arm(self, seconds: float, status: int, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, status, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, status: int, message: str) -> None:
        self._deadline = None
        self._refuse(status, message)

    def _refuse(self, status: int, message: str) -> None:
        """Answer status (unless a response has started) and close."""
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_reply(status, message))
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's receive() sees the client gone
            self.cycle.message_event.set()
        self.transport.close()

    # --- parsing ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        before = self._head_done
        if not before:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing() or before or self._head_done:
            return
        if len(getattr(self, "url", b"") or b"") > self._limits.max_url_bytes:
            self._refuse(*URL_TOO_LONG)
        elif self._head_bytes > self._limits.max_header_bytes:
            self._refuse(*HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_done = False
        self._head_bytes = 0
        self._body_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._disarm()
        head = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        path = httptools.parse_url(self.url).path.decode("latin-1")
        self._body_limit = self._limits.body_limits.get(path, self._limits.max_body_bytes)
        ordinary = path not in self._limits.reserved_paths
        declared = _content_length(self.headers)
        refusal: tuple[int, str] | None = None
        if head > self._limits.max_header_bytes:
            refusal = HEAD_TOO_LARGE
        elif len(self.url) > self._limits.max_url_bytes:
            refusal = URL_TOO_LONG
        elif declared is not None and self._body_limit is not None and declared > self._body_limit:
            refusal = (413, f"request body larger than {self._body_limit} bytes\n")
        elif self._in_book and not self.book.busy(self, ordinary):
            refusal = (503, "busy: connections are reserved for /metrics and health\n")
        self.requests.append(refusal is None and ordinary)
        if refusal is not None:
            self._with_app(_answer(*refusal), super().on_headers_complete)
            return
        super().on_headers_complete()
        self._arm(self._limits.body_timeout, *BODY_LATE)

    def _with_app(self, app: Any, step: Callable[[], None]) -> None:
        """Run uvicorn's step with app answering this one request."""
        original, self.app = self.app, app
        try:
            step()
        finally:
            self.app = original

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_limit is not None and self._body_bytes > self._body_limit:
            self._refuse(413, f"request body larger than {self._body_limit} bytes\n")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._head_done:
            self._disarm()  # the body is in: the app has what it needs
        super().on_message_complete()

    def on_response_complete(self) -> None:
        ordinary = self.requests.popleft() if self.requests else False
        if self._in_book:
            self.book.idle(self, ordinary)
        self._head_done = False  # what arrives next is the next request's head
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self._limits.header_timeout, *HEAD_LATE)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def _answer(status: int, message: str) -> Any:
    body = message.encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def protocol_class(limits: Limits) -> type[GuardedProtocol]:
    """A protocol class for one server, with its own book of connections."""
    return type("MedicHttpProtocol", (GuardedProtocol,), {"book": Book(limits)})


def descriptor_room(wanted: int) -> int:
    """How many connections the process's descriptor limit allows: the soft limit is raised
    to the hard one first (only ever up), then FD_MARGIN and what is open now stay free."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    return max(1, min(wanted, soft - in_use - FD_MARGIN))
