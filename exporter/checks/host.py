"""Host memory and swap, read with psutil."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psutil

from exporter.checks.base import Observation


@dataclass(frozen=True, slots=True)
class HostMemory:
    """Memory figures in bytes; `available` is what new allocations can get without swapping."""

    total: int
    available: int
    swap_total: int
    swap_free: int


def read_host_memory() -> HostMemory:
    """Read the host's memory from /proc through psutil."""
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    return HostMemory(int(vm.total), int(vm.available), int(swap.total), int(swap.free))


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


class HostMemoryCheck:
    """Fails when available memory falls below a ratio of the total or a number of bytes."""

    def __init__(
        self,
        min_available_ratio: float = 0.05,
        min_available_bytes: int = 0,
        read: Callable[[], HostMemory] = read_host_memory,
    ) -> None:
        self._min_ratio = min_available_ratio
        self._min_bytes = min_available_bytes
        self._read = read

    def __call__(self) -> Observation:
        """Read memory once and judge it against the thresholds."""
        memory = self._read()
        problems = []
        ratio = memory.available / memory.total if memory.total else 0.0
        if ratio < self._min_ratio:
            problems.append(
                f"available memory {ratio:.1%} of {_gib(memory.total)} "
                f"is below {self._min_ratio:.1%}"
            )
        if memory.available < self._min_bytes:
            problems.append(
                f"available memory {_gib(memory.available)} is below {_gib(self._min_bytes)}"
            )
        return Observation((memory,), tuple(problems))
