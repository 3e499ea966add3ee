"""The recovery journal: attempts, handled episodes and cooldowns, in medic's SQLite file.

Writes are queued to the database's writer thread (group commit), so recording never blocks
the engine. An in-memory mirror of recent attempts, episodes and cooldowns keeps the engine
correct and the history queryable when the disk refuses writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from exporter.clock import Clock
from exporter.recovery.types import FailureEvent, Outcome, RecoveryAttempt
from exporter.storage.sqlite import Database

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS recovery_attempts (
    id           INTEGER PRIMARY KEY,
    failure_type TEXT NOT NULL,
    action       TEXT NOT NULL,
    source       TEXT NOT NULL,
    fingerprint  TEXT,
    starts_at    TEXT,
    dedup_key    TEXT,
    started      REAL NOT NULL,
    ended        REAL,
    outcome      TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    dry_run      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recovery_attempts_started ON recovery_attempts (started);
CREATE TABLE IF NOT EXISTS recovery_episodes (
    dedup_key TEXT PRIMARY KEY,
    state     TEXT NOT NULL,
    seen      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_inbox (
    id           INTEGER PRIMARY KEY,
    failure_type TEXT NOT NULL,
    source       TEXT NOT NULL,
    labels       TEXT NOT NULL,
    dedup_key    TEXT,
    fingerprint  TEXT,
    starts_at    TEXT,
    detail       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_cooldowns (
    failure_type TEXT PRIMARY KEY,
    until        REAL NOT NULL,
    consecutive  INTEGER NOT NULL
);
"""
COLUMNS = (
    "id, failure_type, action, source, fingerprint, starts_at, dedup_key, started, ended, "
    "outcome, detail, dry_run"
)
MEMORY_ATTEMPTS = 5000


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A failure type rests until `until` (wall clock); `consecutive` exhausted ladders."""

    until: float
    consecutive: int


def _attempt(row: tuple[Any, ...]) -> RecoveryAttempt:
    (id_, failure_type, action, source, fingerprint, starts_at, dedup_key, started, ended,
     outcome, detail, dry_run) = row  # fmt: skip
    try:
        state = Outcome(outcome)
    except ValueError:
        state = Outcome.FAILED
    return RecoveryAttempt(
        id=id_, failure_type=failure_type, action=action, source=source, started=started,
        outcome=state, ended=ended, detail=detail, dry_run=bool(dry_run),
        fingerprint=fingerprint, starts_at=starts_at, dedup_key=dedup_key,
    )  # fmt: skip


class Journal:
    """Records attempts; remembers handled episodes and cooldowns across restarts."""

    def __init__(self, db: Database | None, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[RecoveryAttempt] = deque(maxlen=MEMORY_ATTEMPTS)
        self._episodes: dict[str, str] = {}
        self._cooldowns: dict[str, Cooldown] = {}
        self._next_id = 1
        self._next_inbox = 1
        if db is not None:
            db.script(SCHEMA)

    @property
    def healthy(self) -> bool:
        """False when there is no database or its last write failed."""
        return self._db is not None and self._db.healthy

    # --- start-up -----------------------------------------------------------------------
    def open(self) -> int:
        """Mark attempts left running by a dead process interrupted; load state. Returns how
        many were interrupted."""
        if self._db is None:
            return 0
        now = self._clock.time()
        rows = self._db.query("SELECT COALESCE(MAX(id), 0) FROM recovery_attempts")
        self._next_id = int(rows[0][0]) + 1
        rows = self._db.query("SELECT COALESCE(MAX(id), 0) FROM recovery_inbox")
        self._next_inbox = int(rows[0][0]) + 1
        running = self._db.query(
            "SELECT COUNT(*) FROM recovery_attempts WHERE outcome = ?", (Outcome.RUNNING.value,)
        )[0][0]
        if running:
            self._db.write(
                "UPDATE recovery_attempts SET outcome = ?, ended = ?, "
                "detail = 'medic stopped while this action ran' WHERE outcome = ?",
                (Outcome.INTERRUPTED.value, now, Outcome.RUNNING.value),
            )
            self._db.flush()
            log.warning("%d recovery attempts were interrupted by the last shutdown", running)
        for key, state in self._db.query("SELECT dedup_key, state FROM recovery_episodes"):
            self._episodes[key] = state
        for failure_type, until, consecutive in self._db.query(
            "SELECT failure_type, until, consecutive FROM recovery_cooldowns"
        ):
            self._cooldowns[failure_type] = Cooldown(float(until), int(consecutive))
        recent = self._db.query(
            f"SELECT {COLUMNS} FROM recovery_attempts ORDER BY id DESC LIMIT ?",  # noqa: S608
            (MEMORY_ATTEMPTS,),
        )
        self._recent.extend(_attempt(row) for row in reversed(recent))
        return int(running)

    # --- attempts -----------------------------------------------------------------------
    def begin(self, attempt: RecoveryAttempt) -> RecoveryAttempt:
        """Record an attempt (running or already final); assigns its id."""
        with self._lock:
            attempt.id = self._next_id
            self._next_id += 1
            self._recent.append(attempt)
        if self._db is not None:
            self._db.write(
                f"INSERT INTO recovery_attempts ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                (attempt.id, attempt.failure_type, attempt.action, attempt.source,
                 attempt.fingerprint, attempt.starts_at, attempt.dedup_key, attempt.started,
                 attempt.ended, attempt.outcome.value, attempt.detail, int(attempt.dry_run)),
            )  # fmt: skip
        return attempt

    def finish(self, attempt: RecoveryAttempt, outcome: Outcome, detail: str = "") -> None:
        """Close a running attempt."""
        attempt.outcome, attempt.ended, attempt.detail = outcome, self._clock.time(), detail
        if self._db is not None:
            self._db.write(
                "UPDATE recovery_attempts SET outcome = ?, ended = ?, detail = ? WHERE id = ?",
                (outcome.value, attempt.ended, detail, attempt.id),
            )

    def attempts(
        self,
        *,
        failure_type: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[RecoveryAttempt], int]:
        """Newest first, filtered, paginated; (page, total matching). Blocking: call it from
        a thread, not the event loop."""
        if self._db is None or not self._db.healthy:
            return self._attempts_in_memory(failure_type, outcome, since, limit, offset)
        self._db.flush(timeout=2.0)
        # Only constant column names are formatted into SQL; every value is a bound parameter.
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("failure_type", failure_type), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("started >= ?")
            params.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        count_sql = f"SELECT COUNT(*) FROM recovery_attempts{clause}"  # noqa: S608
        total = self._db.query(count_sql, params)[0][0]
        rows = self._db.query(
            f"SELECT {COLUMNS} FROM recovery_attempts{clause} "  # noqa: S608
            "ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [_attempt(row) for row in rows], int(total)

    def _attempts_in_memory(
        self, failure_type: str | None, outcome: str | None, since: float | None,
        limit: int, offset: int,
    ) -> tuple[list[RecoveryAttempt], int]:  # fmt: skip
        with self._lock:
            matching = [
                a for a in reversed(self._recent)
                if (failure_type is None or a.failure_type == failure_type)
                and (outcome is None or a.outcome.value == outcome)
                and (since is None or a.started >= since)
            ]  # fmt: skip
        return matching[offset : offset + limit], len(matching)

    def stats(self) -> list[dict[str, Any]]:
        """Per failure type and action: attempts, successes, failures, last attempt."""
        query = (
            "SELECT failure_type, action, COUNT(*), "
            "SUM(outcome = 'succeeded'), "
            "SUM(outcome IN ('failed', 'timeout', 'not_recovered', 'exhausted')), "
            "MAX(started) FROM recovery_attempts GROUP BY failure_type, action "
            "ORDER BY failure_type, action"
        )
        if self._db is not None and self._db.healthy:
            self._db.flush(timeout=2.0)
            rows = self._db.query(query)
        else:
            table: dict[tuple[str, str], list[Any]] = {}
            with self._lock:
                for a in self._recent:
                    row = table.setdefault((a.failure_type, a.action), [0, 0, 0, 0.0])
                    row[0] += 1
                    row[1] += a.outcome is Outcome.SUCCEEDED
                    row[2] += a.outcome.value in ("failed", "timeout", "not_recovered", "exhausted")
                    row[3] = max(row[3], a.started)
            rows = [(ft, action, *values) for (ft, action), values in sorted(table.items())]
        return [
            {"failure_type": ft, "action": action, "attempts": int(n), "successes": int(ok or 0),
             "failures": int(bad or 0), "last_attempt": last}
            for ft, action, n, ok, bad, last in rows
        ]  # fmt: skip

    # --- the inbox: accepted events not yet picked up by a worker ------------------------
    def inbox_add(self, event: FailureEvent) -> tuple[int, Future[bool] | None]:
        """Persist an accepted event (queued write); its inbox id, and a future that
        resolves when the row is committed (None without a database)."""
        with self._lock:
            inbox_id = self._next_inbox
            self._next_inbox += 1
        if self._db is not None:
            return inbox_id, self._db.write(
                "INSERT INTO recovery_inbox (id, failure_type, source, labels, dedup_key, "
                "fingerprint, starts_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (inbox_id, event.failure_type, event.source, to_json(event.labels).decode(),
                 event.dedup_key, event.fingerprint, event.starts_at, event.detail),
            )  # fmt: skip
        return inbox_id, None

    def inbox_remove(self, inbox_ids: list[int]) -> None:
        """Workers picked these events up."""
        if self._db is not None and inbox_ids:
            self._db.write(
                "DELETE FROM recovery_inbox WHERE id IN (SELECT value FROM json_each(?))",
                (to_json(inbox_ids).decode(),),
            )

    def inbox_after(self, after: int, limit: int) -> list[tuple[int, FailureEvent]]:
        """Persisted events with id > after, oldest first. Blocking: call off the loop."""
        if self._db is None or not self._db.healthy:
            return []
        self._db.flush(timeout=2.0)
        rows = self._db.query(
            "SELECT id, failure_type, source, labels, dedup_key, fingerprint, starts_at, detail "
            "FROM recovery_inbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [
            (int(id_), FailureEvent(ft, source, json.loads(labels), dedup_key=key,
                                    fingerprint=fp, starts_at=starts, detail=detail))
            for id_, ft, source, labels, key, fp, starts, detail in rows
        ]  # fmt: skip

    # --- episodes and cooldowns ---------------------------------------------------------
    def episode(self, key: str) -> str | None:
        """ "handled" or "resolved" for a known episode, else None."""
        with self._lock:
            return self._episodes.get(key)

    def mark_episode(self, key: str, state: str) -> None:
        """Remember an episode as handled or resolved."""
        with self._lock:
            self._episodes[key] = state
        if self._db is not None:
            self._db.write(
                "INSERT INTO recovery_episodes (dedup_key, state, seen) VALUES (?, ?, ?) "
                "ON CONFLICT(dedup_key) DO UPDATE SET state = excluded.state, seen = excluded.seen",
                (key, state, self._clock.time()),
            )

    def cooldown(self, failure_type: str) -> Cooldown | None:
        """The failure type's cooldown, if one was ever set."""
        with self._lock:
            return self._cooldowns.get(failure_type)

    def cooldowns(self) -> dict[str, Cooldown]:
        """Every failure type's cooldown."""
        with self._lock:
            return dict(self._cooldowns)

    def set_cooldown(self, failure_type: str, cooldown: Cooldown) -> None:
        """Persist a cooldown."""
        with self._lock:
            self._cooldowns[failure_type] = cooldown
        if self._db is not None:
            self._db.write(
                "INSERT INTO recovery_cooldowns (failure_type, until, consecutive) "
                "VALUES (?, ?, ?) ON CONFLICT(failure_type) DO UPDATE SET "
                "until = excluded.until, consecutive = excluded.consecutive",
                (failure_type, cooldown.until, cooldown.consecutive),
            )

    def reset(self) -> None:
        """Forget cooldowns and handled episodes (history stays)."""
        with self._lock:
            self._cooldowns.clear()
            self._episodes.clear()
        if self._db is not None:
            self._db.write("DELETE FROM recovery_cooldowns")
            self._db.write("DELETE FROM recovery_episodes")

    def prune(self, max_age: float, max_count: int) -> None:
        """Drop attempts and episodes older than max_age, and attempts beyond max_count."""
        if self._db is None:
            return
        horizon = self._clock.time() - max_age
        self._db.write("DELETE FROM recovery_attempts WHERE started < ?", (horizon,))
        self._db.write(
            "DELETE FROM recovery_attempts WHERE id <= "
            "(SELECT id FROM recovery_attempts ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (max_count,),
        )
        self._db.write("DELETE FROM recovery_episodes WHERE seen < ?", (horizon,))
