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


@dataclass(frozen=True, slots=True)
class TorchMemory:
    """torch's caching-allocator figures for one CUDA device of this process."""

    device: str
    allocated: int
    reserved: int
