"""POST /api/v1/alerts: authenticate, bound, validate, claim, answer 202 once committed.

Alertmanager retries only on 5xx, so 5xx means "could not accept this, send it again": a
claim the journal did not commit (or no journal), a full queue, a stopping medic. A failed
remediation is still a 2xx.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError
from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from exporter.http.asgi import (
    ClientGone,
    Headers,
    Turns,
    header,
    media_type,
    read_body,
    respond,
)
from exporter.http.lanes import Lanes
from exporter.storage.sqlite import CommitWaits
from exporter.webhook import slicing
from exporter.webhook.auth import Authenticator
from exporter.webhook.intake import Intake, Summary
from exporter.webhook.models import NOTIFICATION, Alert
from exporter.webhook.stats import WebhookStats

log = logging.getLogger(__name__)

MAX_PROBLEMS = 20
COMMIT_WAIT = 5.0
JSON = b"application/json"
RETRY_LATER: Headers = [(b"retry-after", b"10")]
ENCODE_SLICE = 1000


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _invalid(problems: list[str]) -> tuple[int, bytes, Headers | None]:
    body = to_json({"error": "not an Alertmanager v4 notification", "problems": problems})
    return 400, body, None


def _problems(exc: ValidationError) -> list[str]:
    return [f"{_location(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()[:MAX_PROBLEMS]]


class AlertsEndpoint:
    """The plain-ASGI endpoint for Alertmanager's webhook (POST only; see exporter.http.asgi)."""

    def __init__(
        self,
        intake: Intake,
        stats: WebhookStats,
        authenticator: Authenticator | None,
        max_body: int,
        lanes: Lanes | None = None,
    ) -> None:
        """lanes: told while a request is in flight, so scrapes are paced meanwhile."""
        self._lanes = lanes
        self._intake = intake
        self._stats = stats
        self._auth = authenticator
        self._max_body = max_body
        self._turns = Turns()
        self._commits = CommitWaits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lanes = self._lanes
        if lanes is not None:
            lanes.intake_began()
        try:
            try:
                status, body, extra = await self._answer(scope, receive)
            except ClientGone:
                return
            self._stats.count(status)
            await self._turns.take()
            await respond(send, status, body, JSON, extra)
        finally:
            if lanes is not None:
                lanes.intake_ended()

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Headers | None]:
        auth = self._auth
        if auth is not None and not auth.check(header(scope, b"authorization")):
            body = to_json({"error": "missing or wrong credentials"})
            return 401, body, [auth.challenge]
        media = media_type(scope)
        if media != "application/json":
            body = to_json({"error": f"expected application/json, got {media or 'nothing'}"})
            return 415, body, None
        raw = await read_body(scope, receive, self._max_body)
        if raw is None:
            return 413, to_json({"error": f"body larger than {self._max_body} bytes"}), None
        await self._turns.take()
        if len(raw) >= slicing.LARGE:
            return await self._sliced(raw)
        try:
            notification = NOTIFICATION.validate_json(raw)
        except ValidationError as exc:
            return _invalid(_problems(exc))
        return await self._accept(self._intake.handle(notification))

    async def _sliced(self, raw: bytes) -> tuple[int, bytes, Headers | None]:
        """A large body: parsed, validated and decided SLICE alerts per loop turn, so that
        no step holds the loop (and a scrape) for long. Nothing is decided unless the
        whole body is valid."""
        alerts: list[Alert] = []
        try:
            text = raw.decode()
            for kind, value in slicing.walk(text):
                if kind == "alerts":
                    alerts.extend(slicing.alerts_of(value, len(alerts)))
                    await self._turns.take()
                else:
                    notification = slicing.envelope_of(value, alerts)
        except UnicodeDecodeError:
            return _invalid(["body: not UTF-8"])
        except slicing.Malformed as exc:
            return _invalid([f"body: {exc}"])
        except slicing.Problems as exc:
            return _invalid(exc.problems)
        summary = self._intake.begin(notification)
        for start in range(0, len(alerts), slicing.TAKE_SLICE):
            part = alerts[start : start + slicing.TAKE_SLICE]
            await asyncio.wrap_future(self._intake.take_on_engine(summary, part))
        return await self._accept(summary, sliced=True)

    async def _accept(
        self, summary: Summary, sliced: bool = False
    ) -> tuple[int, bytes, Headers | None]:
        for claim in summary.persisted:
            if not await self._commits.committed(claim, COMMIT_WAIT):
                log.error("the journal did not commit an alert's claim within %gs; asking "
                          "Alertmanager to retry", COMMIT_WAIT)  # fmt: skip
                return 503, to_json({"error": "the journal is not committing"}), RETRY_LATER
        if summary.refused:
            # Neither the queue nor the journal could take them: ask Alertmanager to retry.
            first: dict[str, object] = {"error": "cannot accept alerts now"}
            return 503, await self._encode(first, summary, sliced), RETRY_LATER
        return 202, await self._encode({}, summary, sliced), None

    async def _encode(self, first: dict[str, object], summary: Summary, sliced: bool) -> bytes:
        """The answer's JSON; for a large notification its per-alert details are encoded
        ENCODE_SLICE at a time (one call for 10,000 holds the loop for 9 ms)."""
        fields = {**first, **summary.as_dict()}
        if not sliced:
            return to_json(fields)
        details = fields.pop("alerts")
        assert isinstance(details, list)
        parts = []
        for start in range(0, len(details), ENCODE_SLICE):
            parts.append(to_json(details[start : start + ENCODE_SLICE])[1:-1])
            await self._turns.take()
        return to_json(fields)[:-1] + b',"alerts":[' + b",".join(parts) + b"]}"
