"""medic: a Prometheus exporter with auto-remediation for hosts that serve GPU models.

Importing this package starts nothing: no threads, no metrics, no I/O. Its names load on
first use, so `import exporter` (and medic's small NVML helper processes) stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from exporter.version import __version__

if TYPE_CHECKING:
    from exporter.checks import (
        CheckResult,
        CheckSpec,
        HealthChecker,
        Observation,
        SystemHealthStatus,
    )
    from exporter.config import Config, ConfigError, default_config, load_config
    from exporter.embedded import Medic
    from exporter.resilience import (
        BreakerRegistry,
        BreakerSettings,
        BreakerState,
        CircuitBreaker,
        CircuitBreakerOpenError,
        GracefulDegradation,
        RetryManager,
    )

_EXPORTS = {
    "Medic": "exporter.embedded",
    "CheckResult": "exporter.checks",
    "CheckSpec": "exporter.checks",
    "HealthChecker": "exporter.checks",
    "Observation": "exporter.checks",
    "SystemHealthStatus": "exporter.checks",
    "Config": "exporter.config",
    "ConfigError": "exporter.config",
    "default_config": "exporter.config",
    "load_config": "exporter.config",
    "BreakerRegistry": "exporter.resilience",
    "BreakerSettings": "exporter.resilience",
    "BreakerState": "exporter.resilience",
    "CircuitBreaker": "exporter.resilience",
    "CircuitBreakerOpenError": "exporter.resilience",
    "GracefulDegradation": "exporter.resilience",
    "RetryManager": "exporter.resilience",
}

__all__ = [
    "BreakerRegistry",
    "BreakerSettings",
    "BreakerState",
    "CheckResult",
    "CheckSpec",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "Config",
    "ConfigError",
    "GracefulDegradation",
    "HealthChecker",
    "Medic",
    "Observation",
    "RetryManager",
    "SystemHealthStatus",
    "__version__",
    "default_config",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'exporter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
