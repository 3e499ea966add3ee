"""Run a call that may hang (statvfs on a dead NFS mount, NVML on a lost GPU) with a deadline.

The call runs on a daemon thread: when it overruns, the caller is freed and the thread is
abandoned until it returns, so neither the scheduler's pool nor process exit waits for it.
Abandoned calls are counted per key and capped, so a wedged resource cannot leak threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class CallTimeout(Exception):
    """The call overran its deadline; it may still be running."""


class CallStuck(Exception):
    """An earlier call under the same key has not returned yet, so this one was not started."""


class RunnerClosed(Exception):
    """The runner is shutting down; the call was not waited for."""


@dataclass(eq=False)  # identity semantics: calls live in a set
class _Call(Generic[T]):
    key: str
    done: threading.Event
    value: T | None = None
    error: BaseException | None = None
    finished: bool = False


class BoundedRunner:
    """Runs callables on daemon threads and waits for each at most its timeout."""

    def __init__(
        self,
        max_abandoned: int = 32,
        on_returned: Callable[[str], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._abandoned: dict[str, int] = {}
        self._waiting: set[_Call[Any]] = set()
        self._closed = False
        self._max_abandoned = max_abandoned
        self._on_returned = on_returned

    def stuck(self, key: str) -> bool:
        """True while an overrun call under `key` has not returned."""
        with self._lock:
            return self._abandoned.get(key, 0) > 0

    def abandoned_total(self) -> int:
        """How many overrun calls are still running."""
        with self._lock:
            return sum(self._abandoned.values())

    def call(self, key: str, fn: Callable[[], T], timeout: float) -> T:
        """Run fn, returning its value or raising its exception, CallTimeout or CallStuck."""
        call: _Call[T] = _Call(key, threading.Event())
        with self._lock:
            if self._closed:
                raise RunnerClosed
            if self._abandoned.get(key, 0):
                raise CallStuck(f"previous run of {key!r} has not returned")
            if sum(self._abandoned.values()) >= self._max_abandoned:
                raise CallStuck(f"{self._max_abandoned} calls are stuck; not starting more")
            self._waiting.add(call)
        thread = threading.Thread(target=self._body, args=(call, fn), name=f"medic-{key}")
        thread.daemon = True
        thread.start()
        finished = call.done.wait(timeout)
        with self._lock:
            self._waiting.discard(call)
            if not call.finished:
                if finished:  # released by close(), not by the call
                    raise RunnerClosed
                self._abandoned[key] = self._abandoned.get(key, 0) + 1
                raise CallTimeout(f"no answer within {timeout:g}s")
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]  # set when error is None

    def _body(self, call: _Call[T], fn: Callable[[], T]) -> None:
        try:
            call.value = fn()
        except BaseException as exc:  # handed to the waiting caller, not swallowed
            call.error = exc
        late = False
        with self._lock:
            call.finished = True
            if call not in self._waiting and not call.done.is_set():
                late = self._abandoned.get(call.key, 0) > 0
                if late:
                    self._abandoned[call.key] -= 1
                    if not self._abandoned[call.key]:
                        del self._abandoned[call.key]
        call.done.set()
        if late and self._on_returned is not None:
            self._on_returned(call.key)

    def close(self) -> None:
        """Release every waiting caller now and refuse new calls (used at shutdown)."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
        for call in waiting:
            call.done.set()
