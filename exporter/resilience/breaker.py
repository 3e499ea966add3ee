"""A circuit breaker with resilience4j's semantics, for threads and asyncio alike.

States: closed (calls flow, outcomes recorded), open (calls rejected until the wait is
over), half_open (a capped number of trial calls decide: one failure re-opens, all
succeeding closes), forced_open and disabled (set by hand until reset()).

The lock only guards bookkeeping; it is never held while the guarded call runs, so one
slow call cannot block other callers (pybreaker holds its lock for the whole call).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from exporter.clock import Clock, SystemClock
from exporter.resilience.state import BreakerState, StoredBreaker

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FORCED_OPEN, DISABLED = BreakerState.FORCED_OPEN, BreakerState.DISABLED

Listener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]


class CircuitBreakerOpenError(Exception):
    """The breaker did not permit the call."""

    def __init__(self, name: str, state: BreakerState, retry_after: float | None) -> None:
        self.name, self.state, self.retry_after = name, state, retry_after
        wait = f"; retry in {retry_after:.1f}s" if retry_after is not None else ""
        super().__init__(f"circuit breaker {name!r} is {state.value}{wait}")


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a breaker trips and how it recovers."""

    failure_threshold: int = 5
    """Consecutive failures that open the breaker; 0 turns this rule off."""
    failure_rate_threshold: float | None = None
    """Failure share (0-1) over the sliding window that opens it; None turns it off."""
    sliding_window_size: int = 20
    """Calls in the count-based window the failure rate is computed over."""
    minimum_number_of_calls: int = 10
    """Calls the window needs before the failure rate counts."""
    wait_duration_in_open: float = 30.0
    """Seconds to stay open before letting trial calls through."""
    permitted_calls_in_half_open: int = 1
    """Trial calls admitted in half_open; all must succeed to close."""
    call_timeout: float | None = None
    """A call slower than this counts as a failure (coroutines are cancelled at it)."""
    ignore_exceptions: tuple[type[BaseException], ...] = ()
    """Exceptions that count neither as success nor as failure."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 0 or self.sliding_window_size < 1:
            raise ValueError("failure_threshold must be >= 0 and sliding_window_size >= 1")
        rate = self.failure_rate_threshold
        if rate is not None and not 0 < rate <= 1:
            raise ValueError("failure_rate_threshold must be in (0, 1]")
        if self.minimum_number_of_calls < 1 or self.permitted_calls_in_half_open < 1:
            raise ValueError("minimum_number_of_calls and permitted_calls_in_half_open >= 1")
        if self.wait_duration_in_open < 0:
            raise ValueError("wait_duration_in_open must be >= 0")
        if self.call_timeout is not None and self.call_timeout <= 0:
            raise ValueError("call_timeout must be > 0")


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A consistent reading of a breaker, for metrics."""

    name: str
    state: BreakerState
    successful: int
    failed: int
    ignored: int
    not_permitted: int
    transitions: dict[tuple[BreakerState, BreakerState], int]


class CircuitBreaker:
    """Guards calls to something that fails; usable as decorator and context manager."""

    def __init__(
        self,
        name: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Clock | None = None,
        listeners: tuple[Listener, ...] = (),
        restored: StoredBreaker | None = None,
    ) -> None:
        self.name = name
        self.settings = s = settings or BreakerSettings()
        self._clock = clock or SystemClock()
        self._listeners: list[Listener] = list(listeners)
        self._lock = threading.Lock()
        self._state = CLOSED
        self._open_until = 0.0
        self._since = self._clock.time()
        # count-based sliding window as a ring of 0/1 with a running failure count
        self._ring = [0] * s.sliding_window_size
        self._ring_pos = self._ring_count = self._ring_failures = 0
        self._consecutive = 0
        self._trials = self._trial_successes = 0
        self._successful = self._failed = self._ignored = self._not_permitted = 0
        self._transitions: dict[tuple[BreakerState, BreakerState], int] = {}
        self._pending: list[tuple[BreakerState, BreakerState]] = []
        self._cm_trials: contextvars.ContextVar[tuple[bool, ...]] = contextvars.ContextVar(
            f"breaker-{name}", default=()
        )
        self._timeout = s.call_timeout
        self._size = s.sliding_window_size
        self._rate = s.failure_rate_threshold
        if restored is not None:
            self._restore(restored)

    # --- reading ------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Changes with every recorded outcome and transition (cheap change detection)."""
        return (
            self._successful + self._failed + self._ignored + self._not_permitted
            + sum(self._transitions.values())
        )  # fmt: skip

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose wait is over still reads open)."""
        return self._state

    def retry_after(self) -> float | None:
        """Seconds until an open breaker admits a trial call; None when not open."""
        if self._state is not OPEN:
            return None
        return max(0.0, self._open_until - self._clock.monotonic())

    def snapshot(self) -> BreakerSnapshot:
        """Counters and state, read together."""
        with self._lock:
            return BreakerSnapshot(
                self.name,
                self._state,
                self._successful,
                self._failed,
                self._ignored,
                self._not_permitted,
                dict(self._transitions),
            )

    def stored(self) -> StoredBreaker:
        """What survives a restart: the state and since when (wall clock)."""
        return StoredBreaker(self.name, self._state, self._since)

    def add_listener(self, listener: Listener) -> None:
        """Call listener(breaker, from_state, to_state) after each transition."""
        self._listeners.append(listener)

    # --- manual transitions -------------------------------------------------------------
    def force_open(self) -> None:
        """Reject every call until reset()."""
        self._manual(FORCED_OPEN)

    def disable(self) -> None:
        """Permit every call and record nothing until reset()."""
        self._manual(DISABLED)

    def reset(self) -> None:
        """Back to closed with an empty window."""
        self._manual(CLOSED)

    def _manual(self, to: BreakerState) -> None:
        with self._lock:
            if self._state is not to:
                self._transition(to)
            elif to is CLOSED:  # reset() of a closed breaker still empties its window
                self._ring_pos = self._ring_count = self._ring_failures = self._consecutive = 0
        self._flush()

    # --- guarding calls -----------------------------------------------------------------
    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run fn under the breaker; raises CircuitBreakerOpenError when not permitted."""
        # Closed needs no permission bookkeeping: read the state without the lock. A call
        # admitted while another thread opens the breaker is one admitted a moment earlier.
        trial = False if self._state is CLOSED else self._acquire()
        timeout = self._timeout
        if timeout is None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._record_exception(exc, trial)
                raise
            self._on_success(trial)
            return result
        started = self._clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(exc, trial)
            raise
        if self._clock.monotonic() - started > timeout:
            self._on_failure(trial)
        else:
            self._on_success(trial)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await fn under the breaker; a call_timeout cancels it and counts as a failure."""
        trial = False if self._state is CLOSED else self._acquire()
        try:
            if self._timeout is None:
                result = await fn(*args, **kwargs)
            else:  # asyncio.timeout: wait_for can swallow a racing cancellation on 3.11
                async with asyncio.timeout(self._timeout):
                    result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(exc, trial)
            raise
        self._on_success(trial)
        return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function or coroutine function."""
        if inspect.iscoroutinefunction(fn):
            call_async = self.call_async

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await call_async(fn, *args, **kwargs)

            return guarded_async
        call = self.call  # bound once: saves an attribute lookup on every call

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return guarded

    def __enter__(self) -> CircuitBreaker:
        trial = self._acquire()
        self._cm_trials.set((*self._cm_trials.get(), trial))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._cm_trials.get()
        trial = stack[-1]
        self._cm_trials.set(stack[:-1])
        if exc is not None:
            self._record_exception(exc, trial)
        else:
            self._on_success(trial)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- permission by hand (resilience4j's acquirePermission / onSuccess / onError) -------
    def acquire_permission(self) -> bool:
        """Permission for one call made elsewhere; raises CircuitBreakerOpenError when not
        permitted. Returns whether it is a half-open trial: pass that to exactly one of
        on_success, on_error or release_permission."""
        return False if self._state is CLOSED else self._acquire()

    def on_success(self, trial: bool) -> None:
        """The permitted call succeeded."""
        self._on_success(trial)

    def on_error(self, trial: bool) -> None:
        """The permitted call failed."""
        self._on_failure(trial)

    def release_permission(self, trial: bool) -> None:
        """The permitted call did not happen: a half-open trial's permit goes back."""
        with self._lock:
            if trial and self._state is HALF_OPEN:
                self._trials -= 1

    def on_ignored(self, trial: bool) -> None:
        """The permitted call ended in a way that counts neither way (ignored)."""
        with self._lock:
            self._ignored += 1
        self.release_permission(trial)

    # --- bookkeeping --------------------------------------------------------------------
    def _acquire(self) -> bool:
        """Permission for one call; True when it is a half_open trial."""
        with self._lock:
            state = self._state
            if state is CLOSED or state is DISABLED:
                return False
            if state is OPEN and self._clock.monotonic() >= self._open_until:
                self._transition(HALF_OPEN)
                state = HALF_OPEN
            if state is HALF_OPEN and self._trials < self.settings.permitted_calls_in_half_open:
                self._trials += 1
                trial = True
            else:
                self._not_permitted += 1
                trial = False
        if self._pending:
            self._flush()
        if not trial:
            raise CircuitBreakerOpenError(self.name, self._state, self.retry_after())
        return True

    def _record_exception(self, exc: BaseException, trial: bool) -> None:
        if isinstance(exc, self.settings.ignore_exceptions) or not isinstance(exc, Exception):
            # Ignored by configuration, or cancellation / KeyboardInterrupt / SystemExit:
            # not the guarded service's fault. A trial's permit goes back.
            self.on_ignored(trial)
            return
        self._on_failure(trial)

    def _on_success(self, trial: bool) -> None:
        with self._lock:
            self._successful += 1
            state = self._state
            if state is CLOSED:
                self._consecutive = 0
                # _record(0), inlined: this is the hot path of every guarded call
                pos = self._ring_pos
                if self._ring_count == self._size:
                    self._ring_failures -= self._ring[pos]
                else:
                    self._ring_count += 1
                self._ring[pos] = 0
                self._ring_pos = pos + 1 if pos + 1 < self._size else 0
                # The call that fills the window to its minimum may be a success.
                if self._rate is not None and self._trips():
                    self._transition(OPEN)
            elif trial and state is HALF_OPEN:
                self._trial_successes += 1
                if self._trial_successes >= self.settings.permitted_calls_in_half_open:
                    self._transition(CLOSED)
        if self._pending:
            self._flush()

    def _on_failure(self, trial: bool) -> None:
        with self._lock:
            self._failed += 1
            state = self._state
            if state is CLOSED:
                self._consecutive += 1
                self._record(1)
                if self._trips():
                    self._transition(OPEN)
            elif trial and state is HALF_OPEN:
                self._transition(OPEN)
        if self._pending:
            self._flush()

    def _record(self, failed: int) -> None:
        size = self.settings.sliding_window_size
        if self._ring_count == size:
            self._ring_failures -= self._ring[self._ring_pos]
        else:
            self._ring_count += 1
        self._ring[self._ring_pos] = failed
        self._ring_failures += failed
        self._ring_pos = (self._ring_pos + 1) % size

    def _trips(self) -> bool:
        s = self.settings
        if s.failure_threshold and self._consecutive >= s.failure_threshold:
            return True
        rate = s.failure_rate_threshold
        return (
            rate is not None
            and self._ring_count >= s.minimum_number_of_calls
            and self._ring_failures >= rate * self._ring_count
        )

    def _transition(self, to: BreakerState) -> None:
        """Change state; caller holds the lock. Listeners run later, in _flush()."""
        source = self._state
        self._state = to
        self._since = self._clock.time()
        if to is OPEN:
            self._open_until = self._clock.monotonic() + self.settings.wait_duration_in_open
        elif to is HALF_OPEN:
            self._trials = self._trial_successes = 0
        elif to is CLOSED:
            self._ring_pos = self._ring_count = self._ring_failures = self._consecutive = 0
        key = (source, to)
        self._transitions[key] = self._transitions.get(key, 0) + 1
        self._pending.append(key)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for source, to in pending:
            log.info("circuit breaker %s: %s -> %s", self.name, source.value, to.value)
            for listener in list(self._listeners):
                try:
                    listener(self, source, to)
                except Exception:
                    log.exception("circuit breaker listener failed")

    def _restore(self, stored: StoredBreaker) -> None:
        """Carry an open, forced_open or disabled state across a restart."""
        state = stored.state
        if state is CLOSED:
            return
        self._state = OPEN if state is HALF_OPEN else state
        self._since = stored.since
        if self._state is OPEN:
            elapsed = max(0.0, self._clock.time() - stored.since)
            remaining = max(0.0, self.settings.wait_duration_in_open - elapsed)
            if state is HALF_OPEN:
                remaining = 0.0  # it was already trying again; let the next call be a trial
            self._open_until = self._clock.monotonic() + remaining
