"""Alertmanager's webhook payload, version 4. Fields Alertmanager adds later are tolerated."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Labels = Annotated[dict[str, str], Field(max_length=256)]
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def canonical_time(value: str) -> str:
    """An RFC 3339 time in UTC with milliseconds ("2026-11-22T02:36:41.168Z"): the webhook
    writes startsAt to the nanosecond in its own zone, API v2 to the millisecond, and an
    episode must have one key whichever way medic heard of it. Unparsable text stays."""
    match = _TIME.match(value)
    if match is None:
        return value
    day, clock, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}")
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    except (ValueError, OverflowError):
        return value
    millis = (fraction or "0")[:3].ljust(3, "0")  # truncated, as Alertmanager formats it
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{millis}Z")  # fmt: skip


# Field names are Alertmanager's own (camelCase), so the JSON maps without aliases.


class AlertFields(BaseModel):
    """What the webhook's alerts and API v2's alerts both carry."""

    model_config = ConfigDict(extra="allow")

    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: Annotated[str, Field(min_length=1, max_length=64)]
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: Annotated[str, Field(min_length=1, max_length=64)]

    @property
    def episode(self) -> str:
        """(fingerprint, startsAt): the same alert firing again later is a new episode.
        The same key however medic heard of it (pushed or pulled)."""
        return f"{self.fingerprint}@{canonical_time(self.startsAt)}"


class Alert(AlertFields):
    """One alert of a notification; its own status counts, not the group's."""

    status: Literal["firing", "resolved"]


class Envelope(BaseModel):
    """A notification without its alerts (see slicing.py)."""

    model_config = ConfigDict(extra="allow")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: Annotated[int, Field(ge=0)] = 0
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: str = ""


MAX_ALERTS = 10_000


class Notification(Envelope):
    """What Alertmanager POSTs to a webhook receiver."""

    alerts: Annotated[list[Alert], Field(min_length=1, max_length=MAX_ALERTS)]


NOTIFICATION = TypeAdapter(Notification)
"""Validates raw JSON bytes straight into a Notification (pydantic-core parses them)."""


class PulledStatus(BaseModel):
    """An API v2 alert's state (active, suppressed, unprocessed) and what suppresses it."""

    model_config = ConfigDict(extra="allow")

    state: str = "active"
    silencedBy: list[str] = Field(default_factory=list)
    inhibitedBy: list[str] = Field(default_factory=list)


class PulledAlert(AlertFields):
    """One alert of Alertmanager's `GET /api/v2/alerts` (a gettableAlert)."""

    status: PulledStatus = Field(default_factory=PulledStatus)

    def as_alert(self) -> Alert:
        """The same alert as the webhook would carry it, firing: one episode identity."""
        return Alert(status="firing", labels=self.labels, annotations=self.annotations,
                     startsAt=self.startsAt, endsAt=self.endsAt,
                     generatorURL=self.generatorURL, fingerprint=self.fingerprint)  # fmt: skip


PULLED = TypeAdapter(list[PulledAlert])
"""Validates the body of GET /api/v2/alerts."""
