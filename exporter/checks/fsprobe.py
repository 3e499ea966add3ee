"""Parent side of the filesystem helper (exporter/fsworker.py): one helper per check.

A request that overruns its deadline means the mount is hung: the helper is killed (the
signal lands when its call returns; a filesystem call, unlike a driver call, is safe to
abandon) and let go, and the check reports `stuck` while it is still alive instead of
starting helper after helper on the same hung mount.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from typing import Any

from exporter.checks.runner import CallStuck, CallTimeout
from exporter.helper import WorkerDied, WorkerProcess, WorkerTimeout, let_go


def argv() -> list[str]:
    """The helper's command line; it exits when this process (its parent) is gone."""
    return [sys.executable, "-m", "exporter.fsworker", "--parent", str(os.getpid())]


class FsHelper:
    """Requests to one check's helper process, each with a deadline."""

    def __init__(self, name: str, timeout: float, command: list[str] | None = None) -> None:
        self._name = name
        self._timeout = timeout
        self._argv = command or argv()
        self._lock = threading.Lock()
        self._current: list[WorkerProcess] = []
        """The helper in use (none or one). A list the finalizer holds: a check dropped
        without close() (a Medic never stopped) still lets its helper go."""
        self._abandoned: list[WorkerProcess] = []
        self._closed = False
        weakref.finalize(self, _let_all_go, self._current)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """The helper's answer; CallTimeout when it does not come in time, CallStuck while
        an abandoned helper of this check is still blocked."""
        with self._lock:
            self._abandoned = [w for w in self._abandoned if w.alive()]
            if self._abandoned:
                raise CallStuck(f"{self._name}: the last probe is still blocked in the kernel")
            if self._current and not self._current[0].alive():
                let_go(self._current.pop())  # reaped there, its pipes closed
            if not self._current and not self._closed:
                self._current.append(
                    WorkerProcess(self._argv, name="filesystem helper", kind="filesystem")
                )
            worker = self._current[0] if self._current else None
            if self._closed or worker is None:  # also when close() ran meanwhile
                _let_all_go(self._current)
                raise CallStuck(f"{self._name}: closed")
            try:
                return worker.request(message, self._timeout)
            except WorkerTimeout:
                self._abandoned.append(worker)
                self._forget(worker)
                raise CallTimeout(
                    f"{message.get('path')}: no answer within {self._timeout:g}s (hung mount?)"
                ) from None
            except WorkerDied:
                self._forget(worker)
                raise

    def _forget(self, worker: WorkerProcess) -> None:
        """Kill and let go of the helper in use (close() may have done it already)."""
        if worker in self._current:
            self._current.remove(worker)
            _let_all_go([worker])

    def stuck(self) -> bool:
        """True while an abandoned helper has not exited (lock-free: read while rendering)."""
        return any(w.alive() for w in list(self._abandoned))

    def close(self) -> None:
        """Kill every helper; none is waited for (not under the lock: a request holds it
        for up to its timeout)."""
        self._closed = True
        for worker in list(self._abandoned):  # let go of already: only the signal again
            worker.kill()
        _let_all_go(self._current)


def _let_all_go(workers: list[WorkerProcess]) -> None:
    """SIGKILL and let go of each (emptying the list)."""
    while workers:
        worker = workers.pop()
        worker.kill()
        let_go(worker)
