"""A large notification, parsed and validated a slice of alerts at a time.

pydantic-core validates a whole body in one call that holds the GIL and the event loop: a
4 MiB notification of 10,000 alerts is one 56 ms step, and a scrape waits that long. Here
the body's top-level object is walked with the standard library's JSON decoder
(`raw_decode`, one value at a time), the alerts are validated SLICE at a time, and the
caller awaits a turn of the loop between slices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import TypeAdapter, ValidationError

from exporter.webhook.models import MAX_ALERTS, Alert, Envelope, Notification

SLICE = 200
"""Alerts parsed and validated per loop turn (about 2 ms)."""
TAKE_SLICE = 200
"""Alerts decided (claimed, journaled, queued) per turn of the recovery engine's loop, where
they are decided (about 40 us each): the HTTP thread only waits for them."""
LARGE = 128 * 1024
"""Bodies from this size on are taken in slices; smaller ones in one call (faster)."""
ALERTS = TypeAdapter(list[Alert])
_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


class Malformed(ValueError):
    """The body is not a JSON object of the expected shape."""


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _expect(text: str, at: int, char: str) -> int:
    at = _skip(text, at)
    if at >= len(text) or text[at] != char:
        raise Malformed(f"invalid JSON at character {at}: expected {char!r}")
    return at + 1


def walk(text: str) -> Iterator[tuple[str, Any]]:
    """("alerts", [raw alert, ...]) every SLICE alerts, then ("envelope", {the rest})."""
    envelope: dict[str, Any] = {}
    at = _expect(text, 0, "{")
    if text[_skip(text, at) : _skip(text, at) + 1] == "}":
        yield "envelope", envelope
        return
    try:
        while True:
            key, at = _DECODER.raw_decode(text, _skip(text, at))
            at = _expect(text, at, ":")
            if key == "alerts" and text[_skip(text, at) : _skip(text, at) + 1] == "[":
                envelope["alerts"] = True
                at = _skip(text, _expect(text, at, "["))
                chunk: list[Any] = []
                if text[at : at + 1] != "]":
                    while True:
                        value, at = _DECODER.raw_decode(text, _skip(text, at))
                        chunk.append(value)
                        if len(chunk) == SLICE:
                            yield "alerts", chunk
                            chunk = []
                        at = _skip(text, at)
                        if text[at : at + 1] == ",":
                            at += 1
                            continue
                        break
                at = _expect(text, at, "]")
                if chunk:
                    yield "alerts", chunk
            else:
                envelope[key], at = _DECODER.raw_decode(text, _skip(text, at))
            at = _skip(text, at)
            if text[at : at + 1] == ",":
                at += 1
                continue
            at = _expect(text, at, "}")
            break
    except json.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None
    if _skip(text, at) != len(text):
        raise Malformed(f"invalid JSON at character {at}: extra data after the object")
    yield "envelope", envelope


class Problems(ValueError):
    """Validation problems, each "location: message"."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def envelope_of(raw: dict[str, Any], alerts: list[Alert]) -> Notification:
    """The notification around already validated alerts (Problems if it is invalid)."""
    problems = []
    if "alerts" not in raw:
        problems.append("alerts: Field required")
    elif not alerts:
        problems.append("alerts: List should have at least 1 item after validation")
    elif len(alerts) > MAX_ALERTS:
        problems.append(f"alerts: List should have at most {MAX_ALERTS} items after validation")
    try:
        envelope = Envelope.model_validate({k: v for k, v in raw.items() if k != "alerts"})
    except ValidationError as exc:
        problems = _located(exc, ()) + problems
    if problems:
        raise Problems(problems)
    # Both parts are validated: put them together without validating the alerts again.
    return Notification.model_construct(**dict(envelope), alerts=alerts)


def alerts_of(chunk: list[Any], offset: int) -> list[Alert]:
    """A slice of alerts, validated; Problems located in the whole body."""
    try:
        return ALERTS.validate_python(chunk)
    except ValidationError as exc:
        raise Problems(_located(exc, ("alerts",), offset)) from None


def _located(exc: ValidationError, prefix: tuple[str, ...], offset: int = 0) -> list[str]:
    problems = []
    for error in exc.errors()[:20]:
        loc = list(error["loc"])
        if prefix and loc and isinstance(loc[0], int):
            loc[0] += offset
        out = ""
        for part in (*prefix, *loc):
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        problems.append(f"{out or 'body'}: {error['msg']}")
    return problems
