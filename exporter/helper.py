"""Parent side of a helper process (NVML, filesystem probes): JSON-line requests with a
deadline, abandon, reap. A call that can hang in the kernel runs in a helper, never in
medic itself: a thread stuck in uninterruptible sleep would keep medic from exiting."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

log = logging.getLogger(__name__)


class WorkerTimeout(Exception):
    """The helper did not answer in time; it is probably stuck in the kernel (a driver,
    a hung mount)."""


class WorkerDied(Exception):
    """The helper exited or closed its pipe."""


_released: list[WorkerProcess] = []
_released_lock = threading.RLock()  # re-entrant: a finalizer may let a helper go mid-reap
_changes = [0]  # how often the set of released helpers changed (a version for /metrics)


def let_go(worker: WorkerProcess) -> None:
    """Release a helper and keep it referenced until it has exited, then reap it.

    Dropping the Popen of a live child would warn and leave a zombie; waiting for it could
    hang on a helper stuck in the driver. So it waits here, and is reaped on later calls.
    """
    worker.release()
    with _released_lock:
        _released.append(worker)
        _changes[0] += 1
    reap_released()


def reap_released() -> int:
    """Reap released helpers that have exited; return how many are still running."""
    with _released_lock:
        for worker in list(_released):
            if not worker.alive():
                worker.close_pipes()
                _released.remove(worker)
                _changes[0] += 1
        return len(_released)


def released_by_kind() -> dict[str, int]:
    """Released helpers that have not exited yet (inside a driver call, or blocked on a
    hung mount with their SIGKILL pending), by kind."""
    reap_released()
    with _released_lock:
        counts: dict[str, int] = {}
        for worker in _released:
            counts[worker.kind] = counts.get(worker.kind, 0) + 1
        return counts


def release_changes() -> int:
    """A number that changes whenever released_by_kind() may have."""
    reap_released()
    return _changes[0]


class WorkerProcess:
    """One helper process speaking JSON lines over its stdin and stdout."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        name: str = "NVML helper",
        kind: str = "nvml",
    ) -> None:
        reap_released()
        self.name = name
        self.kind = kind
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._fd = self.proc.stdout.fileno()
        self._buffer = b""

    @property
    def pid(self) -> int:
        """The helper's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """True until the process has exited (reaps it when it has)."""
        return self.proc.poll() is None

    def send(self, message: dict[str, Any]) -> None:
        """Write one request line."""
        try:
            self._stdin.write(json.dumps(message).encode() + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise WorkerDied(f"helper pipe closed: {exc}") from None

    def read_line(self, timeout: float | None) -> dict[str, Any]:
        """Read one JSON line; WorkerTimeout past the deadline, WorkerDied on EOF."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                raise WorkerTimeout(f"no answer from {self.name} within {timeout:g}s")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                code = self.proc.poll()
                raise WorkerDied(f"{self.name} exited (status {code})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and wait at most `timeout` seconds for its answer."""
        self.send(message)
        return self.read_line(timeout)

    def release(self) -> None:
        """Close stdin: the helper exits as soon as it is back from NVML. Never kills it.

        NVML docs and bug reports tie SIGKILL during a driver call to GPU faults on some
        drivers, and a process blocked in the kernel could not die anyway.
        """
        with contextlib.suppress(OSError):
            self._stdin.close()

    def kill(self) -> None:
        """SIGKILL: for helpers whose calls are safe to abandon (filesystem probes). One
        blocked in the kernel dies as soon as its call returns or is aborted."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.release()

    def close_pipes(self) -> None:
        """Close the parent's ends once the helper is gone."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def helper_main(main: Callable[[], int]) -> NoReturn:
    """Run a helper process's main. It ends quietly when medic lets go of its pipe (a quick
    stop, a timeout) or when a Ctrl-C reaches medic's process group: medic decides when a
    helper ends, and a traceback in medic's log about a pipe medic closed is noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would try the failed flush again at exit and say so: send it nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    raise SystemExit(code)
