"""What a start reads from the journal: open episodes with their in-flight attempts (and
those attempts' processes), closed keys, cooldowns, recent attempts and the next ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from exporter.recovery.episode import Episode, Launch
from exporter.recovery.history import COLUMNS, attempt_from_row
from exporter.recovery.types import OPEN_STATES, QUEUED, FailureEvent, RecoveryAttempt
from exporter.storage.sqlite import Database

EPISODE_COLUMNS = (
    "id, dedup_key, failure_type, source, labels, fingerprint, starts_at, detail, state, rung, "
    "attempt_id, resolved, interruptions, received"
)
OPEN = "(" + ", ".join(f"'{state}'" for state in sorted(OPEN_STATES)) + ")"
"""The open states as an SQL list (constants only)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The journal's contents that a start needs in memory."""

    episodes: list[Episode]
    closed: dict[str, str]
    cooldowns: dict[str, tuple[float, int]]
    recent: list[RecoveryAttempt]
    next_attempt: int
    next_episode: int
    older_before: int | None
    """The journal may hold closed episodes beyond the newest closed_kept: those with ids
    below this (None when it holds no more). Never read at start: see Journal.closed_keys."""


def read(db: Database, recent: int, closed_kept: int = 10_000) -> Stored:
    """Everything a start needs, oldest open episode first."""
    next_ids = [
        int(db.query(f"SELECT COALESCE(MAX(id), 0) FROM {table}")[0][0]) + 1  # noqa: S608
        for table in ("recovery_attempts", "recovery_episodes")
    ]
    episodes = [episode(db, row) for row in db.query(
        f"SELECT {EPISODE_COLUMNS} FROM recovery_episodes WHERE state IN {OPEN} ORDER BY id"  # noqa: S608
    )]  # fmt: skip
    # The newest closed keys, oldest first (the order Claims forgets them in); older ones
    # are looked up in the journal when they come again.
    newest = db.query(
        "SELECT id, dedup_key, CASE WHEN resolved THEN 'resolved' ELSE state END "  # noqa: S608
        f"FROM recovery_episodes WHERE dedup_key IS NOT NULL AND state NOT IN {OPEN} "
        "ORDER BY id DESC LIMIT ?", (closed_kept,),
    )  # fmt: skip
    closed = {key: state for _, key, state in reversed(newest)}
    # Not the older ones themselves: a start's cost stays that of closed_kept rows however
    # long the journal (BENCHMARKS.md: start-up with a million rows). When memory is full
    # there may be older ones; the fill after start finds out.
    older_before = int(newest[-1][0]) if len(newest) == closed_kept else None
    cooldowns = {
        ft: (float(until), int(consecutive))
        for ft, until, consecutive in db.query(
            "SELECT failure_type, until, consecutive FROM recovery_cooldowns"
        )
    }
    rows = db.query(
        f"SELECT {COLUMNS} FROM recovery_attempts ORDER BY id DESC LIMIT ?",  # noqa: S608
        (recent,),
    )
    return Stored(episodes, closed, cooldowns, [attempt_from_row(r) for r in reversed(rows)],
                  next_ids[0], next_ids[1], older_before)  # fmt: skip


def episode(db: Database, row: tuple[Any, ...]) -> Episode:
    """An open episode from its row, with its in-flight attempt and process, if any."""
    (id_, key, failure_type, source, labels, fingerprint, starts_at, detail, state, rung,
     attempt_id, resolved, interruptions, received) = row  # fmt: skip
    event = FailureEvent(
        failure_type, source, json.loads(labels), dedup_key=key, fingerprint=fingerprint,
        starts_at=starts_at, detail=detail,
    )  # fmt: skip
    found = Episode(int(id_), event, float(received), state, int(rung), bool(resolved),
                    int(interruptions), started=state != QUEUED)  # fmt: skip
    if attempt_id is None:
        return found
    rows = db.query(
        f"SELECT {COLUMNS}, pid, pid_start, boot_id FROM recovery_attempts WHERE id = ?",  # noqa: S608
        (attempt_id,),
    )
    if rows:
        *columns, pid, pid_start, boot_id = rows[0]
        found.attempt = attempt_from_row(tuple(columns))
        if pid is not None:
            found.launch = Launch(int(pid), int(pid_start), str(boot_id))
    return found


def close_stray(db: Database, now: float) -> int:
    """Running attempts that no open episode owns (only the first journal layout leaves
    them: every later change is one group with its episode), closed as interrupted."""
    unowned = (
        "outcome = 'running' AND id NOT IN (SELECT attempt_id FROM recovery_episodes "  # noqa: S608
        f"WHERE state IN {OPEN} AND attempt_id IS NOT NULL)"
    )
    stray = int(db.query(f"SELECT COUNT(*) FROM recovery_attempts WHERE {unowned}")[0][0])  # noqa: S608
    if stray:
        db.write(
            "UPDATE recovery_attempts SET outcome = 'interrupted', ended = ?, "  # noqa: S608
            f"detail = 'medic stopped while this action ran' WHERE {unowned}",
            (now,),
        )
        db.flush()
    return stray
