"""Metric families from the HealthChecker's latest results; the names are DESIGN.md's table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.checks import CheckState, FilesystemUsage, HealthChecker, HostMemory, PathPresence
from exporter.checks.base import ProbeFact
from exporter.checks.logs import LogFact
from exporter.checks.metricrules import RuleFact
from exporter.checks.process import ProcessFact
from exporter.gpu.facts import GpuDevice, NvmlState, TorchMemory
from exporter.metrics.exposition import Part
from exporter.metrics.gpu import device_families, nvml_families, torch_families

FactFamilies = Callable[[str, list[Any]], Iterable[Metric]]
"""Given a check name and its facts of one type, yield metric families."""


def _host_memory(_check: str, facts: list[HostMemory]) -> Iterator[Metric]:
    memory = facts[-1]
    for name, help_text, value in (
        ("medic_host_memory_total_bytes", "Total physical memory.", memory.total),
        ("medic_host_memory_available_bytes", "Memory available without swapping.",
         memory.available),
        ("medic_host_swap_total_bytes", "Total swap space.", memory.swap_total),
        ("medic_host_swap_free_bytes", "Unused swap space.", memory.swap_free),
    ):  # fmt: skip
        yield GaugeMetricFamily(name, help_text, value=value)


def _filesystems(_check: str, facts: list[FilesystemUsage]) -> Iterator[Metric]:
    labels = ["path", "mountpoint", "fstype"]
    size = GaugeMetricFamily("medic_filesystem_size_bytes", "Filesystem size.", labels=labels)
    avail = GaugeMetricFamily(
        "medic_filesystem_avail_bytes",
        "Filesystem space available to non-root users.",
        labels=labels,
    )
    error = GaugeMetricFamily(
        "medic_filesystem_device_error",
        "1 when the filesystem could not be read.",
        labels=labels,
    )
    for fs in facts:
        values = [fs.path, fs.mountpoint, fs.fstype]
        error.add_metric(values, 1.0 if fs.device_error else 0.0)
        if fs.size is not None and fs.avail is not None:
            size.add_metric(values, fs.size)
            avail.add_metric(values, fs.avail)
    yield from (size, avail, error)


def _paths(check: str, facts: list[PathPresence]) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "medic_path_present",
        "1 when a watched path exists as the expected kind.",
        labels=["path", "check"],
    )
    for fact in facts:
        family.add_metric([fact.path, check], 1.0 if fact.present else 0.0)
    yield family


def _probes(check: str, facts: list[ProbeFact]) -> Iterator[Metric]:
    fact = facts[-1]
    labels = ["check"]
    success = GaugeMetricFamily(
        "medic_probe_success", "1 when the probe's last run passed.", labels=labels
    )
    success.add_metric([check], 1.0 if fact.success else 0.0)
    duration = GaugeMetricFamily(
        "medic_probe_duration_seconds", "How long the probe's last run took.", labels=labels
    )
    duration.add_metric([check], fact.duration)
    yield from (success, duration)
    if fact.status_code is not None:
        status = GaugeMetricFamily(
            "medic_probe_http_status_code", "The HTTP status of the probe's last answer.",
            labels=labels,
        )  # fmt: skip
        status.add_metric([check], float(fact.status_code))
        yield status


def _rules(check: str, facts: list[RuleFact]) -> Iterator[Metric]:
    labels = ["check", "rule"]
    value = GaugeMetricFamily(
        "medic_metric_rule_value",
        "What a metrics check's rule read on the last scrape (a stalled rule: work present).",
        labels=labels,
    )
    firing = GaugeMetricFamily(
        "medic_metric_rule_firing", "1 while a metrics check's rule fires.", labels=labels
    )
    for fact in facts:
        if fact.value is not None:
            value.add_metric([check, fact.rule], fact.value)
        firing.add_metric([check, fact.rule], 1.0 if fact.firing else 0.0)
    yield from (value, firing)


def _logs(check: str, facts: list[LogFact]) -> Iterator[Metric]:
    fact = facts[-1]
    matches = CounterMetricFamily(
        "medic_log_matches",
        "Log lines matching a pattern, a burst counted once per burst window.",
        labels=["check", "pattern"],
    )
    for pattern, count in fact.matches:
        matches.add_metric([check, pattern], count)
    lines = CounterMetricFamily("medic_log_lines", "Log lines read.", labels=["check"])
    lines.add_metric([check], fact.lines)
    yield from (matches, lines)


def _process(check: str, facts: list[ProcessFact]) -> Iterator[Metric]:
    fact = facts[-1]
    up = GaugeMetricFamily("medic_process_up", "1 while the watched process runs.",
                           labels=["check"])  # fmt: skip
    up.add_metric([check], 1.0 if fact.pid else 0.0)
    yield up
    for name, help_text, value in (
        ("medic_process_resident_memory_bytes", "The watched process's resident memory.",
         fact.rss),
        ("medic_process_open_fds", "The watched process's open file descriptors.",
         fact.open_files),
        ("medic_process_start_time_seconds",
         "When the watched process started; a change is a restart.", fact.start_time),
    ):  # fmt: skip
        if value is not None:
            family = GaugeMetricFamily(name, help_text, labels=["check"])
            family.add_metric([check], float(value))
            yield family


FACT_FAMILIES: dict[type, FactFamilies] = {
    HostMemory: _host_memory,
    FilesystemUsage: _filesystems,
    PathPresence: _paths,
    ProbeFact: _probes,
    RuleFact: _rules,
    LogFact: _logs,
    ProcessFact: _process,
    NvmlState: nvml_families,
    GpuDevice: device_families,
    TorchMemory: torch_families,
}
"""How each kind of fact becomes metrics; new check families add their entry here."""


def _merge(families: Iterable[Metric]) -> list[Metric]:
    """One family per name even when several checks emit it; duplicate series are dropped."""
    merged: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in families:
        target = merged.setdefault(family.name, family)
        kept = []
        for sample in family.samples:
            # Labels in insertion order: one family's samples all come from add_metric with
            # the same label names (sorting them cost a third of a 5,000-series render).
            key = (sample.name, tuple(sample.labels.items()))
            if key not in seen:
                seen.add(key)
                kept.append(sample)
        if target is family:
            family.samples = kept
        else:
            target.samples.extend(kept)
    return list(merged.values())


class HealthCollector(Collector):
    """Exports check results and their facts; reads only in-memory state, never hardware."""

    def __init__(
        self, health: HealthChecker, fact_families: dict[type, FactFamilies] | None = None
    ) -> None:
        self._health = health
        self._fact_families = FACT_FAMILIES if fact_families is None else fact_families

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare; keeps registration from calling collect()."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The check families, then every family derived from facts."""
        states = [s for s in self._health.states() if s.enabled]
        yield from _check_families(states)
        yield from _merge(f for state in states for f in self._facts(state))

    def render_parts(self) -> Iterator[Part]:
        """The check families as one part, then each check's facts as a part of its own,
        whose token is its latest result: a new result re-renders that check alone."""
        states = [s for s in self._health.states() if s.enabled]
        token = tuple(
            value for s in states
            for value in (s.spec.name, s.last, s.last_success, s.stuck, s.streak.failing,
                          s.skipped)
        )  # fmt: skip
        yield "checks", token, lambda: _check_families(states)
        for state in states:
            if state.last is not None and state.last.facts:
                yield ("facts", state.spec.name), (state.last,), partial(self._merged, state)

    def _merged(self, state: CheckState) -> list[Metric]:
        return _merge(self._facts(state))

    def _facts(self, state: CheckState) -> list[Metric]:
        """The families derived from one check's facts (not yet merged by name)."""
        if state.last is None:
            return []
        by_type: dict[type, list[Any]] = {}
        for fact in state.last.facts:
            by_type.setdefault(type(fact), []).append(fact)
        derived: list[Metric] = []
        for fact_type, facts in by_type.items():
            to_families = self._fact_families.get(fact_type)
            if to_families is not None:
                derived.extend(to_families(state.spec.name, facts))
        return derived


def _check_families(states: list[CheckState]) -> list[Metric]:
    success = GaugeMetricFamily(
        "medic_check_success", "1 when the check's last run passed.", labels=["check"]
    )
    duration = GaugeMetricFamily(
        "medic_check_duration_seconds", "How long the check's last run took.", labels=["check"]
    )
    last_ok = GaugeMetricFamily(
        "medic_check_last_success_timestamp_seconds",
        "When the check last passed (0 if never); time() minus this is its staleness.",
        labels=["check"],
    )
    stuck = GaugeMetricFamily(
        "medic_check_stuck",
        "1 while a run that overran its timeout has not returned.",
        labels=["check"],
    )
    skipped = CounterMetricFamily(
        "medic_check_skipped",
        "Runs that did not probe: a request still in flight, or the server busy making "
        "progress (neither a pass nor a failure).",
        labels=["check"],
    )
    failing = GaugeMetricFamily(
        "medic_check_failing",
        "1 once failure_threshold runs in a row failed, until success_threshold pass.",
        labels=["check"],
    )
    for state in states:
        name = [state.spec.name]
        stuck.add_metric(name, 1.0 if state.stuck else 0.0)
        failing.add_metric(name, 1.0 if state.streak.failing else 0.0)
        skipped.add_metric(name, state.skipped)
        last_ok.add_metric(name, state.last_success or 0.0)
        if state.last is not None:
            success.add_metric(name, 1.0 if state.last.ok else 0.0)
            duration.add_metric(name, state.last.duration)
    return [success, duration, last_ok, stuck, failing, skipped]


class ExporterCollector(Collector):
    """medic_build_info and medic_up."""

    def __init__(self, version: str, abandoned: Callable[[], dict[str, int]] | None = None) -> None:
        self._version = version
        self._abandoned = abandoned

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Constant series: the version and that the exporter answers."""
        info = GaugeMetricFamily(
            "medic_build_info", "medic's version; always 1.", labels=["version"]
        )
        info.add_metric([self._version], 1.0)
        yield info
        yield GaugeMetricFamily("medic_up", "1 while medic is serving.", value=1.0)
        if self._abandoned is not None:
            helpers = GaugeMetricFamily(
                "medic_helper_processes_abandoned",
                "Helper processes medic let go of that have not exited yet: blocked in a "
                "driver call (nvml) or on a hung mount (filesystem, SIGKILL pending).",
                labels=["kind"],
            )
            counts = self._abandoned()
            for kind in sorted({"filesystem", "nvml", *counts}):
                helpers.add_metric([kind], float(counts.get(kind, 0)))
            yield helpers
