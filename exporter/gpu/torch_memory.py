"""torch's CUDA allocator figures, only inside a process that already uses CUDA."""

from __future__ import annotations

import sys

from exporter.checks.base import Observation
from exporter.gpu.facts import TorchMemory


class TorchMemoryCheck:
    """Reads torch.cuda memory stats when torch is imported and CUDA is initialised here.

    It never imports torch and never initialises CUDA: that would cost hundreds of MB of
    VRAM and hold the GPU against resets in a process that did not ask for it.
    """

    def __call__(self) -> Observation:
        """Allocated and reserved bytes per CUDA device, or nothing outside such a process."""
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_initialized():
            return Observation()
        facts = tuple(
            TorchMemory(
                device=f"cuda:{index}",
                allocated=int(torch.cuda.memory_allocated(index)),
                reserved=int(torch.cuda.memory_reserved(index)),
            )
            for index in range(torch.cuda.device_count())
        )
        return Observation(facts)
