"""GET /api/v1/events: medic's event hub as Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from exporter.app import Medic

KEEPALIVE = 15.0


def events_endpoint(medic: Medic) -> Callable[[Request], Awaitable[Response]]:
    """attempt_started, attempt_finished and health events; resumable with Last-Event-ID."""

    async def events(request: Request) -> Response:
        last = request.headers.get("last-event-id", "")
        subscription, backlog = medic.events.subscribe(int(last) if last.isdigit() else 0)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": medic events\n\n"
                for missed in backlog:
                    yield missed.sse()
                while True:
                    try:
                        async with asyncio.timeout(KEEPALIVE):
                            event = await subscription.queue.get()
                    except TimeoutError:
                        yield b": keep-alive\n\n"  # proxies close streams that stay idle
                        continue
                    if event is None:
                        return  # too slow to keep up: the client resumes with Last-Event-ID
                    yield event.sse()
            finally:
                medic.events.unsubscribe(subscription)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return events
