"""Health checks: the registry, the built-in probes and what they observe."""

from exporter.checks.base import CheckResult, CheckSpec, Observation, SystemHealthStatus
from exporter.checks.disk import DiskCheck, FilesystemUsage
from exporter.checks.host import HostMemory, HostMemoryCheck
from exporter.checks.paths import PathCheck, PathPresence
from exporter.checks.registry import CheckState, HealthChecker

__all__ = [
    "CheckResult",
    "CheckSpec",
    "CheckState",
    "DiskCheck",
    "FilesystemUsage",
    "HealthChecker",
    "HostMemory",
    "HostMemoryCheck",
    "Observation",
    "PathCheck",
    "PathPresence",
    "SystemHealthStatus",
]
