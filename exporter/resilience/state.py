"""Breaker states and what a breaker stores to survive a restart."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BreakerState(enum.StrEnum):
    """resilience4j's states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class StoredBreaker:
    """A breaker's state and since when (wall-clock seconds), as persisted."""

    name: str
    state: BreakerState
    since: float
