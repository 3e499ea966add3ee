"""The one composition root: build medic's parts from a Config and wire them together."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from prometheus_client import CollectorRegistry, ProcessCollector

from exporter.checks import CheckResult
from exporter.checks.base import Observation, Probe
from exporter.checks.disk import find_mount, read_mounts
from exporter.checks.factory import build_health
from exporter.checks.fsprobe import SharedHelpers
from exporter.clock import Clock, SystemClock
from exporter.config import (
    BreakerConfig,
    Config,
    GpuCheckConfig,
    default_config,
    load_config,
    parse_config,
    split_listen,
)
from exporter.events import EventHub
from exporter.fleet import FleetGate
from exporter.fleet import build as build_fleet
from exporter.gpu.facts import GpuDevice
from exporter.gpu.history import GpuHistory
from exporter.gpu.kernel import KernelXids
from exporter.gpu.xid import XidWatcher
from exporter.gpu.xids import XidClassifier
from exporter.helper import release_changes, released_by_kind
from exporter.metrics import (
    ExporterCollector,
    Exposition,
    HealthCollector,
    KernelXidCollector,
    RenderLoop,
    VerdictCollector,
    XidCollector,
)
from exporter.metrics.fleet import FleetCollector
from exporter.metrics.recovery import RecoveryCollector, TriggerCollector
from exporter.metrics.resilience import ResilienceCollector
from exporter.metrics.webhook import WebhookCollector
from exporter.recovery.actions import ActionRegistry
from exporter.recovery.engine import RecoveryEngine, Submission
from exporter.recovery.hygiene import NvmlProcesses
from exporter.recovery.journal import Journal
from exporter.recovery.triggers import LocalTriggers
from exporter.recovery.types import FailureEvent
from exporter.resilience import (
    BreakerRegistry,
    BreakerSettings,
    BreakerStore,
    GracefulDegradation,
    InMemoryBreakerStore,
    RetryManager,
    SqliteBreakerStore,
)
from exporter.scheduler import CheckScheduler
from exporter.storage.sqlite import DB_FILE, Database
from exporter.version import __version__
from exporter.webhook.identity import Identity
from exporter.webhook.intake import Intake
from exporter.webhook.stats import WebhookStats

if TYPE_CHECKING:
    from exporter.webhook.pull import Puller

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
"""Under the data directory: files of the commands recovery runs (see recovery/launch.py)."""
PULL_CHECK = "alertmanager_pull"
"""The check that fails while no Alertmanager peer answers (pull mode only)."""
PROCESS_REFRESH = 15.0
"""Seconds between re-renders at least, so that process_* stay fresh while nothing changes."""


def as_config(config: Config | Mapping[str, Any] | str | Path | None) -> Config:
    """A Config from a Config, a mapping, a YAML file path, YAML text, or None (defaults)."""
    if config is None:
        return default_config()
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return parse_config(yaml.safe_dump(dict(config)))
    if isinstance(config, Path) or "\n" not in config:
        return load_config(config)
    return parse_config(config)


def breaker_settings(config: BreakerConfig) -> BreakerSettings:
    """The library's settings for a configured breaker."""
    return BreakerSettings(
        failure_threshold=config.failure_threshold,
        failure_rate_threshold=config.failure_rate_threshold,
        sliding_window_size=config.sliding_window_size,
        minimum_number_of_calls=config.minimum_number_of_calls,
        wait_duration_in_open=config.wait_duration_in_open,
        permitted_calls_in_half_open=config.permitted_calls_in_half_open,
        call_timeout=config.call_timeout,
    )


def host_labels(config: Config, identity: Identity) -> dict[str, str]:
    """The labels that name this host on its local triggers: the identity's pinned labels,
    else its hostname as node, hostname and instance (host:port of medic's listener)."""
    pinned = identity.equalities()
    if pinned:
        return pinned
    host = socket.gethostname()
    _, port = split_listen(config.server.listen)
    return {"node": host, "hostname": host, "instance": f"{host}:{port}"}


class Medic:
    """A configured medic. Nothing runs until start().

    Parts an embedding app uses: `health` (checks), `breakers`, `retries`, `degradation`,
    `actions` (register in-process recovery actions), `report_failure()`. Its HTTP API is
    added above this layer: `exporter.Medic` (exporter/embedded.py) is this plus
    `asgi_app()` and `serve_in_background()`.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | str | Path | None = None,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        breaker_store: BreakerStore | None = None,
    ) -> None:
        self.config = config = as_config(config)
        self.clock = clock or SystemClock()
        self.events = EventHub(self.clock)
        # One filesystem helper per mount, shared by the disk and path checks on it (the
        # mount table read once for all of them).
        mounts = read_mounts()
        self.fs_helpers = SharedHelpers(lambda path: find_mount(path, mounts)[0])
        self.health = build_health(config.checks, self.clock, self.fs_helpers)
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.registry.register(ExporterCollector(__version__, abandoned=released_by_kind))
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds ...:
        # what Prometheus users look for first about an exporter itself (kept fresh by the
        # render loop's PROCESS_REFRESH watch below).
        ProcessCollector(registry=self.registry)
        self.registry.register(HealthCollector(self.health))
        self.exposition = Exposition(self.registry, self.clock)
        self.render_loop = RenderLoop(self.exposition)
        self.render_loop.watch(release_changes)
        self.render_loop.watch(lambda: int(self.clock.monotonic() // PROCESS_REFRESH))

        self.db = self._open_db()
        store = breaker_store or (SqliteBreakerStore(self.db) if self.db else None)
        self.breakers = BreakerRegistry(clock=self.clock, store=store or InMemoryBreakerStore())
        for declared in config.breakers:
            self.breakers.declare(declared.name, breaker_settings(declared))
            self.breakers.get(declared.name)  # visible in /metrics before first use
        self.retries = RetryManager()
        self.degradation = GracefulDegradation(self.breakers)
        resilience = ResilienceCollector(self.breakers, self.retries, self.degradation)
        self.registry.register(resilience)
        self.breakers.add_listener(self.render_loop.invalidate)
        self.render_loop.watch(resilience.version)

        retention = config.recovery.retention
        self.journal = Journal(
            self.db, self.clock,
            max_attempts=retention.max_count, max_episodes=retention.max_episodes,
        )  # fmt: skip
        self.actions = ActionRegistry()
        self.recovery = RecoveryEngine(
            config.recovery,
            health=self.health,
            breakers=self.breakers,
            journal=self.journal,
            clock=self.clock,
            actions=self.actions,
            events=self.events,
            # Commands' witness, status and output files: beside the journal that refers to
            # them (a private temporary directory when there is no journal).
            runs=config.data_dir / RUNS_DIR if self.db is not None else None,
            # Restart hygiene asks NVML which old processes still hold GPU memory, with the
            # module the gpu check reads (the fake one in demos and tests).
            gpu_evidence=self._gpu_evidence,
            gpu_processes=NvmlProcesses(
                next(
                    (c.nvml_module for c in config.checks if isinstance(c, GpuCheckConfig)),
                    "pynvml",
                )
            ),
            fleet=self._fleet(config),
        )
        self.registry.register(RecoveryCollector(self.recovery))
        # Polled, not pushed: under an alert flood a re-render per event would cost more
        # CPU than the events themselves and stall scrapes.
        self.render_loop.watch(lambda: self.recovery.version)
        self.identity = Identity.from_config(config.identity)
        self.intake = Intake(config.webhook, self.recovery, self.identity)
        self.puller = self._puller(config)
        self.webhook_stats = WebhookStats()
        webhook = WebhookCollector(self.intake, self.webhook_stats)
        self.registry.register(webhook)
        self.render_loop.watch(webhook.version)

        self.xid: XidWatcher | None = None
        self.verdicts: VerdictCollector | None = None
        self.kernel_xids: KernelXids | None = None
        self._xid_classifier = XidClassifier()
        self._gpu_check = ""
        self._gpu_collectors(config)
        self.triggers = self._local_triggers(config)
        self.health.add_listener(self._on_check_result)
        self.scheduler = CheckScheduler(self.health)
        self._started = False
        self._first_round_rendered = False
        self._health_seen: dict[str, bool] = {}

    @property
    def fleet(self) -> FleetGate | None:
        """The fleet stage (None without a `fleet` section)."""
        return self.recovery.fleet

    def _fleet(self, config: Config) -> FleetGate | None:
        """The fleet stage (guard and semaphore) and its metrics, when `fleet` is set."""
        fleet = build_fleet(config.fleet, config.recovery.prometheus_url,
                            changed=self.render_loop.invalidate)  # fmt: skip
        if fleet is not None:
            self.registry.register(FleetCollector(fleet))
        return fleet

    def _puller(self, config: Config) -> Puller | None:
        """Pull mode's poller, its check and its metrics, when webhook.pull is set."""
        pull = config.webhook.pull
        if pull is None:
            return None
        # Only pull mode pays for httpx's import (~25 ms of every start otherwise).
        from exporter.metrics.pull import PullCollector  # noqa: PLC0415
        from exporter.webhook.pull import Puller  # noqa: PLC0415

        puller = Puller(pull, self.intake, clock=self.clock, on_change=self.render_loop.invalidate)
        self.health.register_probe(
            PULL_CHECK, lambda: Observation(problems=puller.check()),
            interval=pull.interval, timeout=min(1.0, pull.interval),
        )  # fmt: skip
        self.registry.register(PullCollector(puller))
        return puller

    def _gpu_collectors(self, config: Config) -> None:
        """XID counts (from NVML's events) and each GPU's verdict, for a gpu check."""
        gpu = next((c for c in config.checks if isinstance(c, GpuCheckConfig)), None)
        if gpu is None or not gpu.enabled:
            return
        classifier = self._xid_classifier = XidClassifier(gpu.xid_buckets)
        if gpu.xid_events:
            self.xid = XidWatcher(gpu.nvml_module, on_change=self.render_loop.invalidate)
            self.registry.register(XidCollector(self.xid, classifier))
        history = GpuHistory(self.db, gpu.escalate_after_resets, gpu.escalate_after_reboots,
                             clock=self.clock.time)  # fmt: skip
        self.verdicts = VerdictCollector(partial(self._gpu_devices, gpu.name), self.xid,
                                         classifier, gpu.xid_window, history)  # fmt: skip
        self._gpu_check = gpu.name
        self.registry.register(self.verdicts)
        if gpu.kernel_log is not None:
            self.kernel_xids = KernelXids(gpu, self._kernel_xid)
            self.registry.register(KernelXidCollector(self.kernel_xids))
            self.render_loop.watch(lambda: self.kernel_xids.version if self.kernel_xids else 0)

    def _kernel_xid(self, failure_type: str, labels: dict[str, str], dedup_key: str) -> str:
        """An application's fault from the kernel's XID line: its app's ladder, once per
        storm window (the dedup key)."""
        detail = f"XID {labels['xid']} from pid {labels['pid']} ({labels['process_name']})"
        event = FailureEvent(failure_type, "kernel", labels, dedup_key=dedup_key, detail=detail)
        return self.recovery.submit(event).result

    def _gpu_evidence(self, event: FailureEvent) -> dict[str, Any] | None:
        """What a GPU reset would wipe, from the gpu check's last round and the XIDs seen:
        volatile ECC counts, remap state, clock-event reasons, the processes on the GPU, the
        XIDs with their buckets, and the verdict. The GPU the event names, else all."""
        if self.verdicts is None:
            return None
        labels = event.labels
        verdicts = self.verdicts.verdicts()
        named = [(d, v) for d, v in verdicts
                 if str(d.index) == labels.get("gpu") or d.uuid == labels.get("uuid")]  # fmt: skip
        xids = self.xid.counts() if self.xid is not None else {}
        classify = self._xid_classifier
        gpus = [{**dataclasses.asdict(device), "verdict": dataclasses.asdict(found)}
                for device, found in (named or verdicts)]  # fmt: skip
        seen = [{"gpu": gpu, "uuid": uuid, "xid": xid, "count": count,
                 "bucket": classify.bucket(xid)}
                for (gpu, uuid, xid), count in sorted(xids.items())]  # fmt: skip
        return {"taken": self.clock.time(), "gpus": gpus, "xids": seen}

    def _gpu_devices(self, check: str) -> list[GpuDevice]:
        """The GPUs the gpu check saw in its last round."""
        last = self.health.results().get(check)
        return [] if last is None else [f for f in last.facts if isinstance(f, GpuDevice)]

    def _local_triggers(self, config: Config) -> LocalTriggers | None:
        """Checks with `trigger:` run their failure type's ladder when they become failing;
        with pull mode's Alertmanager peers, an active silence holds them."""
        wanted = {c.name: c.trigger for c in config.checks if c.trigger is not None}
        if not wanted:
            return None
        silences = None
        if config.webhook.pull is not None:
            from exporter.webhook.silences import AlertmanagerSilences  # noqa: PLC0415

            silences = AlertmanagerSilences(config.webhook.pull, self.clock)  # cached a poll long
        events = frozenset(c.name for c in config.checks if c.REPORTS_EVENTS)
        triggers = LocalTriggers(
            self.health, self.recovery, wanted, host_labels(config, self.identity),
            silences=silences, on_change=self.render_loop.invalidate, events=events,
        )  # fmt: skip
        self.health.add_listener(triggers)
        self.registry.register(TriggerCollector(triggers))
        return triggers

    def _open_db(self) -> Database | None:
        path = self.config.data_dir / DB_FILE
        try:
            return Database(path)
        except Exception as exc:  # unwritable data dir: keep serving with state in memory
            log.error(
                "cannot open %s (%s): the recovery journal and breaker state live in memory "
                "only and will not survive a restart", path, exc,
            )  # fmt: skip
            return None

    def start(self) -> None:
        """Render once, start the scheduler, the recovery engine and the XID watcher.

        (The data directory was created when the journal's database was opened.)
        """
        if self._started:
            return
        self.render_loop.start()  # renders once
        if self.health.ready():  # nothing enabled to wait for
            self._first_round_rendered = True
        if self.xid is not None:
            self.xid.start()
        self.recovery.start()
        if self.kernel_xids is not None:
            self.kernel_xids.start()  # after the engine: its first line may need a ladder
        if self.puller is not None:
            self.puller.start()
        self.scheduler.start()
        self._started = True
        log.info("medic %s started with %d checks; alerts are this host's when: %s",
                 __version__, len(self.health.names()), self.identity.describe())  # fmt: skip

    def stop(self) -> None:
        """Stop scheduling and release anything waiting on a hung check; never blocks on one."""
        if not self._started:
            return
        self.scheduler.stop()
        if self.puller is not None:
            self.puller.stop()
        self.recovery.stop()
        self.health.close()
        if self.triggers is not None:
            self.triggers.close()
        if self.xid is not None:
            self.xid.stop()
        if self.kernel_xids is not None:
            self.kernel_xids.stop()
        self.render_loop.stop()
        if self.db is not None:
            self.db.flush(timeout=2.0)
        self._started = False

    def report_failure(
        self,
        failure_type: str,
        detail: str = "",
        labels: dict[str, str] | None = None,
        dedup_key: str | None = None,
    ) -> Submission:
        """Ask for the failure type's ladder, e.g. after catching a CUDA out-of-memory error.

        Goes through the same gates as an alert. Safe from any thread; returns at once.
        """
        event = FailureEvent(
            failure_type, "app", dict(labels or {}), dedup_key=dedup_key, detail=detail
        )
        return self.recovery.submit(event)

    def ready(self) -> bool:
        """True once the first round of checks has finished and /metrics shows it."""
        return self._started and self._first_round_rendered

    # --- embedding ------------------------------------------------------------------------
    def __enter__(self) -> Medic:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def register_action(self, name: str, fn: Callable[..., Any]) -> None:
        """An in-process recovery action (sync or async; may take an ActionContext)."""
        self.actions.register(name, fn)

    def register_check(
        self,
        name: str,
        probe: Probe,
        *,
        interval: float = 15.0,
        timeout: float = 5.0,
        critical: bool = False,
    ) -> None:
        """A check function of the app. For a check declared `type: in_process` in the
        config, this supplies its function (the config's schedule applies)."""
        if name in self.health.names():
            spec = self.health.replace_probe(name, probe)
        else:
            spec = self.health.register_probe(
                name, probe, interval=interval, timeout=timeout, critical=critical
            )
        if self._started:
            self.scheduler.add(name, spec.interval)

    def _on_check_result(self, result: CheckResult | None) -> None:
        if result is not None and self.verdicts is not None and result.name == self._gpu_check:
            self.verdicts.observe()  # the GPUs' history: faults, resets, escalations
        if result is not None:
            previous = self._health_seen.get(result.name)
            if previous != result.ok:  # publish changes, not every run
                self._health_seen[result.name] = result.ok
                self.events.publish(
                    "health", check=result.name, ok=result.ok, reason=result.reason,
                    status=self.health.status().value,
                )  # fmt: skip
        if self._first_round_rendered or not self.health.ready():
            self.render_loop.invalidate()
            return
        # The first complete round is rendered right here, so that "ready" means a scrape
        # now sees every check, not a rendering the render thread has yet to publish.
        self.exposition.render()
        self._first_round_rendered = True
