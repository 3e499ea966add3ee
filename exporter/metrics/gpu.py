"""GPU, NVML and torch metric families (names from DESIGN.md)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.gpu.facts import GpuDevice, NvmlState, TorchMemory
from exporter.gpu.xid import XidWatcher

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
    """medic_gpu_xid_errors_total from the XID watcher's counts."""

    def __init__(self, watcher: XidWatcher) -> None:
        self._watcher = watcher

    def describe(self) -> list[Metric]:
        """Nothing to pre-declare."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One series per (GPU, XID code) seen since start."""
        family = CounterMetricFamily(
            "medic_gpu_xid_errors", "XID critical errors reported by the driver.",
            labels=[*GPU_LABELS, "xid"],
        )  # fmt: skip
        for (gpu, uuid, xid), count in sorted(self._watcher.counts().items()):
            family.add_metric([str(gpu), uuid, str(xid)], count)
        yield family
