"""The SQLite writer: batched commits, shared futures in queue order, failures."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from exporter.storage import sqlite as storage
from exporter.storage.sqlite import Database
from tests.helpers import fill_database, make_room, wait_until


@contextlib.contextmanager
def writer_parked(db: Database) -> Iterator[None]:
    """Park the writer behind a first write (it waits for the connection's lock), so that
    every write queued inside the block lands in one batch, committed when it ends."""
    db.script("CREATE TABLE IF NOT EXISTS park (n INTEGER)")
    with db._lock:  # the connection: the writer's commit waits for it
        db.write("INSERT INTO park VALUES (0)")
        wait_until(lambda: not db._pending, what="the writer to take the first write")
        yield


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
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER)")
    with writer_parked(db):  # the whole burst is one batch
        last = [db.write("INSERT INTO t VALUES (?)", (n,)) for n in range(50)][-1]
    assert last.result(timeout=5) is True
    assert db.query("SELECT COUNT(*) FROM t") == [(50,)]
    db.close()


def test_a_failed_batch_marks_the_database_unhealthy_until_writes_commit_again(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER NOT NULL)")
    assert db.write("INSERT INTO t VALUES (?)", (1,)).result(timeout=5) is True
    assert db.write("INSERT INTO t VALUES (?)", (None,)).result(timeout=5) is False
    assert not db.healthy and "NOT NULL" in db.last_error
    # What failed was refused to its sender; the next commit makes the journal healthy.
    assert db.write("INSERT INTO t VALUES (?)", (2,)).result(timeout=5) is True
    assert db.healthy
    assert db.query("SELECT n FROM t ORDER BY n") == [(1,), (2,)]
    # A write that must not be lost and cannot commit keeps it unhealthy, whatever else does.
    assert db.write_group([("INSERT INTO t VALUES (?)", (None,))], retry=True).result(5) is False
    assert db.write("INSERT INTO t VALUES (?)", (3,)).result(timeout=5) is True
    assert not db.healthy
    db.close()


def test_a_group_is_never_split_across_transactions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(storage, "MAX_BATCH", 4)
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER NOT NULL)")
    insert = "INSERT INTO t VALUES (?)"
    with writer_parked(db):  # one batch: 3 writes, then a group across the boundary at 4
        for n in range(3):
            db.write(insert, (n,))
        group = db.write_group([(insert, (10,)), (insert, (11,)), (insert, (None,))])
    assert group.result(timeout=5) is False  # its third statement fails ...
    values = [n for (n,) in db.query("SELECT n FROM t ORDER BY n")]
    assert 10 not in values and 11 not in values  # ... and takes the other two with it
    db.close()


def test_a_cancelled_waiter_leaves_the_shared_batch_future_and_the_writer_alone(
    tmp_path: Path,
) -> None:
    # asyncio.wrap_future passes a waiter's cancellation on to the source future; the
    # batch's future is shared, so that used to kill the writer thread for every write.
    import asyncio

    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER)")

    async def wait_and_cancel(future: Future[bool]) -> None:
        waiter = asyncio.ensure_future(asyncio.wrap_future(future))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        waits = storage.CommitWaits()
        cancelled = asyncio.ensure_future(waits.committed(future))
        await asyncio.sleep(0)
        cancelled.cancel()  # one waiter gone: the others still wait on the shared wake-up
        db._lock.release()  # only now may it commit
        assert await waits.committed(future, timeout=5) is True

    db._lock.acquire()  # the writer's commit waits for the connection
    future = db.write("INSERT INTO t VALUES (?)", (1,))
    assert future.cancel() is False  # nobody can cancel a batch's future
    asyncio.run(wait_and_cancel(future))
    assert db.write("INSERT INTO t VALUES (?)", (2,)).result(timeout=5) is True
    assert db.query("SELECT n FROM t ORDER BY n") == [(1,), (2,)]
    db.close()


def test_a_group_that_must_not_be_lost_is_tried_again_until_it_commits(
    tmp_path: Path, monkeypatch
) -> None:
    from tests.helpers import wait_until

    monkeypatch.setattr(storage, "RETRY_MAX", 0.05)
    db = Database(tmp_path / "medic.db")
    db.script("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
    fill_database(db)
    big = [("INSERT INTO t VALUES (?)", (n,)) for n in range(1, 2000)]  # needs new pages
    assert db.write_group(big, retry=True).result(timeout=5) is False
    plain = [("INSERT INTO t VALUES (?)", (-n,)) for n in range(1, 2000)]
    assert db.write_group(plain).result(timeout=5) is False
    poison = db.write_group([("INSERT INTO t VALUES (?)", (None,))], retry=True)  # never commits
    assert poison.result(timeout=5) is False
    make_room(db)
    wait_until(lambda: db.query("SELECT COUNT(*) FROM t")[0][0] == 1999, what="the retry")
    assert db.query("SELECT COUNT(*) FROM t WHERE n < 0") == [(0,)]  # a plain write is not
    assert db.write("INSERT INTO t VALUES (?)", (5000,)).result(timeout=5) is True  # unblocked
    db.close()
