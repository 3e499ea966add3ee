"""Breakers shared by name between the exporter, the recovery engine and app code."""

from __future__ import annotations

import logging
import threading

from exporter.clock import Clock, SystemClock
from exporter.resilience.breaker import BreakerSettings, CircuitBreaker, Listener
from exporter.resilience.state import BreakerState
from exporter.resilience.store import BreakerStore, InMemoryBreakerStore

log = logging.getLogger(__name__)


class BreakerRegistry:
    """Creates each named breaker once; restores and persists its state through a store."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        store: BreakerStore | None = None,
        defaults: BreakerSettings | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._store = store or InMemoryBreakerStore()
        self._defaults = defaults or BreakerSettings()
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._declared: dict[str, BreakerSettings] = {}
        self._listeners: list[Listener] = []

    def declare(self, name: str, settings: BreakerSettings) -> None:
        """Set a breaker's thresholds (from config) before anyone uses it."""
        with self._lock:
            if name in self._breakers and self._breakers[name].settings != settings:
                raise ValueError(f"breaker {name!r} is already in use with other settings")
            self._declared[name] = settings

    def get(self, name: str, settings: BreakerSettings | None = None) -> CircuitBreaker:
        """The breaker with this name, created on first use.

        Settings come from, in order: a declaration (config), the argument, the defaults.
        A later caller asking for other settings gets the existing breaker and a warning.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                chosen = self._declared.get(name) or settings or self._defaults
                breaker = CircuitBreaker(
                    name,
                    chosen,
                    clock=self._clock,
                    listeners=(self._persist, *self._listeners),
                    restored=self._store.load(name),
                )
                self._breakers[name] = breaker
                return breaker
        if settings is not None and name not in self._declared and settings != breaker.settings:
            log.warning("breaker %r exists with other settings; using those", name)
        return breaker

    def find(self, name: str) -> CircuitBreaker | None:
        """The breaker with this name if it exists; never creates one."""
        with self._lock:
            return self._breakers.get(name)

    def all(self) -> list[CircuitBreaker]:
        """Every breaker created so far."""
        with self._lock:
            return list(self._breakers.values())

    def add_listener(self, listener: Listener) -> None:
        """Hear every transition of every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.add_listener(listener)

    def version(self) -> int:
        """Changes whenever any breaker records something."""
        return sum(b.version for b in self.all())

    def _persist(self, breaker: CircuitBreaker, _from: BreakerState, _to: BreakerState) -> None:
        self._store.save(breaker.stored())
