"""The NVML helper's command line (the helper process itself: exporter/helper.py)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.helper import WorkerProcess

ABSENT_RETRY = 300.0
"""Seconds between looks for an NVML library that was not found (a host without NVIDIA's
driver): no helper process runs in between; each look is one short-lived helper."""


def worker_argv(nvml_module: str, events: bool = False) -> list[str]:
    """Command line of an NVML helper process."""
    argv = [sys.executable, "-m", "exporter.gpu.worker", "--nvml-module", nvml_module]
    return [*argv, "--events"] if events else argv


def collect(worker: WorkerProcess, processes: bool, timeout: float) -> dict[str, Any]:
    """One collection round from a collect-mode helper, within `timeout` seconds in all:
    the reply, then the GPUs it says follow, a line each (see worker.serve_collect)."""
    deadline = time.monotonic() + timeout
    reply = worker.request({"op": "collect", "processes": processes}, timeout)
    following = int(reply.pop("gpus_follow", 0))
    if following:
        reply["gpus"] = [
            worker.read_line(max(0.0, deadline - time.monotonic())) for _ in range(following)
        ]
    return reply
