"""One SQLite file, one connection, and a writer thread that group-commits.

Callers never wait on the disk: write() queues a statement and returns; the writer thread
commits whatever has queued up in one transaction. A commit costs the same for one row or
five hundred, so batching is what keeps throughput high. When the disk refuses (read-only,
full), the error is logged once, `healthy` turns False for the rest of the process (the file
now misses rows), and medic keeps going on its in-memory state.
"""

from __future__ import annotations

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
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._batch: Future[bool] = Future()
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

    def _take(self) -> tuple[list[tuple[str, tuple[Any, ...]]], Future[bool]] | None:
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
            done, self._batch = self._batch, Future()
        return batch, done

    def _write_loop(self) -> None:
        while (taken := self._take()) is not None:
            batch, done = taken
            committed = True
            for start in range(0, len(batch), MAX_BATCH):  # bounded transactions
                committed = self._commit(batch[start : start + MAX_BATCH]) and committed
            done.set_result(committed)
            with self._idle:
                self._queued -= len(batch)
                self._idle.notify_all()

    def _commit(self, batch: list[tuple[str, tuple[Any, ...]]]) -> bool:
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
