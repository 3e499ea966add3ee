"""POST /api/v1/alerts: authenticate, bound, validate, persist, enqueue, answer 202.

Alertmanager retries only on 5xx, so 5xx means "could not accept this, send it again": only
when events could neither be queued nor persisted. A failed remediation is still a 2xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from exporter.webhook.auth import Authenticator
from exporter.webhook.intake import Intake
from exporter.webhook.models import NOTIFICATION, Notification

log = logging.getLogger(__name__)

MAX_PROBLEMS = 20
COMMIT_WAIT = 5.0


def _json(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _problems(exc: ValidationError) -> list[str]:
    return [f"{_location(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()[:MAX_PROBLEMS]]


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is larger than limit (never buffers more)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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


def alerts_endpoint(
    intake: Intake,
    stats: WebhookStats,
    authenticator: Authenticator | None,
    max_body: int,
) -> Callable[[Request], Awaitable[Response]]:
    """The ASGI endpoint for Alertmanager's webhook."""

    async def alerts(request: Request) -> Response:
        response = await _answer(request)
        stats.count(response.status_code)
        return response

    async def _answer(request: Request) -> Response:
        if authenticator is not None and not authenticator.check(
            request.headers.get("authorization")
        ):
            challenge = f'{authenticator.scheme} realm="medic"'
            return _json(401, {"error": "missing or wrong credentials"},
                         {"WWW-Authenticate": challenge})  # fmt: skip
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return _json(415, {"error": f"expected application/json, got {media or 'nothing'}"})
        body = await _read_limited(request, max_body)
        if body is None:
            return _json(413, {"error": f"body larger than {max_body} bytes"})
        try:
            notification = NOTIFICATION.validate_json(body)
        except ValidationError as exc:
            return _json(400, {"error": "not an Alertmanager v4 notification",
                               "problems": _problems(exc)})  # fmt: skip
        return await _accept(notification)

    async def _accept(notification: Notification) -> Response:
        summary = intake.handle(notification)
        if summary.persisted:
            # Group commit: wait (without blocking the loop) until the accepted events'
            # journal rows are committed, so that a crash after the 202 loses nothing.
            try:
                async with asyncio.timeout(COMMIT_WAIT):
                    await asyncio.gather(*(asyncio.wrap_future(f) for f in summary.persisted))
            except TimeoutError:
                log.error("journal commits took over %gs; asking Alertmanager to retry",
                          COMMIT_WAIT)  # fmt: skip
                return _json(503, {"error": "the journal is not committing"},
                             {"Retry-After": "10"})  # fmt: skip
        if summary.refused:
            # Neither the queue nor the journal could take them: ask Alertmanager to retry.
            return _json(503, {"error": "cannot accept alerts now", **summary.as_dict()},
                         {"Retry-After": "10"})  # fmt: skip
        return _json(202, summary.as_dict())

    return alerts
