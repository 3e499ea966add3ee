"""medic: a Prometheus exporter with auto-remediation for hosts that serve GPU models.

Importing this package starts nothing: no threads, no metrics, no I/O.
"""

from exporter.app import Medic
from exporter.checks import (
    CheckResult,
    CheckSpec,
    HealthChecker,
    Observation,
    SystemHealthStatus,
)
from exporter.config import Config, ConfigError, default_config, load_config
from exporter.version import __version__

__all__ = [
    "CheckResult",
    "CheckSpec",
    "Config",
    "ConfigError",
    "HealthChecker",
    "Medic",
    "Observation",
    "SystemHealthStatus",
    "__version__",
    "default_config",
    "load_config",
]
