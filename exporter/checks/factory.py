"""Build check specs from their configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from exporter.checks.base import CheckSpec, Observation, Probe
from exporter.checks.disk import DiskCheck
from exporter.checks.fsprobe import FsHelper, Helper, SharedHelpers
from exporter.checks.host import HostMemoryCheck
from exporter.checks.paths import PathCheck
from exporter.checks.process import ProcessProbe
from exporter.checks.registry import HealthChecker
from exporter.clock import Clock
from exporter.config import (
    CheckConfig,
    DiskCheckConfig,
    GpuCheckConfig,
    HostMemoryCheckConfig,
    PathCheckConfig,
    TorchCheckConfig,
)
from exporter.config.checks import (
    HttpCheckConfig,
    InProcessCheckConfig,
    LogCheckConfig,
    MetricsCheckConfig,
    ProcessCheckConfig,
    RequestCheckConfig,
    TcpCheckConfig,
)
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


def _gpu(config: GpuCheckConfig, clock: Clock | None) -> Probe:
    return GpuCheck(
        expected=config.expected,
        processes=config.processes,
        timeout=config.timeout,
        max_memory_used_ratio=config.max_memory_used_ratio,
        nvml_module=config.nvml_module,
        clock=clock,
    )


def _probe(
    config: HttpCheckConfig | TcpCheckConfig | RequestCheckConfig, _clock: Clock | None
) -> Probe:
    # Only configs with probes pay for httpx's import.
    from exporter.checks.probes import HttpProbe, RequestProbe, TcpProbe  # noqa: PLC0415

    if isinstance(config, RequestCheckConfig):
        return RequestProbe(config)
    return HttpProbe(config) if isinstance(config, HttpCheckConfig) else TcpProbe(config)


def _metrics(config: MetricsCheckConfig, clock: Clock | None) -> Probe:
    from exporter.checks.scrape import MetricsProbe  # noqa: PLC0415 - httpx, on demand

    return MetricsProbe(config, clock)


def _log(config: LogCheckConfig, clock: Clock | None) -> Probe:
    from exporter.checks.logs import LogProbe  # noqa: PLC0415 - only where configured

    return LogProbe(config, clock)


BUILDERS: dict[type, Callable[[Any, Clock | None], Probe]] = {
    HostMemoryCheckConfig: lambda c, _: HostMemoryCheck(c.min_available_ratio,
                                                        c.min_available_bytes),
    GpuCheckConfig: _gpu,
    TorchCheckConfig: lambda _c, _: TorchMemoryCheck(),
    InProcessCheckConfig: lambda c, _: Unregistered(c.name),
    HttpCheckConfig: _probe,
    TcpCheckConfig: _probe,
    MetricsCheckConfig: _metrics,
    LogCheckConfig: _log,
    RequestCheckConfig: _probe,
    ProcessCheckConfig: lambda c, _: ProcessProbe(c),
}  # fmt: skip
"""How each check type's probe is made; a new check type adds its entry here."""


FILESYSTEM_BUILDERS: dict[type, Callable[[Any, Helper], Probe]] = {
    DiskCheckConfig: lambda c, h: DiskCheck(c.path, c.min_avail_ratio, c.min_avail_bytes,
                                            helper=h),
    PathCheckConfig: lambda c, h: PathCheck(c.path, c.kind, c.min_size, c.readable,
                                            c.non_empty, helper=h),
}  # fmt: skip
"""Check types whose probes run in a filesystem helper process (exporter/fsworker.py)."""


def build_probe(
    config: CheckConfig, clock: Clock | None = None, helpers: SharedHelpers | None = None
) -> Probe:
    """The probe a check config describes; disk and path checks take their filesystem
    helper from `helpers` (one per mount) when given, else one of their own."""
    filesystem = FILESYSTEM_BUILDERS.get(type(config))
    if filesystem is not None:
        assert isinstance(config, DiskCheckConfig | PathCheckConfig)
        helper: Helper = (
            FsHelper(config.name, config.timeout) if helpers is None
            else helpers.helper(str(config.path), config.timeout)
        )  # fmt: skip
        return filesystem(config, helper)
    builder = BUILDERS.get(type(config))
    if builder is None:
        raise TypeError(f"no probe for check type {type(config).__name__}")
    return builder(config, clock)


def build_check(
    config: CheckConfig, clock: Clock | None = None, helpers: SharedHelpers | None = None
) -> CheckSpec:
    """A CheckSpec ready to register with a HealthChecker."""
    # Probes that bound their own runs (helper processes, HTTP/TCP deadlines) report their
    # own timeout; the runner's deadline is the backstop.
    helped = (GpuCheckConfig, DiskCheckConfig, PathCheckConfig, HttpCheckConfig, TcpCheckConfig,
              MetricsCheckConfig, RequestCheckConfig)  # fmt: skip
    margin = HELPER_RUNNER_MARGIN if isinstance(config, helped) else 0.0
    return CheckSpec(
        name=config.name,
        probe=build_probe(config, clock, helpers),
        interval=config.interval,
        timeout=config.timeout + margin,
        critical=config.critical,
        enabled=config.enabled,
        failure_threshold=config.failure_threshold,
        success_threshold=config.success_threshold,
        start_period=config.start_period,
    )


def build_health(
    configs: Iterable[CheckConfig], clock: Clock, helpers: SharedHelpers | None = None
) -> HealthChecker:
    """A HealthChecker with every configured check registered and wired."""
    health = HealthChecker(clock)
    configs = list(configs)
    for config in configs:
        health.register(build_check(config, clock, helpers))
    wire_progress(health, configs)
    return health


def wire_progress(health: HealthChecker, configs: Iterable[CheckConfig]) -> None:
    """Give each request probe the metrics check it skips on (skip_while_progressing)."""
    for config in configs:
        if isinstance(config, RequestCheckConfig) and config.skip_while_progressing:
            probe = health.probe(config.name)
            source = health.probe(config.skip_while_progressing)
            progressing = getattr(source, "progressing", None)
            if progressing is not None:
                probe.progressing = progressing  # type: ignore[attr-defined]
