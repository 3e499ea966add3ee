"""GracefulDegradation (the seeds' API): run a fallback when a component cannot serve."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from exporter.resilience.breaker import CircuitBreaker, CircuitBreakerOpenError
from exporter.resilience.registry import BreakerRegistry
from exporter.resilience.state import BreakerState

log = logging.getLogger(__name__)

R = TypeVar("R")

FALLBACK_KINDS = (
    "primary",
    "fallback_marked_failed",
    "fallback_breaker_open",
    "fallback_after_error",
    "fallback_failed",
)
"""How a call through execute_with_fallback ended; exactly one per call."""

_OPEN = (BreakerState.OPEN, BreakerState.FORCED_OPEN)


class GracefulDegradation:
    """Components with fallbacks; a component is degraded when marked failed or its breaker
    is open. A primary that raises gets the fallback for that call but is not marked failed:
    its breaker decides when repeated failures mean the component is down.
    """

    def __init__(self, breakers: BreakerRegistry | None = None) -> None:
        self._breakers = breakers
        self._lock = threading.Lock()
        self._fallbacks: dict[str, Callable[..., Any]] = {}
        self._breaker_of: dict[str, CircuitBreaker | None] = {}
        self._failed: dict[str, str] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self.version = 0

    def register_fallback(
        self,
        component: str,
        fallback: Callable[..., Any],
        *,
        breaker: CircuitBreaker | str | None = None,
    ) -> None:
        """Use fallback for component; `breaker` (object or registry name) guards the primary.

        Without one, the registry's breaker named like the component is used if it exists.
        """
        if isinstance(breaker, str):
            if self._breakers is None:
                raise ValueError("breaker given by name but no BreakerRegistry was provided")
            breaker = self._breakers.get(breaker)
        with self._lock:
            self._fallbacks[component] = fallback
            self._breaker_of[component] = breaker
            for kind in FALLBACK_KINDS:
                self._counts.setdefault((component, kind), 0)
            self.version += 1

    def mark_component_failed(self, component: str, reason: str = "") -> None:
        """Serve this component's fallback until marked healthy."""
        with self._lock:
            self._failed[component] = reason
            self.version += 1
        log.warning("component %s marked failed%s", component, f": {reason}" if reason else "")

    def mark_component_healthy(self, component: str) -> None:
        """Use the primary again."""
        with self._lock:
            was = self._failed.pop(component, None)
            self.version += 1
        if was is not None:
            log.info("component %s marked healthy", component)

    def is_component_healthy(self, component: str) -> bool:
        """False when marked failed or its breaker is open."""
        with self._lock:
            if component in self._failed:
                return False
        breaker = self._breaker(component)
        return breaker is None or breaker.state not in _OPEN

    def get_fallback(self, component: str) -> Callable[..., Any] | None:
        """The registered fallback, or None."""
        with self._lock:
            return self._fallbacks.get(component)

    def degraded(self) -> dict[str, bool]:
        """Every known component and whether it is degraded now."""
        with self._lock:
            names = set(self._fallbacks) | set(self._failed)
        return {name: not self.is_component_healthy(name) for name in sorted(names)}

    def counts(self) -> dict[tuple[str, str], int]:
        """Calls per (component, kind)."""
        with self._lock:
            return dict(self._counts)

    def execute_with_fallback(
        self, component: str, primary: Callable[..., R], *args: Any, **kwargs: Any
    ) -> R:
        """primary(*args) unless the component is down; else, or if it raises, the fallback."""
        if not self._healthy_mark(component):
            return cast(R, self._fallback(component, "fallback_marked_failed", args, kwargs))
        breaker = self._breaker(component)
        try:
            result = breaker.call(primary, *args, **kwargs) if breaker else primary(*args, **kwargs)
        except CircuitBreakerOpenError:
            return cast(R, self._fallback(component, "fallback_breaker_open", args, kwargs))
        except Exception as exc:
            log.warning("%s failed (%s: %s); using its fallback", component,
                        type(exc).__name__, exc)  # fmt: skip
            return cast(R, self._fallback(component, "fallback_after_error", args, kwargs))
        self._count(component, "primary")
        return result

    async def execute_with_fallback_async(
        self, component: str, primary: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R:
        """The coroutine version; the fallback may be sync or async."""
        if not self._healthy_mark(component):
            return cast(R, await self._afallback(component, "fallback_marked_failed", args, kwargs))
        breaker = self._breaker(component)
        try:
            if breaker is not None:
                result = await breaker.call_async(primary, *args, **kwargs)
            else:
                result = await primary(*args, **kwargs)
        except CircuitBreakerOpenError:
            return cast(R, await self._afallback(component, "fallback_breaker_open", args, kwargs))
        except Exception as exc:
            log.warning("%s failed (%s: %s); using its fallback", component,
                        type(exc).__name__, exc)  # fmt: skip
            return cast(R, await self._afallback(component, "fallback_after_error", args, kwargs))
        self._count(component, "primary")
        return result

    # --- internals ----------------------------------------------------------------------
    def _healthy_mark(self, component: str) -> bool:
        with self._lock:
            return component not in self._failed

    def _breaker(self, component: str) -> CircuitBreaker | None:
        with self._lock:
            if component in self._breaker_of and self._breaker_of[component] is not None:
                return self._breaker_of[component]
        return self._breakers.find(component) if self._breakers is not None else None

    def _take_fallback(self, component: str) -> Callable[..., Any]:
        fallback = self.get_fallback(component)
        if fallback is None:
            self._count(component, "fallback_failed")
            raise LookupError(f"component {component!r} cannot serve and has no fallback")
        return fallback

    def _fallback(self, component: str, kind: str, args: Any, kwargs: Any) -> Any:
        fallback = self._take_fallback(component)
        try:
            result = fallback(*args, **kwargs)
        except Exception:
            self._count(component, "fallback_failed")
            raise
        self._count(component, kind)
        return result

    async def _afallback(self, component: str, kind: str, args: Any, kwargs: Any) -> Any:
        fallback = self._take_fallback(component)
        try:
            result = fallback(*args, **kwargs)
            if isinstance(result, Awaitable):
                result = await result
        except Exception:
            self._count(component, "fallback_failed")
            raise
        self._count(component, kind)
        return result

    def _count(self, component: str, kind: str) -> None:
        with self._lock:
            self._counts[(component, kind)] = self._counts.get((component, kind), 0) + 1
            self.version += 1
