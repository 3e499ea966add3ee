"""What the GPU check observes, as plain values the metrics layer turns into series."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NvmlState:
    """Whether NVML answered this round, and how many GPUs it saw versus expected."""

    up: bool
    count: int
    expected: int
    driver: str = ""


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A compute process on a GPU; `used` is None when the driver cannot tell."""

    pid: int
    name: str
    used: int | None


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU's figures; a field is None when the driver does not support it."""

    index: int
    uuid: str
    name: str
    driver: str
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    memory_reserved: int | None = None
    utilization: float | None = None
    temperature: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    processes: tuple[GpuProcess, ...] | None = None
    serial: str | None = None
    reset_required: bool = False
    """NVML answered NVML_ERROR_RESET_REQUIRED: the GPU takes no work until it is reset."""
    health: GpuHealth | None = None


@dataclass(frozen=True, slots=True)
class GpuHealth:
    """The driver's verdict and the figures behind it; None where the GPU or driver lacks
    the field (nvmlDeviceGetFieldValues answers NOT_SUPPORTED for it)."""

    recovery_action: int | None = None
    """NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: 0 none, 1 GPU reset, 2 node reboot, 3 drain P2P,
    4 drain and reset, 5 recover IMEX domain, 6 bus reset, 7 system reboot."""
    remap_correctable: int | None = None
    remap_uncorrectable: int | None = None
    remap_pending: int | None = None
    remap_failure: int | None = None
    ecc_volatile_corrected: int | None = None
    ecc_volatile_uncorrected: int | None = None
    ecc_aggregate_corrected: int | None = None
    ecc_aggregate_uncorrected: int | None = None
    retired_single_bit: int | None = None
    retired_double_bit: int | None = None
    retired_pending: int | None = None
    pcie_replay: int | None = None
    clock_event_reasons: int | None = None


@dataclass(frozen=True, slots=True)
class TorchMemory:
    """torch's caching-allocator figures for one CUDA device of this process."""

    device: str
    allocated: int
    reserved: int
