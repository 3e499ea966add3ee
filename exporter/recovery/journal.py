"""The recovery journal: episodes, attempts and cooldowns, in medic's SQLite file.

Every change of an episode's lifecycle is one write group (see Database.write_group): the
episode's row and the attempt it starts or ends commit together or not at all, so after a
crash the file never says "rung 2 started" without saying which attempt. Writes return the
future of their commit; the engine waits on it where the guarantees need it (an action
starts only once its start is committed). An in-memory mirror of recent attempts and of
cooldowns keeps history readable and the engine going when the disk refuses writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from exporter.clock import Clock
from exporter.recovery import history, schema, startup
from exporter.recovery.episode import Episode, Launch
from exporter.recovery.history import COLUMNS
from exporter.recovery.startup import EPISODE_COLUMNS
from exporter.recovery.startup import OPEN as _OPEN
from exporter.recovery.types import Outcome, RecoveryAttempt
from exporter.storage.sqlite import Database, Statement

log = logging.getLogger(__name__)

MEMORY_ATTEMPTS = 5000
MEMORY_CLOSED = 10_000
"""Closed episodes' keys kept in memory for dedup; older ones are looked up in the journal."""
PRUNE_STEP = 100
"""Retention by count deletes every this many new attempts (closed episodes): a table holds
at most its bound + PRUNE_STEP closed rows (and each delete is one range on the key)."""


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A failure type rests until `until` (wall clock); `consecutive` exhausted ladders."""

    until: float
    consecutive: int


@dataclass(frozen=True, slots=True)
class Opened:
    """What a start-up finds in the journal."""

    episodes: list[Episode]
    """Open episodes, oldest first; a running one carries its in-flight attempt."""
    closed: dict[str, str]
    """Dedup key -> final state of the newest closed episodes (MEMORY_CLOSED)."""
    stray: int
    """Running attempts of the first journal layout, now closed as interrupted."""
    older_before: int | None = None
    """The journal may hold closed episodes older than `closed`: ids below this (None: it
    holds none)."""


class Journal:
    """Persists episodes, attempts and cooldowns; reads history back."""

    def __init__(
        self,
        db: Database | None,
        clock: Clock,
        *,
        max_attempts: int = 10_000,
        max_episodes: int = 100_000,
    ) -> None:
        self.db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[RecoveryAttempt] = deque(maxlen=MEMORY_ATTEMPTS)
        self._cooldowns: dict[str, Cooldown] = {}
        self._next_attempt = 1
        self._next_episode = 1
        self._max_attempts, self._max_episodes = max_attempts, max_episodes
        self._closings = 0
        if db is not None:
            schema.ensure(db, clock.time())

    @property
    def durable(self) -> bool:
        """Whether there is a database at all (else everything lives in memory)."""
        return self.db is not None

    @property
    def healthy(self) -> bool:
        """False when there is no database or its last write failed."""
        return self.db is not None and self.db.healthy

    # --- start-up -----------------------------------------------------------------------
    def open(self) -> Opened:
        """Load open episodes (with their in-flight attempts), closed keys, cooldowns and
        recent attempts; close running attempts of the first layout that nobody owns."""
        if self.db is None:
            return Opened([], {}, 0)
        found = startup.read(self.db, MEMORY_ATTEMPTS, MEMORY_CLOSED)
        self._next_attempt, self._next_episode = found.next_attempt, found.next_episode
        self._cooldowns.update(
            (ft, Cooldown(until, consecutive))
            for ft, (until, consecutive) in found.cooldowns.items()
        )
        self._recent.extend(found.recent)
        stray = startup.close_stray(self.db, self._clock.time())
        return Opened(found.episodes, found.closed, stray, found.older_before)

    # --- identifiers --------------------------------------------------------------------
    def episode_id(self) -> int:
        """A new episode's id (ids only grow, in arrival order)."""
        with self._lock:
            value, self._next_episode = self._next_episode, self._next_episode + 1
        return value

    def _attempt_id(self) -> int:
        with self._lock:
            value, self._next_attempt = self._next_attempt, self._next_attempt + 1
        if value % PRUNE_STEP == 0:
            self._trim_attempts()
        return value

    # --- episode lifecycle (each method is one atomic write group) ------------------------
    def _group(self, statements: list[Statement], *, retry: bool = False) -> Future[bool] | None:
        return None if self.db is None else self.db.write_group(statements, retry=retry)

    def _lasting(self, statements: list[Statement]) -> Future[bool] | None:
        """A record that must not be lost (what happened): tried again until it commits.
        Its statements are idempotent and safe late (conditional on the state they end)."""
        return self._group(statements, retry=True)

    def add_episode(self, episode: Episode) -> Future[bool] | None:
        """The claim: a queued episode."""
        event, now = episode.event, self._clock.time()
        # OR REPLACE: an app's claim that failed to commit is written again (its id stays).
        return self._group([(
            f"INSERT OR REPLACE INTO recovery_episodes ({EPISODE_COLUMNS}, updated) "  # noqa: S608
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (episode.id, event.dedup_key, event.failure_type, event.source,
             to_json(event.labels).decode(), event.fingerprint, event.starts_at, event.detail,
             episode.state, episode.rung, None, int(episode.resolved), 0, episode.received, now),
        )])  # fmt: skip

    def tombstone(self, key: str) -> Future[bool] | None:
        """A resolved alert for an episode never seen firing: a later firing is ignored."""
        now = self._clock.time()
        written = self._lasting([(
            "INSERT OR IGNORE INTO recovery_episodes (id, dedup_key, failure_type, source, "
            "state, received, updated) VALUES (?, ?, '', 'alert', 'resolved', ?, ?)",
            (self.episode_id(), key, now, now),
        )])  # fmt: skip
        self._trim_episodes()  # closed at birth
        return written

    def mark_resolved(self, episode: Episode) -> Future[bool] | None:
        """The episode's alert resolved (its next rung will not start)."""
        return self._lasting([(
            "UPDATE recovery_episodes SET resolved = 1, updated = ? WHERE id = ?",
            (self._clock.time(), episode.id),
        )])  # fmt: skip

    def mark_resolved_key(self, key: str) -> Future[bool] | None:
        """A closed episode's alert resolved: a late firing of it is ignored."""
        return self._lasting([(
            "UPDATE recovery_episodes SET resolved = 1, updated = ? WHERE dedup_key = ?",
            (self._clock.time(), key),
        )])  # fmt: skip

    def start_rung(
        self, episode: Episode, attempt: RecoveryAttempt, evidence: str | None = None
    ) -> Future[bool] | None:
        """Rung `attempt.rung` starts: the episode runs it, the attempt is recorded, with the
        evidence taken before it (JSON) in the same commit. (Call remember() once it
        committed: a start that failed to commit is written again.)"""
        statements: list[Statement] = [
            self._insert(attempt, replace=True),  # written again if it failed to commit
            ("UPDATE recovery_episodes SET state = 'running', rung = ?, attempt_id = ?, "
             "interruptions = ?, updated = ? WHERE id = ?",
             (attempt.rung, attempt.id, episode.interruptions, attempt.started, episode.id)),
        ]  # fmt: skip
        if evidence is not None:
            statements.append((
                "INSERT OR REPLACE INTO recovery_evidence (attempt_id, taken, body) "
                "VALUES (?, ?, ?)", (attempt.id, attempt.started, evidence),
            ))  # fmt: skip
        return self._group(statements)

    def evidence(self, attempt_id: int) -> dict[str, Any] | None:
        """What was recorded before an attempt's disruptive action, or None."""
        if self.db is None:
            return None
        rows = self.db.query(
            "SELECT body FROM recovery_evidence WHERE attempt_id = ?", (attempt_id,)
        )
        if not rows:
            return None
        found: dict[str, Any] = json.loads(rows[0][0])
        return found

    def record_launch(self, attempt: RecoveryAttempt, launch: Launch) -> Future[bool] | None:
        """A command's process exists (still held at its gate): who it is."""
        return self._group([(
            "UPDATE recovery_attempts SET pid = ?, pid_start = ?, boot_id = ? WHERE id = ?",
            (launch.pid, launch.start, launch.boot_id, attempt.id),
        )])  # fmt: skip

    def end_rung(
        self, episode: Episode, attempt: RecoveryAttempt, outcome: Outcome, detail: str
    ) -> Future[bool] | None:
        """The rung in flight ended without ending the ladder: the next one is due."""
        self._close(attempt, outcome, detail)
        return self._lasting([
            self._update(attempt),
            # Only while this attempt is the one in flight: a late retry changes nothing else.
            ("UPDATE recovery_episodes SET rung = ?, attempt_id = NULL, interruptions = ?, "
             "updated = ? WHERE id = ? AND attempt_id = ?",
             (episode.rung, episode.interruptions, attempt.ended, episode.id, attempt.id)),
        ])  # fmt: skip

    def skip_rung(self, episode: Episode, attempt: RecoveryAttempt) -> Future[bool] | None:
        """A rung a gate skipped (already final) and the ladder goes on."""
        self._remember(attempt)
        return self._lasting([
            self._insert(attempt, replace=True),
            ("UPDATE recovery_episodes SET state = 'running', rung = ?, updated = ? "  # noqa: S608
             f"WHERE id = ? AND state IN {_OPEN} AND rung < ?",
             (episode.rung, attempt.started, episode.id, episode.rung)),
        ])  # fmt: skip

    def end_episode(
        self,
        episode: Episode,
        reason: str,
        *,
        closing: tuple[RecoveryAttempt, Outcome, str] | None = None,
        record: RecoveryAttempt | None = None,
        cooldown: Cooldown | None = None,
    ) -> Future[bool] | None:
        """The episode reaches its final state (episode.state), with the in-flight attempt
        closed, a final record added (skip, exhausted, ...) and a cooldown set, as given."""
        now = self._clock.time()
        statements: list[Statement] = []
        if closing is not None:
            attempt, outcome, detail = closing
            self._close(attempt, outcome, detail)
            statements.append(self._update(attempt))
        if record is not None:
            self._remember(record)
            statements.append(self._insert(record, replace=True))
        if cooldown is not None:
            statements.append(self._cooldown(episode.failure_type, cooldown))
        statements.append((
            "UPDATE recovery_episodes SET state = ?, reason = ?, attempt_id = NULL, "
            "interruptions = ?, updated = ? WHERE id = ?",
            (episode.state, reason[:2000], episode.interruptions, now, episode.id),
        ))  # fmt: skip
        ended = self._lasting(statements)
        self._trim_episodes()
        return ended

    def interrupt(self, attempt: RecoveryAttempt, detail: str) -> Future[bool] | None:
        """The rung in flight was cut off (medic stops): closed as interrupted, still the
        episode's attempt in flight, so the next start applies the interrupted policy."""
        self._close(attempt, Outcome.INTERRUPTED, detail)
        return self._lasting([self._update(attempt)])

    def record(self, attempt: RecoveryAttempt) -> Future[bool] | None:
        """A final record outside any episode's lifecycle (a duplicate arrival)."""
        self._remember(attempt)
        return self._lasting([self._insert(attempt, replace=True)])

    def new_attempt(self, attempt: RecoveryAttempt) -> RecoveryAttempt:
        """Give an attempt its id."""
        attempt.id = self._attempt_id()
        return attempt

    def remember(self, attempt: RecoveryAttempt) -> None:
        """Mirror an attempt in memory (history while the file cannot be read)."""
        with self._lock:
            self._recent.append(attempt)

    # --- statements -----------------------------------------------------------------------
    def _remember(self, attempt: RecoveryAttempt) -> None:
        if not attempt.id:
            attempt.id = self._attempt_id()
        self.remember(attempt)

    def _close(self, attempt: RecoveryAttempt, outcome: Outcome, detail: str) -> None:
        attempt.outcome, attempt.ended, attempt.detail = outcome, self._clock.time(), detail[:2000]

    @staticmethod
    def _insert(a: RecoveryAttempt, replace: bool = False) -> Statement:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        return (
            f"{verb} INTO recovery_attempts ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.id, a.failure_type, a.action, a.source, a.fingerprint, a.starts_at, a.dedup_key,
             a.started, a.ended, a.outcome.value, a.detail, int(a.dry_run), a.episode_id,
             a.rung),
        )  # fmt: skip

    @staticmethod
    def _update(a: RecoveryAttempt) -> Statement:
        return (
            "UPDATE recovery_attempts SET outcome = ?, ended = ?, detail = ? WHERE id = ?",
            (a.outcome.value, a.ended, a.detail, a.id),
        )

    def _cooldown(self, failure_type: str, cooldown: Cooldown) -> Statement:
        with self._lock:
            self._cooldowns[failure_type] = cooldown
        return (
            # A late retry never moves a newer cooldown back.
            "INSERT INTO recovery_cooldowns (failure_type, until, consecutive) VALUES (?, ?, ?) "
            "ON CONFLICT(failure_type) DO UPDATE SET until = excluded.until, "
            "consecutive = excluded.consecutive WHERE excluded.until >= until",
            (failure_type, cooldown.until, cooldown.consecutive),
        )

    # --- cooldowns ----------------------------------------------------------------------
    def cooldown(self, failure_type: str) -> Cooldown | None:
        """The failure type's cooldown, if one was ever set."""
        with self._lock:
            return self._cooldowns.get(failure_type)

    def cooldowns(self) -> dict[str, Cooldown]:
        """Every failure type's cooldown."""
        with self._lock:
            return dict(self._cooldowns)

    # --- maintenance --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget cooldowns and closed episodes (history and open episodes stay)."""
        with self._lock:
            self._cooldowns.clear()
        if self.db is not None:
            self.db.write("DELETE FROM recovery_cooldowns")
            self.db.write(f"DELETE FROM recovery_episodes WHERE state NOT IN {_OPEN}")  # noqa: S608

    def closed_state(self, key: str) -> str | None:
        """A key's state in the journal ('resolved' if its alert resolved), or None when the
        journal has no episode for it. A short read that never waits for a commit."""
        if self.db is None:
            return None
        rows = self.db.query(
            "SELECT CASE WHEN resolved THEN 'resolved' ELSE state END FROM recovery_episodes "
            "WHERE dedup_key = ?", (key,),
        )  # fmt: skip
        return str(rows[0][0]) if rows else None

    def closed_keys(self, before: int, chunk: int = 5000) -> Iterator[list[str]]:
        """The keys of closed episodes with ids below `before`, a chunk at a time (Claims
        fills its filter from them after start). Each chunk is a short read of its own,
        by id: a read held open for the whole fill would keep checkpoints from finishing
        and the WAL growing while a prune deletes millions of rows."""
        if self.db is None:
            return
        after = 0
        while True:
            rows = self.db.query(
                "SELECT id, dedup_key FROM recovery_episodes WHERE id > ? AND id < ? "  # noqa: S608
                f"AND dedup_key IS NOT NULL AND state NOT IN {_OPEN} ORDER BY id LIMIT ?",
                (after, before, chunk),
            )  # fmt: skip
            if not rows:
                return
            after = int(rows[-1][0])
            yield [str(key) for _, key in rows]

    def _trim_attempts(self) -> None:
        """Retention by count, continuously: the attempts beyond the newest max_count are
        exactly those with smaller ids (ids only grow), so this is a range on the primary
        key, swept every PRUNE_STEP ids in short transactions (a journal far past its bound,
        after the bound was lowered, never holds the writer)."""
        if self.db is None:
            return
        with self._lock:
            beyond = self._next_attempt - 1 - self._max_attempts
        if beyond > 0:
            # Never a rung still in flight: a restart adopts or resumes it from its row.
            self.db.sweep(
                "DELETE FROM recovery_attempts WHERE id IN (SELECT id FROM recovery_attempts "
                "WHERE id <= ? AND outcome != 'running' ORDER BY id LIMIT ?)",
                (beyond,),
            )

    def _trim_episodes(self) -> None:
        """Closed episodes beyond the newest max_episodes, every PRUNE_STEP closings (open
        ones always stay: their ladders still run)."""
        if self.db is None:
            return
        with self._lock:
            self._closings += 1
            if self._closings % PRUNE_STEP:
                return
            beyond = self._next_episode - 1 - self._max_episodes
        if beyond > 0:
            self.db.sweep(
                "DELETE FROM recovery_episodes WHERE id IN (SELECT id FROM recovery_episodes "  # noqa: S608
                f"WHERE id <= ? AND state NOT IN {_OPEN} ORDER BY id LIMIT ?)",
                (beyond,),
            )

    def prune(self, max_age: float) -> Future[int] | None:
        """Drop finished attempts and closed episodes older than max_age (the count bounds
        are kept as records are written: see _trim_attempts and _trim_episodes). Swept in
        short transactions between other writes: a prune of millions of rows never holds
        a claim's commit. Returns the last sweep's future (every sweep before it is done by
        then)."""
        if self.db is None:
            return None
        horizon = self._clock.time() - max_age
        self.db.sweep(
            "DELETE FROM recovery_attempts WHERE id IN (SELECT id FROM recovery_attempts "
            "WHERE started < ? AND outcome != 'running' LIMIT ?)",
            (horizon,),
        )
        self.db.sweep(
            "DELETE FROM recovery_episodes WHERE id IN (SELECT id FROM recovery_episodes "  # noqa: S608
            # updated >= received: the arrival's index bounds the scan to old episodes.
            f"WHERE received < ? AND updated < ? AND state NOT IN {_OPEN} LIMIT ?)",
            (horizon, horizon),
        )
        # Evidence goes with its attempt (kept by count and by age above).
        return self.db.sweep(
            "DELETE FROM recovery_evidence WHERE attempt_id IN (SELECT attempt_id FROM "
            "recovery_evidence AS e WHERE NOT EXISTS (SELECT 1 FROM recovery_attempts AS a "
            "WHERE a.id = e.attempt_id) LIMIT ?)"
        )

    # --- history ------------------------------------------------------------------------
    def recent(self) -> list[RecoveryAttempt]:
        """The in-memory mirror of recent attempts, oldest first."""
        with self._lock:
            return list(self._recent)

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
        return history.attempts(
            self.db, self.recent(), failure_type=failure_type, outcome=outcome, since=since,
            limit=limit, offset=offset,
        )  # fmt: skip

    def stats(self) -> list[dict[str, Any]]:
        """Per failure type and action: attempts, successes, failures, last attempt."""
        return history.stats(self.db, self.recent())
