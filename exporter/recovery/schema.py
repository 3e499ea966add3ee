"""The journal's tables, and the migration from the first layout (an inbox beside a table of
handled keys) to one row per episode that carries its whole lifecycle. Layout 3 adds the
evidence taken before a disruptive rung against a GPU (a table of its own: layout 2 gets it
by the CREATE IF NOT EXISTS below). Layout 4 adds the indexes that keep every history filter
a range read, newest first (`started`, then the filters' columns before it), and one on
episodes' arrival that bounds the age prune's scan."""

from __future__ import annotations

import logging

from exporter.storage.sqlite import Database

log = logging.getLogger(__name__)

VERSION = 4
TABLES = """
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
    dry_run      INTEGER NOT NULL DEFAULT 0,
    episode_id   INTEGER,
    rung         INTEGER,
    pid          INTEGER,
    pid_start    INTEGER,
    boot_id      TEXT
);
CREATE INDEX IF NOT EXISTS recovery_attempts_started ON recovery_attempts (started);
CREATE INDEX IF NOT EXISTS recovery_attempts_type ON recovery_attempts (failure_type, started);
CREATE INDEX IF NOT EXISTS recovery_attempts_outcome ON recovery_attempts (outcome, started);
CREATE INDEX IF NOT EXISTS recovery_attempts_type_outcome
    ON recovery_attempts (failure_type, outcome, started);
CREATE TABLE IF NOT EXISTS recovery_episodes (
    id            INTEGER PRIMARY KEY,
    dedup_key     TEXT UNIQUE,
    failure_type  TEXT NOT NULL,
    source        TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',
    fingerprint   TEXT,
    starts_at     TEXT,
    detail        TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL,
    rung          INTEGER NOT NULL DEFAULT 0,
    attempt_id    INTEGER,
    resolved      INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    reason        TEXT NOT NULL DEFAULT '',
    received      REAL NOT NULL,
    updated       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recovery_episodes_open ON recovery_episodes (state)
    WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS recovery_episodes_received ON recovery_episodes (received);
CREATE TABLE IF NOT EXISTS recovery_cooldowns (
    failure_type TEXT PRIMARY KEY,
    until        REAL NOT NULL,
    consecutive  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_evidence (
    attempt_id   INTEGER PRIMARY KEY,
    taken        REAL NOT NULL,
    body         TEXT NOT NULL
);
"""

_V1_ATTEMPT_COLUMNS = ("episode_id INTEGER", "rung INTEGER", "pid INTEGER", "pid_start INTEGER",
                       "boot_id TEXT")  # fmt: skip
_MIGRATE_V1 = """
ALTER TABLE recovery_episodes RENAME TO recovery_episodes_v1;
{add_columns}
{tables}
INSERT INTO recovery_episodes (dedup_key, failure_type, source, state, reason, received, updated)
    SELECT dedup_key, '', 'alert', state, 'from the first journal layout', seen, seen
    FROM recovery_episodes_v1;
INSERT OR IGNORE INTO recovery_episodes (dedup_key, failure_type, source, labels, fingerprint,
        starts_at, detail, state, received, updated)
    SELECT dedup_key, failure_type, source, labels, fingerprint, starts_at, detail, 'queued',
        {now}, {now}
    FROM recovery_inbox ORDER BY id;
DROP TABLE recovery_episodes_v1;
DROP TABLE recovery_inbox;
"""


def _tables(db: Database) -> set[str]:
    rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


def ensure(db: Database, now: float) -> None:
    """Create the tables, or bring an older journal to this layout (one transaction)."""
    version = int(db.query("PRAGMA user_version")[0][0])
    if version >= VERSION:
        return
    if "recovery_inbox" in _tables(db):
        # The first layout: handled/resolved keys stay answered as such ("handled" is a
        # final state), accepted events still in the inbox become queued episodes.
        add = "\n".join(
            f"ALTER TABLE recovery_attempts ADD COLUMN {c};" for c in _V1_ATTEMPT_COLUMNS
        )
        script = _MIGRATE_V1.format(add_columns=add, tables=TABLES, now=float(now))
        db.script(f"BEGIN;\n{script}\nPRAGMA user_version = {VERSION};\nCOMMIT;")
        log.warning("recovery journal migrated to layout %d", VERSION)
        return
    if version:
        log.warning("recovery journal: building layout %d's indexes (once)", VERSION)
    db.script(f"BEGIN;\n{TABLES}\nPRAGMA user_version = {VERSION};\nCOMMIT;")
