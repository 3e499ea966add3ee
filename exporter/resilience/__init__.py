"""Circuit breakers, retries and fallbacks for app code, usable on their own or via Medic."""

from exporter.resilience.breaker import (
    BreakerSettings,
    BreakerSnapshot,
    CircuitBreaker,
    CircuitBreakerOpenError,
)
from exporter.resilience.degradation import GracefulDegradation
from exporter.resilience.registry import BreakerRegistry
from exporter.resilience.retry import RetryManager
from exporter.resilience.state import BreakerState, StoredBreaker
from exporter.resilience.store import BreakerStore, InMemoryBreakerStore, SqliteBreakerStore

__all__ = [
    "BreakerRegistry",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "GracefulDegradation",
    "InMemoryBreakerStore",
    "RetryManager",
    "SqliteBreakerStore",
    "StoredBreaker",
]
