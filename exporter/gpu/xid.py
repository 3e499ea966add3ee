"""Count XID critical errors from an NVML event-wait loop, apart from collection rounds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter.gpu.client import ABSENT_RETRY, worker_argv
from exporter.gpu.reader import LIBRARY_NOT_FOUND
from exporter.helper import WorkerDied, WorkerProcess, let_go

log = logging.getLogger(__name__)

XidKey = tuple[int, str, int]
"""(gpu index, uuid, xid code)."""


class XidWatcher:
    """Runs the events helper and counts what it reports; restarts it with backoff."""

    def __init__(
        self,
        nvml_module: str = "pynvml",
        on_change: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        absent_retry: float = ABSENT_RETRY,
    ) -> None:
        self._absent_retry = absent_retry
        self._absent = False
        """The last helper found no NVML library (it exited; the next looks later)."""
        self._argv = worker_argv(nvml_module, events=True)
        self._clock = clock
        self._seen: dict[XidKey, float] = {}
        self._env = env
        self._on_change = on_change
        self._lock = threading.Lock()
        self._counts: dict[XidKey, int] = {}
        self._stopping = threading.Event()
        self._worker: WorkerProcess | None = None
        self._thread: threading.Thread | None = None
        self._up: bool | None = None

    def start(self) -> None:
        """Start the reader thread (it starts the helper)."""
        self._thread = threading.Thread(target=self._run, name="medic-xid", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let the helper go (it exits after its current 1 s wait); do not wait for it."""
        self._stopping.set()
        with self._lock:
            if self._worker is not None:
                let_go(self._worker)

    def counts(self) -> dict[XidKey, int]:
        """XID events seen since start, per GPU and code."""
        with self._lock:
            return dict(self._counts)

    def recent(self, within: float) -> dict[tuple[int, str], set[int]]:
        """The XID codes each GPU (index, uuid) reported in the last `within` seconds."""
        since = self._clock() - within
        found: dict[tuple[int, str], set[int]] = {}
        with self._lock:
            for (gpu, uuid, xid), at in self._seen.items():
                if at >= since:
                    found.setdefault((gpu, uuid), set()).add(xid)
        return found

    @property
    def absent(self) -> bool:
        """Whether the last helper found no NVML library (none runs until the next look)."""
        return self._absent

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():  # stop() ran since the loop's check
                    return
                worker = self._worker = WorkerProcess(self._argv, self._env)
            try:
                while True:
                    self._handle(worker.read_line(timeout=None))
                    backoff = 1.0
            except (WorkerDied, ValueError, OSError) as exc:
                # OSError: once released and exited, the helper's pipes may be closed by
                # the reaper while this thread still reads them.
                let_go(worker)
                if self._stopping.is_set():
                    return
                if self._absent:  # no NVML: no helper until the next look
                    self._stopping.wait(self._absent_retry)
                    continue
                log.warning("XID watcher helper ended (%s); restarting in %gs", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 300.0)
            except Exception:
                let_go(worker)
                log.exception("XID watcher failed; restarting in %gs", backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 300.0)

    def _handle(self, message: dict[str, object]) -> None:
        if "xid" in message:
            key = (int(message["gpu"]), str(message["uuid"]), int(message["xid"]))  # type: ignore[call-overload]
            with self._lock:
                self._counts[key] = self._counts.get(key, 0) + 1
                self._seen[key] = self._clock()
            log.warning("XID %d on GPU %d (%s)", key[2], key[0], key[1])
            if self._on_change is not None:
                self._on_change()
        elif message.get("status") == "up" and self._up is not True:
            self._up, self._absent = True, False
            log.info("XID watcher listening on %s GPUs", message.get("gpus"))
        elif message.get("status") == "down":
            error = message.get("error")
            absent = isinstance(error, dict) and error.get("code") == LIBRARY_NOT_FOUND
            if absent and not self._absent:
                log.info("XID watcher: no NVML library; looking again every %gs",
                         self._absent_retry)  # fmt: skip
            self._absent = absent
            if self._up is not False:
                self._up = False
                log.debug("XID watcher: NVML unavailable: %s", error)
