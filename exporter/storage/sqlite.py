"""One SQLite file, one connection, and a writer thread that group-commits.

Callers never wait on the disk: write() queues a statement and returns; the writer thread
commits whatever has queued up in one transaction. A commit costs the same for one row or
five hundred, so batching is what keeps throughput high. When the disk refuses (read-only,
full), the error is logged once, `healthy` turns False for the rest of the process (the file
now misses rows), and medic keeps going on its in-memory state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Statement = tuple[str, tuple[Any, ...]]

DB_FILE = "medic.db"
"""medic's database in its data directory: breaker state and the recovery journal."""
MAX_BATCH = 1000
LINGER = 0.002
"""Seconds the writer waits for more rows before a commit (webhook bench: 3.7k -> 4.3k/s)."""


class Database:
    """A SQLite database in WAL mode with queued, batched writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
        # Writes wait in a list; every write until the writer takes the list shares one
        # future (a Future per write was a measurable share of the webhook's CPU).
        self._pending_lock = threading.Lock()
        self._work = threading.Condition(self._pending_lock)
        self._idle = threading.Condition(self._pending_lock)
        self._pending: list[Statement | list[Statement]] = []
        self._batch: Future[bool] = _batch_future()
        self._queued = 0
        self._stopping = False
        self._writer: threading.Thread | None = None
        self.healthy = True
        self.last_error = ""

    def script(self, sql: str) -> None:
        """Run DDL now (schema creation at start-up)."""
        with self._lock:
            self._conn.executescript(sql)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read and return every row."""
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def write(self, sql: str, params: Iterable[Any] = ()) -> Future[bool]:
        """Queue a write; it is committed soon, with whatever else is queued.

        The future resolves when its batch is committed: True, or False when the batch
        failed (the database is then unhealthy). Waiting on it is optional. Batches commit
        in the order their writes were queued, so once a write's future resolves, every
        write queued before it has resolved too.
        """
        row = (sql, tuple(params))
        with self._pending_lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="medic-sqlite", daemon=True
                )
                self._writer.start()
            self._pending.append(row)
            self._queued += 1
            if len(self._pending) == 1:
                self._work.notify()
            return self._batch

    def write_group(self, statements: list[Statement]) -> Future[bool]:
        """Queue statements that commit together or not at all: a batch is never split
        inside a group. Otherwise as write()."""
        group = [(sql, tuple(params)) for sql, params in statements]
        with self._pending_lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="medic-sqlite", daemon=True
                )
                self._writer.start()
            self._pending.append(group)
            self._queued += 1
            if len(self._pending) == 1:
                self._work.notify()
            return self._batch

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write is committed (or failed); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._queued == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, stop the writer, close the connection."""
        self.flush(timeout)
        with self._pending_lock:
            self._stopping = True
            self._work.notify()
        if self._writer is not None:
            self._writer.join(timeout)
        with self._lock:
            self._conn.close()

    def _take(self) -> tuple[list[Statement | list[Statement]], Future[bool]] | None:
        """The queued writes and their shared future; None once stopping with none left."""
        with self._pending_lock:
            while not self._pending:
                if self._stopping:
                    return None
                self._work.wait()
            lone = len(self._pending) == 1
        if lone and LINGER:
            # Under load more rows are a moment away: waiting for them fills the batch,
            # and one commit for many rows is what keeps throughput up.
            time.sleep(LINGER)
        with self._pending_lock:
            batch, self._pending = self._pending, []
            done, self._batch = self._batch, _batch_future()
        return batch, done

    def _write_loop(self) -> None:
        while (taken := self._take()) is not None:
            batch, done = taken
            committed = True
            for chunk in _transactions(batch):
                committed = self._commit(chunk) and committed
            done.set_result(committed)
            with self._idle:
                self._queued -= len(batch)
                self._idle.notify_all()

    def _commit(self, batch: list[Statement]) -> bool:
        try:
            with self._lock:
                self._conn.execute("BEGIN")
                try:
                    # Runs of the same statement go through executemany: one call into
                    # SQLite per run instead of per row.
                    for sql, rows in itertools.groupby(batch, key=lambda item: item[0]):
                        self._conn.executemany(sql, [params for _, params in rows])
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # SQLITE_FULL has rolled back already
                        self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            # Sticky: once a batch is lost the file's history has a hole, whatever succeeds
            # later. Readers should trust their in-memory state from here on.
            if self.healthy:
                log.error("cannot write %s: %s; keeping state in memory only", self.path, exc)
            self.healthy = False
            self.last_error = str(exc)
            return False
        return True


def _batch_future() -> Future[bool]:
    """A batch's shared future, marked running so that no waiter can cancel it (a cancelled
    future would make the writer's set_result raise, for every other waiter too)."""
    future: Future[bool] = Future()
    future.set_running_or_notify_cancel()
    return future


async def committed(future: Future[bool] | None, timeout: float | None = None) -> bool:
    """Wait, without blocking the event loop, for a write's commit: True once committed,
    False if it failed or took over `timeout`. A None future (no database) is True.

    One done-callback and one loop wake-up; the future itself is never touched, so the
    waiter's cancellation stays its own (asyncio.wrap_future would pass it on)."""
    if future is None:
        return True
    if not future.done():
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: Future[bool]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(_settle, waiter)

        future.add_done_callback(wake)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
    return future.result()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # it may have timed out or been cancelled meanwhile
        waiter.set_result(None)


def _transactions(batch: list[Statement | list[Statement]]) -> list[list[Statement]]:
    """The batch's statements in transactions of about MAX_BATCH (bounded, so one commit
    never holds the lock for long), never splitting a group."""
    chunks: list[list[Statement]] = [[]]
    for item in batch:
        if len(chunks[-1]) >= MAX_BATCH:
            chunks.append([])
        if isinstance(item, list):
            chunks[-1].extend(item)
        else:
            chunks[-1].append(item)
    return chunks
