"""Build check specs from their configuration."""

from __future__ import annotations

from exporter.checks.base import CheckSpec, Observation, Probe
from exporter.checks.disk import DiskCheck
from exporter.checks.fsprobe import FsHelper
from exporter.checks.host import HostMemoryCheck
from exporter.checks.paths import PathCheck
from exporter.clock import Clock
from exporter.config import (
    CheckConfig,
    DiskCheckConfig,
    GpuCheckConfig,
    HostMemoryCheckConfig,
    PathCheckConfig,
    TorchCheckConfig,
)
from exporter.config.checks import InProcessCheckConfig
from exporter.gpu.check import GpuCheck
from exporter.gpu.torch_memory import TorchMemoryCheck


class Unregistered:
    """Stands in for an in-process check until the app registers its function."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self) -> Observation:
        """Fails, saying what is missing."""
        return Observation(problems=(f"no function registered for check {self._name!r}",))


# Probes with a helper process (GPU, disk, paths) bound its answer by the check timeout
# themselves; the runner's own deadline sits a little later so that the probe, which knows
# to abandon the helper, wins.
HELPER_RUNNER_MARGIN = 1.0


def build_probe(config: CheckConfig, clock: Clock | None = None) -> Probe:
    """The probe a check config describes."""
    if isinstance(config, HostMemoryCheckConfig):
        return HostMemoryCheck(config.min_available_ratio, config.min_available_bytes)
    if isinstance(config, DiskCheckConfig):
        return DiskCheck(
            config.path, config.min_avail_ratio, config.min_avail_bytes,
            helper=FsHelper(config.name, config.timeout),
        )  # fmt: skip
    if isinstance(config, PathCheckConfig):
        return PathCheck(
            config.path, config.kind, config.min_size, config.readable, config.non_empty,
            helper=FsHelper(config.name, config.timeout),
        )  # fmt: skip
    if isinstance(config, GpuCheckConfig):
        return GpuCheck(
            expected=config.expected,
            processes=config.processes,
            timeout=config.timeout,
            max_memory_used_ratio=config.max_memory_used_ratio,
            nvml_module=config.nvml_module,
            clock=clock,
        )
    if isinstance(config, TorchCheckConfig):
        return TorchMemoryCheck()
    if isinstance(config, InProcessCheckConfig):
        return Unregistered(config.name)
    raise TypeError(f"no probe for check type {type(config).__name__}")


def build_check(config: CheckConfig, clock: Clock | None = None) -> CheckSpec:
    """A CheckSpec ready to register with a HealthChecker."""
    helped = (GpuCheckConfig, DiskCheckConfig, PathCheckConfig)
    margin = HELPER_RUNNER_MARGIN if isinstance(config, helped) else 0.0
    return CheckSpec(
        name=config.name,
        probe=build_probe(config, clock),
        interval=config.interval,
        timeout=config.timeout + margin,
        critical=config.critical,
        enabled=config.enabled,
    )
