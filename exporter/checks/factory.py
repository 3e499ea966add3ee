"""Build check specs from their configuration."""

from __future__ import annotations

from exporter.checks.base import CheckSpec, Probe
from exporter.checks.disk import DiskCheck
from exporter.checks.host import HostMemoryCheck
from exporter.checks.paths import PathCheck
from exporter.config import CheckConfig, DiskCheckConfig, HostMemoryCheckConfig, PathCheckConfig


def build_probe(config: CheckConfig) -> Probe:
    """The probe a check config describes."""
    if isinstance(config, HostMemoryCheckConfig):
        return HostMemoryCheck(config.min_available_ratio, config.min_available_bytes)
    if isinstance(config, DiskCheckConfig):
        return DiskCheck(config.path, config.min_avail_ratio, config.min_avail_bytes)
    if isinstance(config, PathCheckConfig):
        return PathCheck(
            config.path, config.kind, config.min_size, config.readable, config.non_empty
        )
    raise TypeError(f"no probe for check type {type(config).__name__}")


def build_check(config: CheckConfig) -> CheckSpec:
    """A CheckSpec ready to register with a HealthChecker."""
    return CheckSpec(
        name=config.name,
        probe=build_probe(config),
        interval=config.interval,
        timeout=config.timeout,
        critical=config.critical,
        enabled=config.enabled,
    )
