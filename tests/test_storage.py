"""The SQLite writer: batched commits, shared futures in queue order, failures."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from exporter.storage import sqlite as storage
from exporter.storage.sqlite import Database


def test_writes_commit_in_order_and_their_futures_resolve_in_order(tmp_path: Path) -> None:
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER)")
    futures = [db.write("INSERT INTO t (n) VALUES (?)", (n,)) for n in range(500)]
    assert futures[-1].result(timeout=5) is True
    assert all(f.done() and f.result() for f in futures)  # the last one done: all done
    assert len({id(f) for f in futures}) < len(futures)  # writes share their batch's future
    assert db.query("SELECT n FROM t ORDER BY rowid") == [(n,) for n in range(500)]
    db.close()
    reopened = sqlite3.connect(tmp_path / "medic.db")
    assert reopened.execute("SELECT COUNT(*) FROM t").fetchone() == (500,)
    reopened.close()


def test_writes_from_many_threads_all_land_and_flush_waits_for_them(tmp_path: Path) -> None:
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (thread INTEGER, n INTEGER)")

    def writer(thread: int) -> None:
        for n in range(200):
            db.write("INSERT INTO t VALUES (?, ?)", (thread, n))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert db.flush(5)
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT thread) FROM t") == [(1600, 8)]
    for index in range(8):  # each thread's rows in its own order
        rows = db.query("SELECT n FROM t WHERE thread = ? ORDER BY rowid", (index,))
        assert [n for (n,) in rows] == list(range(200))
    db.close()


def test_a_batch_larger_than_max_batch_commits_in_bounded_transactions(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(storage, "MAX_BATCH", 7)
    monkeypatch.setattr(storage, "LINGER", 0.05)  # let the whole burst queue up first
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER)")
    last = [db.write("INSERT INTO t VALUES (?)", (n,)) for n in range(50)][-1]
    assert last.result(timeout=5) is True
    assert db.query("SELECT COUNT(*) FROM t") == [(50,)]
    db.close()


def test_a_failed_batch_resolves_false_and_marks_the_database_unhealthy(tmp_path: Path) -> None:
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER NOT NULL)")
    assert db.write("INSERT INTO t VALUES (?)", (1,)).result(timeout=5) is True
    assert db.write("INSERT INTO t VALUES (?)", (None,)).result(timeout=5) is False
    assert not db.healthy and "NOT NULL" in db.last_error
    assert db.write("INSERT INTO t VALUES (?)", (2,)).result(timeout=5) is True
    assert not db.healthy  # sticky: the file has a hole in its history
    assert db.query("SELECT n FROM t ORDER BY n") == [(1,), (2,)]
    db.close()
