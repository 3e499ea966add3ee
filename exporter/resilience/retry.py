"""Retries with exponential backoff and jitter on tenacity, counted per name."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from exporter.resilience.breaker import CircuitBreakerOpenError

P = ParamSpec("P")
R = TypeVar("R")

KINDS = (
    "successful_without_retry",
    "successful_with_retry",
    "failed_without_retry",
    "failed_with_retry",
)


class RetryManager:
    """Makes retrying decorators (the seeds' retry_with_backoff) and counts every call."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self.version = 0

    def counts(self) -> dict[tuple[str, str], int]:
        """Calls per (name, kind)."""
        with self._lock:
            return dict(self._counts)

    def retry_with_backoff(
        self,
        name: str,
        *,
        max_attempts: int = 3,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        jitter: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function or coroutine function to retry it.

        Waits initial_delay * 2**n plus up to `jitter` seconds (default: initial_delay),
        capped at max_delay, between at most max_attempts attempts. A breaker that refuses
        the call is never retried: it will refuse again, and retrying would only wait.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        with self._lock:
            for kind in KINDS:
                self._counts.setdefault((name, kind), 0)

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, retry_on) and not isinstance(exc, CircuitBreakerOpenError)

        spread = initial_delay if jitter is None else jitter

        def wait(state: RetryCallState) -> float:
            # tenacity's wait_exponential_jitter renamed its arguments across versions and
            # adds jitter after the cap; this caps the sum.
            backoff = initial_delay * 2.0 ** (state.attempt_number - 1)
            return float(min(max_delay, backoff + random.uniform(0, spread)))  # noqa: S311 - not crypto

        options: dict[str, Any] = {
            "stop": stop_after_attempt(max_attempts),
            "wait": wait,
            "retry": retry_if_exception(should_retry),
            "reraise": True,
        }

        def decorate(fn: Callable[P, Any]) -> Callable[P, Any]:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def retried_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                    retrying = AsyncRetrying(sleep=self._async_sleep, **options)
                    try:
                        result: Any = await retrying(fn, *args, **kwargs)
                    except Exception:
                        self._count(name, retrying.statistics, ok=False)
                        raise
                    self._count(name, retrying.statistics, ok=True)
                    return result

                return retried_async

            @functools.wraps(fn)
            def retried(*args: P.args, **kwargs: P.kwargs) -> Any:
                retrying = Retrying(sleep=self._sleep, **options)
                try:
                    result = retrying(fn, *args, **kwargs)
                except Exception:
                    self._count(name, retrying.statistics, ok=False)
                    raise
                self._count(name, retrying.statistics, ok=True)
                return result

            return retried

        return decorate

    def _count(self, name: str, statistics: dict[str, Any], ok: bool) -> None:
        retried = int(statistics.get("attempt_number", 1)) > 1
        kind = ("successful" if ok else "failed") + ("_with_retry" if retried else "_without_retry")
        with self._lock:
            self._counts[(name, kind)] = self._counts.get((name, kind), 0) + 1
            self.version += 1
