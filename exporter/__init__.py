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
    from exporter.seeds import (
        FailureType,
        FallbackRecoverySystem,
        RecoveryAction,
        RecoveryAttempt,
        check_disk_space,
        check_memory_usage,
        check_model_file_exists,
        check_voices_directory,
        get_graceful_degradation,
        get_health_checker,
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
    # The seeds' names (exporter/seeds.py): a thin face over the parts above.
    "FallbackRecoverySystem": "exporter.seeds",
    "FailureType": "exporter.seeds",
    "RecoveryAction": "exporter.seeds",
    "RecoveryAttempt": "exporter.seeds",
    "check_disk_space": "exporter.seeds",
    "check_memory_usage": "exporter.seeds",
    "check_model_file_exists": "exporter.seeds",
    "check_voices_directory": "exporter.seeds",
    "get_graceful_degradation": "exporter.seeds",
    "get_health_checker": "exporter.seeds",
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
    "FailureType",
    "FallbackRecoverySystem",
    "GracefulDegradation",
    "HealthChecker",
    "Medic",
    "Observation",
    "RecoveryAction",
    "RecoveryAttempt",
    "RetryManager",
    "SystemHealthStatus",
    "__version__",
    "check_disk_space",
    "check_memory_usage",
    "check_model_file_exists",
    "check_voices_directory",
    "default_config",
    "get_graceful_degradation",
    "get_health_checker",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'exporter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
