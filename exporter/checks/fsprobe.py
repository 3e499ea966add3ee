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
        self._worker: WorkerProcess | None = None
        self._abandoned: list[WorkerProcess] = []
        self._closed = False
        # A check dropped without close() (a Medic never stopped) still lets its helper go:
        # it is reaped, never left to warn "subprocess is still running".
        self._started: list[WorkerProcess] = []
        weakref.finalize(self, _let_all_go, self._started)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """The helper's answer; CallTimeout when it does not come in time, CallStuck while
        an abandoned helper of this check is still blocked."""
        with self._lock:
            self._abandoned = [w for w in self._abandoned if w.alive()]
            if self._abandoned:
                raise CallStuck(f"{self._name}: the last probe is still blocked in the kernel")
            if self._closed:
                raise CallStuck(f"{self._name}: closed")
            if self._worker is not None and not self._worker.alive():
                self._started.remove(self._worker)
                let_go(self._worker)  # reaped there, its pipes closed
                self._worker = None
            if self._worker is None:
                self._worker = WorkerProcess(
                    self._argv, name="filesystem helper", kind="filesystem"
                )
                self._started.append(self._worker)
                if self._closed:  # close() ran while it started and may not have seen it
                    _let_all_go([self._worker])
                    self._started.clear()
                    self._worker = None
                    raise CallStuck(f"{self._name}: closed")
            worker = self._worker
            try:
                return worker.request(message, self._timeout)
            except WorkerTimeout:
                self._worker = None
                self._abandoned.append(worker)
                self._started.remove(worker)
                worker.kill()
                let_go(worker)
                raise CallTimeout(
                    f"{message.get('path')}: no answer within {self._timeout:g}s (hung mount?)"
                ) from None
            except WorkerDied:
                self._worker = None
                self._started.remove(worker)
                let_go(worker)
                raise

    def stuck(self) -> bool:
        """True while an abandoned helper has not exited (lock-free: read while rendering)."""
        return any(w.alive() for w in list(self._abandoned))

    def close(self) -> None:
        """Kill every helper; none is waited for."""
        self._closed = True
        worker, self._worker = self._worker, None
        for each in [*self._abandoned, *([worker] if worker else [])]:
            each.kill()
            let_go(each)
        self._started.clear()


def _let_all_go(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.kill()
        let_go(worker)
