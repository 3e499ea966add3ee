"""HealthChecker: the registry of checks, their latest results and the overall status."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.checks.base import (
    CheckResult,
    CheckSpec,
    ManagedProbe,
    Observation,
    Probe,
    ProbeResult,
    Streak,
    SystemHealthStatus,
    overall_status,
)
from exporter.checks.runner import BoundedRunner, CallStuck, CallTimeout, RunnerClosed
from exporter.clock import Clock, SystemClock

log = logging.getLogger(__name__)

ResultListener = Callable[[CheckResult | None], None]
"""Told each new result, or None when state changed without one (disabled, un-stuck)."""


@dataclass(frozen=True, slots=True)
class CheckState:
    """What is known about one check right now."""

    spec: CheckSpec
    enabled: bool
    last: CheckResult | None
    last_success: float | None
    stuck: bool
    streak: Streak = dataclasses.field(default_factory=Streak)
    skipped: int = 0
    """Runs that did not probe (see Observation.skipped)."""


def advance(streak: Streak, spec: CheckSpec, ok: bool, at: float, counted: bool) -> Streak:
    """The streak after one more run (a failure in the start period is not counted)."""
    if ok:
        successes = streak.successes + 1
        return Streak(streak.failing and successes < spec.success_threshold, streak.since,
                      0, successes)  # fmt: skip
    if not counted:
        return streak
    since = streak.since if streak.failures or streak.failing else at
    failures = streak.failures + 1
    return Streak(streak.failing or failures >= spec.failure_threshold, since, failures, 0)


def _observe(value: ProbeResult) -> Observation:
    if isinstance(value, Observation):
        return value
    if value is None or value is True:
        return Observation()
    if value is False:
        return Observation(problems=("probe returned False",))
    raise TypeError(f"probe returned {type(value).__name__}; expected Observation, bool or None")


class HealthChecker:
    """Register checks, run one or all under their timeouts, enable/disable, report status."""

    def __init__(
        self,
        clock: Clock | None = None,
        max_stuck: int = 32,
    ) -> None:
        self._clock = clock or SystemClock()
        self._runner = BoundedRunner(max_stuck, on_returned=self._stuck_returned)
        self._lock = threading.Lock()
        self._specs: dict[str, CheckSpec] = {}
        self._enabled: dict[str, bool] = {}
        self._last: dict[str, CheckResult] = {}
        self._last_success: dict[str, float] = {}
        self._streaks: dict[str, Streak] = {}
        self._skips: dict[str, int] = {}
        self._registered_at: dict[str, float] = {}
        self._listeners: list[ResultListener] = []

    # --- registration -------------------------------------------------------------------
    def register(self, spec: CheckSpec) -> None:
        """Add a check; its name must be new."""
        with self._lock:
            if spec.name in self._specs:
                raise ValueError(f"a check named {spec.name!r} is already registered")
            self._specs[spec.name] = spec
            self._enabled[spec.name] = spec.enabled
            self._registered_at[spec.name] = self._clock.monotonic()

    def register_probe(
        self,
        name: str,
        probe: Probe,
        *,
        interval: float = 15.0,
        timeout: float = 5.0,
        critical: bool = False,
    ) -> CheckSpec:
        """Register a callable as a check: it returns Observation, bool or None; raising fails."""
        spec = CheckSpec(name, probe, interval, timeout, critical)
        self.register(spec)
        return spec

    def replace_probe(self, name: str, probe: Probe) -> CheckSpec:
        """Swap the function of a registered check (keeps its schedule and settings)."""
        with self._lock:
            spec = self._require(name)
            spec = dataclasses.replace(spec, probe=probe)
            self._specs[name] = spec
            return spec

    def unregister(self, name: str) -> None:
        """Remove a check and forget its results."""
        with self._lock:
            self._require(name)
            for table in (self._specs, self._enabled, self._last, self._last_success,
                          self._streaks, self._registered_at, self._skips):  # fmt: skip
                table.pop(name, None)

    def enable(self, name: str) -> None:
        """Let the scheduler run this check again."""
        with self._lock:
            self._require(name)
            self._enabled[name] = True

    def disable(self, name: str) -> None:
        """Stop scheduled runs of this check; its result leaves the status and the metrics."""
        with self._lock:
            self._require(name)
            self._enabled[name] = False
            self._last.pop(name, None)
        self._notify(None)

    def add_listener(self, listener: ResultListener) -> None:
        """Call listener(result) after every run (from the thread that ran the check)."""
        self._listeners.append(listener)

    # --- running ------------------------------------------------------------------------
    def run(self, name: str) -> CheckResult:
        """Run one check now, bounded by its timeout, record and return the result."""
        with self._lock:
            spec = self._require(name)
        started_wall, started = self._clock.time(), self._clock.monotonic()
        try:
            observation = _observe(self._runner.call(name, spec.probe, spec.timeout))
            if observation.skipped:
                return self._skipped(name, observation.skipped, started_wall)
            ok, reason = not observation.problems, "; ".join(observation.problems)
            facts = observation.facts
        except CallTimeout:
            ok, reason, facts = False, "timeout", ()
            log.warning("check %s overran its %gs timeout and is stuck", name, spec.timeout)
        except CallStuck:
            ok, reason, facts = False, "stuck", ()
        except RunnerClosed:
            ok, reason, facts = False, "shutdown", ()
        except Exception as exc:
            ok, reason, facts = False, f"{type(exc).__name__}: {exc}", ()
        result = CheckResult(
            name, ok, reason, started_wall, self._clock.monotonic() - started, facts
        )
        if reason == "shutdown":
            return result
        with self._lock:
            if not self._enabled.get(name, False):  # disabled or removed meanwhile: report only
                return result
            self._last[name] = result
            if ok:
                self._last_success[name] = started_wall + result.duration
            settling = self._clock.monotonic() - self._registered_at[name] < spec.start_period
            self._streaks[name] = advance(self._streaks.get(name, Streak()), spec, ok,
                                          started_wall, counted=not settling)  # fmt: skip
        self._notify(result)
        return result

    def _skipped(self, name: str, why: str, at: float) -> CheckResult:
        """A run that did not probe: counted, and the last real result stands (a verify
        that meets a skip looks again; it never takes a skip for a pass)."""
        with self._lock:
            self._skips[name] = self._skips.get(name, 0) + 1
            last = self._last.get(name)
        self._notify(None)
        # Not ok: a skip is no evidence either way (the last real result stays recorded).
        return CheckResult(name, False, f"skipped: {why}", at, 0.0, last.facts if last else ())

    def run_if_enabled(self, name: str) -> CheckResult | None:
        """The scheduler's entry point: run unless disabled or since removed."""
        with self._lock:
            if not self._enabled.get(name, False):
                return None
        return self.run(name)

    def run_all(self, names: Iterable[str] | None = None) -> dict[str, CheckResult]:
        """Run the enabled checks concurrently; each is bounded by its own timeout."""
        with self._lock:
            todo = [n for n in (names or self._specs) if self._enabled.get(n, False)]
        results: dict[str, CheckResult] = {}
        threads = [
            threading.Thread(target=lambda n=n: results.__setitem__(n, self.run(n)), daemon=True)
            for n in todo
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # bounded: run() returns within its check's timeout
        return results

    # --- reading ------------------------------------------------------------------------
    def probe(self, name: str) -> Probe:
        """The probe a registered check runs (to wire probes that read each other)."""
        with self._lock:
            return self._require(name).probe

    def streak(self, name: str) -> Streak:
        """Where the check stands over its recent runs (see Streak)."""
        with self._lock:
            self._require(name)
            return self._streaks.get(name, Streak())

    def names(self) -> list[str]:
        """Registered check names, in registration order."""
        with self._lock:
            return list(self._specs)

    def states(self) -> list[CheckState]:
        """A consistent snapshot of every check."""
        with self._lock:
            return [
                CheckState(
                    spec,
                    self._enabled[name],
                    self._last.get(name),
                    self._last_success.get(name),
                    self._runner.stuck(name)
                    or (isinstance(spec.probe, ManagedProbe) and spec.probe.stuck()),
                    self._streaks.get(name, Streak()),
                    self._skips.get(name, 0),
                )
                for name, spec in self._specs.items()
            ]

    def results(self) -> dict[str, CheckResult]:
        """Latest result of each enabled check that has run."""
        with self._lock:
            return dict(self._last)

    def status(self) -> SystemHealthStatus:
        """healthy / degraded / unhealthy from the latest results."""
        with self._lock:
            critical = {n for n, s in self._specs.items() if s.critical}
            return overall_status(dict(self._last), critical)

    def ready(self) -> bool:
        """True once every enabled check has a result (the first round is done)."""
        with self._lock:
            return all(n in self._last for n, on in self._enabled.items() if on)

    def close(self) -> None:
        """Free every caller waiting on a check and release probes' helpers (shutdown)."""
        self._runner.close()
        with self._lock:
            probes = [spec.probe for spec in self._specs.values()]
        for probe in probes:
            if isinstance(probe, ManagedProbe):
                try:
                    probe.close()
                except Exception:
                    log.exception("closing a probe failed")

    # --- internals ----------------------------------------------------------------------
    def _require(self, name: str) -> CheckSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"no check named {name!r}") from None

    def _stuck_returned(self, name: str) -> None:
        log.info("check %s returned after being stuck", name)
        self._notify(None)

    def _notify(self, result: CheckResult | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(result)
            except Exception:
                log.exception("health listener failed")
