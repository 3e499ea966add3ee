"""The one composition root: build medic's parts from a Config and wire them together."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from exporter.checks import CheckResult, HealthChecker
from exporter.checks.factory import build_check
from exporter.clock import Clock, SystemClock
from exporter.config import Config, GpuCheckConfig
from exporter.gpu.xid import XidWatcher
from exporter.metrics import (
    ExporterCollector,
    Exposition,
    HealthCollector,
    RenderLoop,
    XidCollector,
)
from exporter.scheduler import CheckScheduler
from exporter.version import __version__

log = logging.getLogger(__name__)


class Medic:
    """A configured medic: checks, scheduler and exposition. Nothing runs until start()."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.health = HealthChecker(self.clock)
        for check in config.checks:
            self.health.register(build_check(check, self.clock))
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.registry.register(ExporterCollector(__version__))
        self.registry.register(HealthCollector(self.health))
        self.exposition = Exposition(self.registry, self.clock)
        self.render_loop = RenderLoop(self.exposition)
        gpu = next((c for c in config.checks if isinstance(c, GpuCheckConfig)), None)
        self.xid: XidWatcher | None = None
        if gpu is not None and gpu.enabled and gpu.xid_events:
            self.xid = XidWatcher(gpu.nvml_module, on_change=self.render_loop.invalidate)
            self.registry.register(XidCollector(self.xid))
        self.health.add_listener(self._on_check_result)
        self.scheduler = CheckScheduler(self.health)
        self._started = False
        self._first_round_rendered = False

    def start(self) -> None:
        """Create the data directory, render once, and start the scheduler."""
        if self._started:
            return
        try:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("cannot create data directory %s: %s", self.config.data_dir, exc.strerror)
        self.render_loop.start()
        if self.xid is not None:
            self.xid.start()
        self.scheduler.start()
        self._started = True
        log.info("medic %s started with %d checks", __version__, len(self.health.names()))

    def stop(self) -> None:
        """Stop scheduling and release anything waiting on a hung check; never blocks on one."""
        if not self._started:
            return
        self.scheduler.stop()
        self.health.close()
        if self.xid is not None:
            self.xid.stop()
        self.render_loop.stop()
        self._started = False

    def ready(self) -> bool:
        """True once the first round of checks has finished and /metrics shows it."""
        return self._started and self._first_round_rendered

    def _on_check_result(self, _result: CheckResult | None) -> None:
        if self._first_round_rendered or not self.health.ready():
            self.render_loop.invalidate()
            return
        # The first complete round is rendered right here, so that "ready" means a scrape
        # now sees every check, not a rendering the render thread has yet to publish.
        self.exposition.render()
        self._first_round_rendered = True
