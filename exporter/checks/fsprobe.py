"""Parent side of the filesystem helper (exporter/fsworker.py): one helper per mount.

The checks of one mount share its helper (SharedHelpers): a hung mount blocks every probe
of it alike, so a helper per check bought nothing but memory (13 MiB each).

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
from collections.abc import Callable
from typing import Any, Protocol

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

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """The helper's answer within `timeout` (the helper's own by default); CallTimeout
        when it does not come in time, CallStuck while an abandoned helper of this check is
        still blocked."""
        timeout = self._timeout if timeout is None else timeout
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
                return worker.request(message, timeout)
            except WorkerTimeout:
                self._abandoned.append(worker)
                self._forget(worker)
                raise CallTimeout(
                    f"{message.get('path')}: no answer within {timeout:g}s (hung mount?)"
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


class Helper(Protocol):
    """What a disk or path check asks of its filesystem helper."""

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """The helper's answer (CallTimeout, CallStuck as FsHelper.request)."""
        ...

    def stuck(self) -> bool:
        """True while an abandoned probe has not returned."""
        ...

    def close(self) -> None:
        """This check is done with it."""
        ...


class SharedHelpers:
    """One FsHelper per mount, shared by the checks of that mount; created by the
    composition root and handed to the check factory."""

    def __init__(self, mount_of: Callable[[str], str]) -> None:
        """mount_of: the mountpoint that holds a path (by its text, no syscall on it)."""
        self._mount_of = mount_of
        self._lock = threading.Lock()
        self._helpers: dict[str, tuple[FsHelper, int]] = {}

    def helper(self, path: str, timeout: float) -> Helper:
        """A handle on the helper of the mount that holds `path` (by its text: resolving
        symlinks could itself block on a hung mount); requests keep `timeout`."""
        mountpoint = self._mount_of(os.path.abspath(path))
        with self._lock:
            shared, users = self._helpers.get(mountpoint, (None, 0))
            if shared is None:
                shared = FsHelper(f"helper of {mountpoint}", timeout)
            self._helpers[mountpoint] = (shared, users + 1)
        return _Handle(self, mountpoint, shared, timeout)

    def release(self, mountpoint: str) -> None:
        """One check let go; the last closes the helper."""
        with self._lock:
            shared, users = self._helpers[mountpoint]
            if users > 1:
                self._helpers[mountpoint] = (shared, users - 1)
                return
            del self._helpers[mountpoint]
        shared.close()

    @property
    def mounts(self) -> list[str]:
        """The mounts that have a helper."""
        with self._lock:
            return sorted(self._helpers)


class _Handle:
    def __init__(self, pool: SharedHelpers, mountpoint: str, shared: FsHelper,
                 timeout: float) -> None:  # fmt: skip
        self._pool, self._mountpoint, self._shared = pool, mountpoint, shared
        self._timeout = timeout
        self._closed = False

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return self._shared.request(message, self._timeout)

    def stuck(self) -> bool:
        return self._shared.stuck()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release(self._mountpoint)
