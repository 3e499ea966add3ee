"""What keeps the journal's costs flat as it grows: reads beside the writer, prunes in short
transactions, and a start that reads a bounded number of rows (BENCHMARKS.md, issue 19)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from exporter.recovery import journal as journal_module
from exporter.recovery.claims import Claims
from exporter.recovery.journal import Journal
from exporter.recovery.types import FailureEvent
from exporter.storage import sqlite as storage
from exporter.storage.sqlite import Database
from tests.helpers import FakeClock, wait_until

LONG_READ = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) "
    "SELECT COUNT(*) FROM c"
)


def test_a_commit_never_waits_for_a_long_read(tmp_path: Path) -> None:
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER)")
    assert db.write("INSERT INTO t VALUES (0)").result(timeout=5)
    finished = threading.Event()

    def read() -> None:
        db.query(LONG_READ)  # seconds of SQLite work on a reader connection
        finished.set()

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: db.reader_connections == 1, what="the long read to begin")
    assert db.write("INSERT INTO t VALUES (1)").result(timeout=5) is True
    assert not finished.is_set()  # committed while the read still ran
    reader.join(timeout=60)
    db.close()


def test_a_prune_never_holds_a_commit_behind_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(storage, "SWEEP_BATCH", 50)
    clock = FakeClock()
    db = Database(tmp_path / "medic.db")
    journal = Journal(db, clock, max_attempts=10**9)
    journal.open()
    old = clock.time() - 40 * 86400
    rows = [(n, old + n, "succeeded") for n in range(1, 40_001)]
    db.write_group([
        ("INSERT INTO recovery_attempts (id, failure_type, action, source, started, outcome) "
         "VALUES (?, 'network_error', 'noop', 'app', ?, ?)", row) for row in rows
    ]).result(timeout=30)  # fmt: skip
    pruned = journal.prune(max_age=30 * 86400)
    assert pruned is not None
    # A claim's commit queued behind a prune of 40,000 rows lands between two of its steps.
    assert db.write("INSERT INTO recovery_cooldowns VALUES ('x', 1, 1)").result(timeout=5)
    assert not pruned.done()
    assert pruned.result(timeout=60) == 0  # the last sweep: evidence (none)
    assert db.query("SELECT COUNT(*) FROM recovery_attempts") == [(0,)]
    db.close()


def test_a_sweep_changes_a_bounded_number_of_rows_per_transaction(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(storage, "SWEEP_BATCH", 10)
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    db.write_group([("INSERT INTO t VALUES (?)", (n,)) for n in range(5000)]).result(timeout=5)
    seen: list[int] = []
    watcher = sqlite3.connect(tmp_path / "medic.db", isolation_level=None)

    def count() -> int:
        return int(watcher.execute("SELECT COUNT(*) FROM t").fetchone()[0])

    swept = db.sweep("DELETE FROM t WHERE n IN (SELECT n FROM t WHERE n >= ? LIMIT ?)", (0,))
    deadline = time.monotonic() + 60
    while not swept.done() and time.monotonic() < deadline:  # watched as it goes
        seen.append(count())
    assert swept.result(timeout=5) == 5000
    # Every state another connection saw is a multiple of the batch: one per transaction.
    assert len(set(seen)) > 1 and all(n % 10 == 0 for n in seen)
    watcher.close()
    db.close()


def _closed_episodes(db: Database, count: int) -> None:
    db.write_group([
        ("INSERT INTO recovery_episodes (id, dedup_key, failure_type, source, state, received, "
         "updated) VALUES (?, ?, 'network_error', 'alert', 'succeeded', 1, 1)", (n, f"k{n}"))
        for n in range(1, count + 1)
    ]).result(timeout=30)  # fmt: skip


def test_a_start_reads_a_bounded_number_of_rows_however_long_the_journal(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(journal_module, "MEMORY_CLOSED", 50)
    monkeypatch.setattr(journal_module, "MEMORY_ATTEMPTS", 20)
    db = Database(tmp_path / "medic.db")
    Journal(db, FakeClock())  # the tables
    _closed_episodes(db, 5000)
    read: list[int] = []
    query = db.query

    def counting(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        rows = query(sql, params)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(db, "query", counting)
    journal = Journal(db, FakeClock())
    opened = journal.open()
    assert len(opened.closed) == 50 and opened.older_before == 4951
    assert sum(read) <= 50 + 20 + 10  # closed keys kept, recent attempts, ids and flags
    db.close()


@pytest.mark.parametrize("filled", [False, True])
def test_dedup_answers_for_keys_memory_never_loaded(
    tmp_path: Path, monkeypatch, filled: bool
) -> None:
    monkeypatch.setattr(journal_module, "MEMORY_CLOSED", 50)
    db = Database(tmp_path / "medic.db")
    Journal(db, FakeClock())
    _closed_episodes(db, 2000)
    journal = Journal(db, FakeClock())
    opened = journal.open()
    claims = Claims(journal, FakeClock(), queue_size=10)
    claims.load(opened)
    assert opened.older_before is not None
    if filled:
        assert claims.fill(journal.closed_keys(opened.older_before, chunk=100))
    for key in ("k1", "k1000", "k1990"):  # older than memory, near the boundary, in memory
        assert claims.claim(FailureEvent("network_error", "alert", {}, key)).result == "duplicate"
    assert claims.claim(FailureEvent("network_error", "alert", {}, "new")).result == "accepted"
    db.close()


def test_every_history_filter_is_a_range_read_on_an_index(tmp_path: Path) -> None:
    db = Database(tmp_path / "medic.db")
    Journal(db, FakeClock())
    columns = [None, "failure_type = ?", "outcome = ?", "failure_type = ? AND outcome = ?"]
    for where in columns:
        for since in (False, True):
            clause = " AND ".join(c for c in (where, "started >= ?" if since else None) if c)
            sql = "SELECT * FROM recovery_attempts" + (f" WHERE {clause}" if clause else "")
            params = ("x",) * (where or "").count("?") + ((0.0,) if since else ())
            for query in (f"{sql} ORDER BY started DESC, id DESC LIMIT 100",
                          sql.replace("*", "COUNT(*)", 1)):  # fmt: skip
                steps = db.query(f"EXPLAIN QUERY PLAN {query}", params)
                plan = " | ".join(str(step[-1]) for step in steps)
                assert "TEMP B-TREE" not in plan, (query, plan)  # no sort of the matches
                if clause:
                    assert "USING" in plan and "INDEX" in plan, (query, plan)
    db.close()
