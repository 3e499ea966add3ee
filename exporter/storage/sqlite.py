"""One SQLite file, one connection, and a writer thread that group-commits.

Callers never block on the disk: write() queues a statement and returns its batch's
future; the writer thread commits whatever has queued up in one transaction. A commit costs
the same for one row or five hundred, so batching is what keeps throughput high. Whoever
must know that a write is on disk (an alert's claim, a rung's start) awaits the future.
When the disk refuses (read-only, full), the error is logged and `healthy` turns False;
groups written with retry=True (what must not be lost) are committed again, with backoff,
until they are. `healthy` turns True again once a batch commits and no such group waits.
Reads never share the writer's connection: each runs on a reader connection of its own,
taken from a small pool (one per concurrent read), so in WAL mode no read waits for a commit
and no commit waits for a read, however long the read (a stats query over a million rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Statement = tuple[str, tuple[Any, ...]]
RETRY_MAX = 30.0
"""Seconds between tries at most, for a group that must not be lost (see write_group)."""


@dataclass(slots=True)
class Group:
    """Statements that commit together; `retry`: tried again until committed."""

    statements: list[Statement]
    retry: bool = False
    tries: int = 0


@dataclass(slots=True)
class Sweep:
    """A bulk change run in short transactions of its own until it changes no more rows."""

    sql: str
    params: tuple[Any, ...]
    done: Future[int]
    changed: int = 0


SWEEP_BATCH = 500
"""Rows one step of a sweep may change: a few milliseconds of the writer at most."""
SWEEP_DUTY = 0.25
"""The share of time sweep steps may take: after a step of d seconds the next waits 3d
(queued writes go in between at once). A prune of 2,000,000 rows: about 40 s."""

CHECKPOINT_EVERY = 0.5
"""Seconds between WAL checkpoints at most while commits go on."""

DB_FILE = "medic.db"
"""medic's database in its data directory: breaker state and the recovery journal."""
MAX_BATCH = 1000


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
            # A big batch can grow the WAL; without a limit the file keeps its largest size
            # forever.
            self._conn.execute("PRAGMA journal_size_limit=8388608")
            # Checkpoints run on a thread of their own (_checkpoints), never inside a
            # commit: an automatic one made the commit that crossed 1,000 pages wait for
            # the copy and its fsync, 20 ms during a prune instead of 3 (BENCHMARKS.md).
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        # Writes wait in a list; every write until the writer takes the list shares one
        # future (a Future per write was a measurable share of the webhook's CPU).
        self._pending_lock = threading.Lock()
        self._work = threading.Condition(self._pending_lock)
        self._idle = threading.Condition(self._pending_lock)
        self._pending: list[Statement | Group] = []
        self._retries: list[tuple[float, int, Group]] = []  # heap: (due, seq, group)
        self._retry_seq = 0
        self._sweeps: deque[Sweep] = deque()
        self._sweep_at = 0.0
        """When the next sweep step may run (monotonic; see SWEEP_DUTY)."""
        self._batch: Future[bool] = _batch_future()
        self._queued = 0
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._wrote = threading.Event()
        """Set after a commit: the checkpointer has frames to copy."""
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self.healthy = True
        self.last_error = ""
        self._readers: list[sqlite3.Connection] = []
        """Idle reader connections; a read takes one (or opens one) and gives it back."""
        self._readers_lock = threading.Lock()
        self._opened_readers = 0
        self._closed = False

    def script(self, sql: str) -> None:
        """Run DDL now (schema creation at start-up)."""
        with self._lock:
            self._conn.executescript(sql)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read on a reader connection of its own and return every row. It sees every
        commit made before it began (call flush() first to include queued writes), never
        waits for a commit in progress and never delays one."""
        reader = self._reader()
        try:
            return reader.execute(sql, tuple(params)).fetchall()
        finally:
            self._give_back(reader)

    @property
    def reader_connections(self) -> int:
        """How many reader connections are open (one per read that ever ran concurrently)."""
        return self._opened_readers

    def _reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
            self._opened_readers += 1
        reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=5000")
        return reader

    def _give_back(self, reader: sqlite3.Connection) -> None:
        with self._readers_lock:
            if not self._closed:
                self._readers.append(reader)
                return
            self._opened_readers -= 1
        reader.close()

    def write(self, sql: str, params: Iterable[Any] = ()) -> Future[bool]:
        """Queue a write; it is committed soon, with whatever else is queued.

        The future resolves when its batch is committed: True, or False when the batch
        failed (the database is then unhealthy). Waiting on it is optional. Batches commit
        in the order their writes were queued, so once a write's future resolves, every
        write queued before it has resolved too.
        """
        return self._queue((sql, tuple(params)))

    def write_group(self, statements: list[Statement], *, retry: bool = False) -> Future[bool]:
        """Queue statements that commit together or not at all: a batch is never split
        inside a group. Otherwise as write().

        With retry, a group whose batch failed (a full disk) is committed again later, on
        its own in a transaction of its own, with growing pauses, until it commits: its
        statements must be idempotent and safe to apply late. The future still tells the
        first try.
        """
        return self._queue(Group([(sql, tuple(params)) for sql, params in statements], retry))

    def sweep(self, sql: str, params: Iterable[Any] = ()) -> Future[int]:
        """Queue a bulk change (a retention prune) that must never hold the writer: `sql`
        changes at most SWEEP_BATCH rows per run (its last `?`: a subquery's LIMIT) and
        runs again, each run its own transaction between the queued writes' batches, until
        it changes none. Sweeps run one after another, in the order queued. The future
        gives the rows changed in all (-1 if a run failed: the sweep stops there and its
        owner runs it again later). Not waited for by flush(); close() abandons it.
        """
        bound = (*params, SWEEP_BATCH)
        with self._pending_lock:
            self._start_writer()
            for queued in itertools.islice(self._sweeps, 1, None):  # the first may be running
                if queued.sql == sql:
                    # The same sweep, not begun: the newer bounds cover the older (a trim
                    # queued every hundred ids under a flood is one sweep, not hundreds).
                    queued.params = bound
                    return queued.done
            future: Future[int] = Future()
            future.set_running_or_notify_cancel()
            self._sweeps.append(Sweep(sql, bound, future))
            self._work.notify()
        return future

    def _start_writer(self) -> None:
        """Start the writer and checkpointer threads on first use (self._pending_lock
        held)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="medic-sqlite",
                                            daemon=True)  # fmt: skip
            self._writer.start()
            self._checkpointer = threading.Thread(
                target=self._checkpoints, name="medic-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoints(self) -> None:
        """Copy committed WAL frames into the database, at most every CHECKPOINT_EVERY
        seconds while there are commits, on a connection of its own. PASSIVE: it never
        waits for a reader or the writer, and neither waits for it."""
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            while True:
                self._wrote.wait()
                if self._stopping:
                    return
                self._wrote.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # a full disk: the next commit tries again
                    log.debug("WAL checkpoint failed: %s", exc)
                self._closing.wait(CHECKPOINT_EVERY)  # coalesce: one per interval
        finally:
            conn.close()

    def _queue(self, item: Statement | Group) -> Future[bool]:
        """Add to the next batch (starting the writer on first use); its shared future."""
        with self._pending_lock:
            self._start_writer()
            self._pending.append(item)
            self._queued += 1
            if len(self._pending) == 1:
                self._work.notify()
            return self._batch

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write is committed (or failed); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._queued == 0, timeout)

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued write and every sweep is done; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._queued == 0 and not self._sweeps, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, stop the writer, close the connection."""
        self.flush(timeout)
        with self._pending_lock:
            self._stopping = True
            abandoned, self._sweeps = list(self._sweeps), deque()
            self._work.notify()
        for sweep in abandoned:
            sweep.done.set_result(sweep.changed)
        if self._writer is not None:
            self._writer.join(timeout)
        self._closing.set()
        self._wrote.set()  # the checkpointer sees _stopping and ends
        if self._checkpointer is not None:
            self._checkpointer.join(timeout)
        with self._lock:
            self._conn.close()
        with self._readers_lock:
            self._closed = True
            idle, self._readers = self._readers, []
            self._opened_readers -= len(idle)
        for reader in idle:  # a read still running closes its own when it ends
            reader.close()

    def _take(self) -> tuple[list[Statement | Group], Future[bool], list[Group]] | None:
        """The queued writes, their shared future and the retries now due; None once
        stopping with nothing queued."""
        with self._pending_lock:
            while not self._pending:
                if self._stopping:
                    if not self._retries:
                        return None
                    last = [group for _, _, group in self._retries]  # one last try each
                    self._retries.clear()
                    return [], self._batch, last
                due = self._due()
                now = time.monotonic()
                if due or (self._sweeps and now >= self._sweep_at):
                    return [], self._batch, due
                waits = [self._retries[0][0] - now] if self._retries else []
                if self._sweeps:
                    waits.append(self._sweep_at - now)
                self._work.wait(min(waits) if waits else None)
            # No linger for more rows: under load they queue up while the previous batch
            # commits, and a wait here delays every action's start (BENCHMARKS.md, issue 12).
            batch, self._pending = self._pending, []
            done, self._batch = self._batch, _batch_future()
            return batch, done, self._due()

    def _due(self) -> list[Group]:
        """Retries whose pause is over (self._pending_lock held)."""
        now, due = time.monotonic(), []
        while self._retries and self._retries[0][0] <= now:
            due.append(heapq.heappop(self._retries)[2])
        return due

    def _again(self, group: Group) -> None:
        """Try the group again later (writer thread only)."""
        group.tries += 1
        if self._stopping:
            log.error("a journal write that must not be lost failed %d times; the database "
                      "closes without it", group.tries)  # fmt: skip
            return
        if group.tries == 1:
            log.warning("a journal write that must not be lost failed; trying it again")
        pause = min(RETRY_MAX, 0.25 * 2**group.tries)
        with self._pending_lock:
            self._retry_seq += 1
            heapq.heappush(self._retries, (time.monotonic() + pause, self._retry_seq, group))

    def _write_loop(self) -> None:
        while (taken := self._take()) is not None:
            batch, done, due = taken
            for group in due:  # each alone: one that cannot commit holds back nothing else
                if self._commit(group.statements) is None:
                    self._again(group)
            if not batch:
                if due and not self.healthy:
                    self._recovered()
                self._sweep_step()
                continue
            committed = True
            for chunk, retried in _transactions(batch):
                if self._commit(chunk) is None:
                    committed = False
                    for group in retried:
                        self._again(group)
            if committed and not self.healthy:
                self._recovered()
            done.set_result(committed)
            with self._idle:
                self._queued -= len(batch)
                self._idle.notify_all()
            self._sweep_step()  # one step between batches: a flood of writes never stops it

    def _sweep_step(self) -> None:
        """One run of the oldest sweep, in its own transaction, when one is due (writer
        thread only). Steps take at most SWEEP_DUTY of the writer's time: a prune of
        millions of rows is a background trickle, never a core taken from the answers."""
        with self._pending_lock:
            if not self._sweeps or self._stopping or time.monotonic() < self._sweep_at:
                return
            sweep = self._sweeps[0]
        began = time.monotonic()
        committed = self._commit([(sweep.sql, sweep.params)])
        changed = -1 if committed is None else committed  # a failure ends it: see sweep()
        took = time.monotonic() - began
        self._sweep_at = began + took / SWEEP_DUTY
        if changed > 0:
            sweep.changed += changed
            return
        with self._pending_lock:
            if not self._sweeps or self._sweeps[0] is not sweep:
                return  # close() abandoned it (and told its future)
            self._sweeps.popleft()
            self._idle.notify_all()
        sweep.done.set_result(sweep.changed if changed == 0 else -1)

    def _recovered(self) -> None:
        """Healthy again once nothing that must not be lost waits (writer thread only)."""
        with self._pending_lock:
            if self._retries:
                return
        self.healthy = True
        log.warning("%s is written again; every write that must not be lost has been "
                    "committed", self.path)  # fmt: skip

    def _commit(self, batch: list[Statement]) -> int | None:
        """Run the statements in one transaction: the rows they changed, or None when it
        failed (the database is then unhealthy)."""
        changed = 0
        try:
            with self._lock:
                self._conn.execute("BEGIN")
                try:
                    # Runs of the same statement go through executemany: one call into
                    # SQLite per run instead of per row.
                    for sql, rows in itertools.groupby(batch, key=lambda item: item[0]):
                        cursor = self._conn.executemany(sql, [params for _, params in rows])
                        changed += max(0, cursor.rowcount)
                    self._conn.execute("COMMIT")
                    self._wrote.set()
                except BaseException:
                    if self._conn.in_transaction:  # SQLITE_FULL has rolled back already
                        self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            # What failed without retry was refused to its sender (a claim: 503) or is
            # rewritten by its owner; what must not be lost waits in self._retries.
            if self.healthy:
                log.error("cannot write %s: %s; what cannot be recorded does not happen "
                          "(alerts get 503, actions wait)", self.path, exc)  # fmt: skip
            self.healthy = False
            self.last_error = str(exc)
            return None
        return changed


def _batch_future() -> Future[bool]:
    """A batch's shared future, marked running so that no waiter can cancel it (a cancelled
    future would make the writer's set_result raise, for every other waiter too)."""
    future: Future[bool] = Future()
    future.set_running_or_notify_cancel()
    return future


class CommitWaits:
    """Waits, on one event loop, for writes to commit: one done-callback and one loop wake-up
    per batch however many coroutines wait on it. (A callback per waiter cost a self-pipe
    write each: 12% of medic's time under a webhook flood.) Use one per loop, from that loop.

    The batch's future itself is never touched, so a waiter's cancellation stays its own
    (asyncio.wrap_future would pass it on to the future every other waiter shares).
    """

    def __init__(self) -> None:
        self._shared: dict[Future[bool], asyncio.Future[None]] = {}

    async def committed(self, future: Future[bool] | None, timeout: float | None = None) -> bool:
        """True once the write is committed; False if it failed or took over `timeout`.
        A None future (no database) is True."""
        if future is None:
            return True
        if not future.done():
            waiter = self._shared.get(future)
            if waiter is None:
                loop = asyncio.get_running_loop()
                waiter = self._shared[future] = loop.create_future()

                def wake(_: Future[bool]) -> None:
                    with contextlib.suppress(RuntimeError):  # the loop closed (shutdown)
                        loop.call_soon_threadsafe(self._settle, future)

                future.add_done_callback(wake)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(waiter)  # a cancelled waiter leaves the rest waiting
            except TimeoutError:
                return False
        return future.result()

    def _settle(self, future: Future[bool]) -> None:
        waiter = self._shared.pop(future, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _transactions(batch: list[Statement | Group]) -> list[tuple[list[Statement], list[Group]]]:
    """The batch's statements in transactions of about MAX_BATCH (bounded, so one commit
    never holds the lock for long), never splitting a group; with each, its groups to retry
    if it fails."""
    chunks: list[tuple[list[Statement], list[Group]]] = [([], [])]
    for item in batch:
        if len(chunks[-1][0]) >= MAX_BATCH:
            chunks.append(([], []))
        statements, retried = chunks[-1]
        if isinstance(item, Group):
            statements.extend(item.statements)
            if item.retry:
                retried.append(item)
        else:
            statements.append(item)
    return chunks
