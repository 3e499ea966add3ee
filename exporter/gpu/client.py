"""The NVML helper's command line (the helper process itself: exporter/helper.py)."""

from __future__ import annotations

import sys

ABSENT_RETRY = 300.0
"""Seconds between looks for an NVML library that was not found (a host without NVIDIA's
driver): no helper process runs in between; each look is one short-lived helper."""


def worker_argv(nvml_module: str, events: bool = False) -> list[str]:
    """Command line of an NVML helper process."""
    argv = [sys.executable, "-m", "exporter.gpu.worker", "--nvml-module", nvml_module]
    return [*argv, "--events"] if events else argv
