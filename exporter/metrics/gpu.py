"""GPU, NVML and torch metric families (names from DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.gpu.facts import GpuDevice, NvmlState, TorchMemory
from exporter.gpu.history import GpuHistory
from exporter.gpu.kernel import KernelXids
from exporter.gpu.verdict import ACTIONS, Verdict, verdict
from exporter.gpu.xid import XidWatcher
from exporter.gpu.xids import XidClassifier

GPU_LABELS = ["gpu", "uuid"]


def nvml_families(_check: str, facts: list[NvmlState]) -> Iterator[Metric]:
    """medic_nvml_up, medic_gpu_count (only while NVML answers) and medic_gpu_expected."""
    state = facts[-1]
    yield GaugeMetricFamily("medic_nvml_up", "1 when NVML answered the last round.",
                            value=1.0 if state.up else 0.0)  # fmt: skip
    if state.up:
        yield GaugeMetricFamily(
            "medic_gpu_count", "GPUs that answered NVML in the last round.", value=state.count
        )
    yield GaugeMetricFamily(
        "medic_gpu_expected",
        "GPUs this host should have (config; 0: not set).",
        value=state.expected,
    )


_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("medic_gpu_memory_total_bytes", "Total GPU memory.", "memory_total"),
    ("medic_gpu_memory_used_bytes", "GPU memory allocated (as nvidia-smi shows).", "memory_used"),
    ("medic_gpu_memory_free_bytes", "GPU memory unallocated.", "memory_free"),
    ("medic_gpu_memory_reserved_bytes", "GPU memory reserved by the driver and firmware.",
     "memory_reserved"),
    ("medic_gpu_utilization_ratio", "Share of time a kernel ran (0-1).", "utilization"),
    ("medic_gpu_temperature_celsius", "GPU core temperature.", "temperature"),
    ("medic_gpu_power_watts", "GPU power draw.", "power_watts"),
)  # fmt: skip


def device_families(_check: str, devices: list[GpuDevice]) -> Iterator[Metric]:
    """Per-GPU series; a field the driver does not support has no series."""
    for name, help_text, attr in _GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=GPU_LABELS)
        for device in devices:
            value = getattr(device, attr)
            if value is not None:
                family.add_metric([str(device.index), device.uuid], float(value))
        yield family
    energy = CounterMetricFamily(
        "medic_gpu_energy_joules", "Energy used since the driver loaded.", labels=GPU_LABELS
    )
    info = GaugeMetricFamily(
        "medic_gpu_info", "GPU identity; always 1.",
        labels=[*GPU_LABELS, "name", "driver_version"],
    )  # fmt: skip
    processes = GaugeMetricFamily(
        "medic_gpu_process_memory_bytes", "GPU memory used by a compute process.",
        labels=[*GPU_LABELS, "pid", "process_name"],
    )  # fmt: skip
    for device in devices:
        labels = [str(device.index), device.uuid]
        info.add_metric([*labels, device.name, device.driver], 1.0)
        if device.energy_joules is not None:
            energy.add_metric(labels, device.energy_joules)
        for proc in device.processes or ():
            if proc.used is not None:
                processes.add_metric([*labels, str(proc.pid), proc.name], float(proc.used))
    yield from (energy, info)
    if any(d.processes is not None for d in devices):
        yield processes
    yield from _health_families(devices)


_HEALTH: tuple[tuple[str, str, str, str, dict[str, str]], ...] = (
    ("gauge", "medic_gpu_remapped_rows", "Rows remapped (permanent), by the error behind them.",
     "remap_correctable", {"kind": "correctable"}),
    ("gauge", "medic_gpu_remapped_rows", "", "remap_uncorrectable", {"kind": "uncorrectable"}),
    ("gauge", "medic_gpu_row_remap_pending",
     "1 while a row remap waits for the next GPU reset.", "remap_pending", {}),
    ("gauge", "medic_gpu_row_remap_failure",
     "1 once a row remapping failed (an RMA criterion).", "remap_failure", {}),
    ("counter", "medic_gpu_ecc_errors", "ECC errors: volatile since the driver loaded, "
     "aggregate over the GPU's life.", "ecc_volatile_corrected",
     {"kind": "corrected", "counter": "volatile"}),
    ("counter", "medic_gpu_ecc_errors", "", "ecc_volatile_uncorrected",
     {"kind": "uncorrected", "counter": "volatile"}),
    ("counter", "medic_gpu_ecc_errors", "", "ecc_aggregate_corrected",
     {"kind": "corrected", "counter": "aggregate"}),
    ("counter", "medic_gpu_ecc_errors", "", "ecc_aggregate_uncorrected",
     {"kind": "uncorrected", "counter": "aggregate"}),
    ("gauge", "medic_gpu_retired_pages", "Pages retired (pre-Ampere), by cause.",
     "retired_single_bit", {"cause": "single_bit"}),
    ("gauge", "medic_gpu_retired_pages", "", "retired_double_bit", {"cause": "double_bit"}),
    ("gauge", "medic_gpu_retired_pages_pending",
     "1 while a page waits for retirement at the next reset.", "retired_pending", {}),
    ("counter", "medic_gpu_pcie_replays", "PCIe replays since the driver loaded.",
     "pcie_replay", {}),
)  # fmt: skip
CLOCK_EVENT_REASONS = {
    "gpu_idle": 0x1, "applications_clocks_setting": 0x2, "sw_power_cap": 0x4,
    "hw_slowdown": 0x8, "sync_boost": 0x10, "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}  # fmt: skip
"""nvmlClocksEventReason* bits (nvidia-ml-py): why the clocks are held down."""


def _health_families(devices: list[GpuDevice]) -> Iterator[Metric]:
    """The figures behind a verdict; a field the GPU lacks has no series."""
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for kind, name, help_text, attr, extra in _HEALTH:
        if name not in families:
            make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            families[name] = make(name, help_text, labels=[*GPU_LABELS, *extra])
        for device in devices:
            value = None if device.health is None else getattr(device.health, attr)
            if value is not None:
                families[name].add_metric([str(device.index), device.uuid, *extra.values()],
                                          float(value))  # fmt: skip
    yield from families.values()
    reasons = GaugeMetricFamily(
        "medic_gpu_clock_event_reasons", "1 for each reason the clocks are held down now.",
        labels=[*GPU_LABELS, "reason"],
    )  # fmt: skip
    reset = GaugeMetricFamily(
        "medic_gpu_reset_required", "1 while NVML answers RESET_REQUIRED for the GPU.",
        labels=GPU_LABELS,
    )  # fmt: skip
    for device in devices:
        labels = [str(device.index), device.uuid]
        reset.add_metric(labels, 1.0 if device.reset_required else 0.0)
        mask = None if device.health is None else device.health.clock_event_reasons
        if mask is not None:
            for reason, bit in CLOCK_EVENT_REASONS.items():
                reasons.add_metric([*labels, reason], 1.0 if mask & bit else 0.0)
    yield from (reasons, reset)


def torch_families(_check: str, facts: list[TorchMemory]) -> Iterator[Metric]:
    """torch allocator figures per CUDA device (embedded mode only)."""
    allocated = GaugeMetricFamily(
        "medic_torch_memory_allocated_bytes", "Memory held by live tensors.", labels=["device"]
    )
    reserved = GaugeMetricFamily(
        "medic_torch_memory_reserved_bytes", "Memory held by torch's caching allocator.",
        labels=["device"],
    )  # fmt: skip
    for fact in facts:
        allocated.add_metric([fact.device], fact.allocated)
        reserved.add_metric([fact.device], fact.reserved)
    yield from (allocated, reserved)


class XidCollector(Collector):
    """medic_gpu_xid_errors_total from the XID watcher's counts, with each XID's bucket (a
    function of the XID, so no more series)."""

    def __init__(self, watcher: XidWatcher, classifier: XidClassifier | None = None) -> None:
        self._watcher = watcher
        self._classifier = classifier or XidClassifier()

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One series per (GPU, XID code) seen since start."""
        family = CounterMetricFamily(
            "medic_gpu_xid_errors", "XID critical errors reported by the driver, with the "
            "bucket of NVIDIA's catalog they fall in.", labels=[*GPU_LABELS, "xid", "bucket"],
        )  # fmt: skip
        for (gpu, uuid, xid), count in sorted(self._watcher.counts().items()):
            family.add_metric([str(gpu), uuid, str(xid), self._classifier.bucket(xid)], count)
        yield family


class VerdictCollector(Collector):
    """medic_gpu_recovery_action{gpu,uuid,action}: one 0/1 series per action for every GPU
    the gpu check saw last, the driver's verdict merged with the catalog's for the XIDs of
    the last `window` seconds (exporter.gpu.verdict)."""

    def __init__(
        self,
        devices: Callable[[], list[GpuDevice]],
        watcher: XidWatcher | None,
        classifier: XidClassifier,
        window: float,
        history: GpuHistory | None = None,
    ) -> None:
        self._devices = devices
        self._watcher = watcher
        self._classifier = classifier
        self._window = window
        self.history = history

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def verdicts(self) -> list[tuple[GpuDevice, Verdict]]:
        """Each GPU's verdict now."""
        recent = self._watcher.recent(self._window) if self._watcher is not None else {}
        found = []
        escalated = self.history.escalated if self.history is not None else {}
        for device in self._devices():
            xids = recent.get((device.index, device.uuid), set())
            merged = verdict(device, {self._classifier.bucket(x) for x in xids})
            to = escalated.get(device.serial or "")
            if to is not None and ACTIONS.index(to) > ACTIONS.index(merged.action):
                merged = Verdict(to, "history", f"{merged.detail}; escalated by its history")  # type: ignore[arg-type]
            found.append((device, merged))
        return found

    def observe(self) -> None:
        """Feed the GPU round just finished to the history (faults, resets, escalations)."""
        if self.history is None:
            return
        counts = self._watcher.counts() if self._watcher is not None else {}
        rounds = []
        for device, found in self.verdicts():
            mine = {xid: n for (gpu, uuid, xid), n in counts.items()
                    if (gpu, uuid) == (device.index, device.uuid)}  # fmt: skip
            levels = ("reset_gpu", "reboot_node")
            gpu_level = {x: n for x, n in mine.items() if self._classifier.bucket(x) in levels}
            rounds.append((device, found, gpu_level))
        self.history.observe(rounds)

    def collect(self) -> Iterator[Metric]:
        """One series per GPU and action: 1 for the verdict, 0 for the others."""
        family = GaugeMetricFamily(
            "medic_gpu_recovery_action",
            "What the GPU needs now (1): the driver's verdict, outranking NVIDIA's XID "
            "catalog for the XIDs seen recently.",
            labels=[*GPU_LABELS, "action"],
        )  # fmt: skip
        for device, found in self.verdicts():
            for action in ACTIONS:
                family.add_metric([str(device.index), device.uuid, action],
                                  1.0 if action == found.action else 0.0)  # fmt: skip
        yield family
        if self.history is not None:
            escalations = CounterMetricFamily(
                "medic_gpu_escalations", "Faults that outlived their remedy, escalated by the "
                "GPU's history (to reboot_node, then inspect_hardware).", labels=["to"],
            )  # fmt: skip
            for to, count in sorted(self.history.escalations.items()):
                escalations.add_metric([to], count)
            yield escalations


class KernelXidCollector(Collector):
    """medic_gpu_kernel_xids_total{bucket,result}: XID lines of the kernel log, by bucket,
    and what became of the application faults among them (born at 0 for every pair)."""

    def __init__(self, kernel: KernelXids) -> None:
        self._kernel = kernel

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One series per bucket and result (seen, accepted, duplicate, unmatched, refused)."""
        family = CounterMetricFamily(
            "medic_gpu_kernel_xids", "XID lines read from the kernel log: seen, by bucket; for "
            "application faults, what their app's ladder made of them.",
            labels=["bucket", "result"],
        )  # fmt: skip
        for (bucket, result), count in sorted(self._kernel.counts.items()):
            family.add_metric([bucket, result], count)
        yield family
