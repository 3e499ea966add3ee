"""Where breaker state survives a restart: in memory (tests, library use) or in SQLite."""

from __future__ import annotations

import threading
from typing import Protocol

from exporter.resilience.state import BreakerState, StoredBreaker
from exporter.storage.sqlite import Database


class BreakerStore(Protocol):
    """Load a breaker's last state at creation; save it after each transition."""

    def load(self, name: str) -> StoredBreaker | None:
        """The stored state, or None for a breaker never seen."""
        ...

    def save(self, stored: StoredBreaker) -> None:
        """Record a state; must not block on the disk."""
        ...


class InMemoryBreakerStore:
    """A dict; survives nothing, but shares state between registries in one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, StoredBreaker] = {}

    def load(self, name: str) -> StoredBreaker | None:
        """The stored state, or None."""
        with self._lock:
            return self._states.get(name)

    def save(self, stored: StoredBreaker) -> None:
        """Record a state."""
        with self._lock:
            self._states[stored.name] = stored


SCHEMA = """
CREATE TABLE IF NOT EXISTS breaker_state (
    name  TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL NOT NULL
);
"""


class SqliteBreakerStore:
    """Breaker states in medic's SQLite file (shared with the recovery journal)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.script(SCHEMA)

    def load(self, name: str) -> StoredBreaker | None:
        """The stored state, or None."""
        rows = self._db.query("SELECT state, since FROM breaker_state WHERE name = ?", (name,))
        if not rows:
            return None
        state, since = rows[0]
        try:
            return StoredBreaker(name, BreakerState(state), float(since))
        except ValueError:
            return None  # written by a newer medic with a state we do not know

    def save(self, stored: StoredBreaker) -> None:
        """Queue the write; the database commits it in the background."""
        # Retried until it lands (a full disk): a breaker opened meanwhile must still be
        # open after a restart. A late retry never moves a newer state back.
        self._db.write_group(
            [(
                "INSERT INTO breaker_state (name, state, since) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET state = excluded.state, since = excluded.since "
                "WHERE excluded.since >= breaker_state.since",
                (stored.name, stored.state.value, stored.since),
            )],
            retry=True,
        )  # fmt: skip
