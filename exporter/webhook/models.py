"""Alertmanager's webhook payload, version 4. Fields Alertmanager adds later are tolerated."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Labels = Annotated[dict[str, str], Field(max_length=256)]


# Field names are Alertmanager's own (camelCase), so the JSON maps without aliases.


class Alert(BaseModel):
    """One alert of a notification; its own status counts, not the group's."""

    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: Annotated[str, Field(min_length=1, max_length=64)]
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: Annotated[str, Field(min_length=1, max_length=64)]

    @property
    def episode(self) -> str:
        """(fingerprint, startsAt): the same alert firing again later is a new episode."""
        return f"{self.fingerprint}@{self.startsAt}"


class Notification(BaseModel):
    """What Alertmanager POSTs to a webhook receiver."""

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
    alerts: Annotated[list[Alert], Field(min_length=1, max_length=10_000)]


NOTIFICATION = TypeAdapter(Notification)
"""Validates raw JSON bytes straight into a Notification (pydantic-core parses them)."""
