"""The GPU check: one NVML round per run, in a helper process it can abandon if it hangs."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from exporter.checks.base import Observation
from exporter.checks.runner import CallStuck, CallTimeout
from exporter.clock import Clock, SystemClock
from exporter.gpu.client import ABSENT_RETRY, collect, worker_argv
from exporter.gpu.facts import GpuDevice, GpuHealth, GpuProcess, NvmlState
from exporter.gpu.pci import count_gpus
from exporter.gpu.reader import LIBRARY_NOT_FOUND
from exporter.helper import WorkerDied, WorkerProcess, WorkerTimeout, let_go

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
HEALTH_NAMES = tuple(GpuHealth.__dataclass_fields__)


def _device(raw: dict[str, Any], driver: str) -> GpuDevice:
    memory = raw.get("memory") or {}
    processes = raw.get("processes")
    health = raw.get("health") or {}
    return GpuDevice(
        index=int(raw["index"]),
        uuid=str(raw["uuid"]),
        name=str(raw["name"]),
        driver=driver,
        memory_total=memory.get("total"),
        memory_used=memory.get("used"),
        memory_free=memory.get("free"),
        memory_reserved=memory.get("reserved"),
        utilization=raw.get("utilization"),
        temperature=raw.get("temperature"),
        power_watts=raw.get("power_w"),
        energy_joules=raw.get("energy_j"),
        processes=None
        if processes is None
        else tuple(GpuProcess(int(p["pid"]), str(p["name"]), p.get("used")) for p in processes),
        serial=health.get("serial"),
        reset_required=bool(raw.get("reset_required")),
        health=GpuHealth(**{k: health.get(k) for k in HEALTH_NAMES}) if health else None,
    )


class GpuCheck:
    """Reads every GPU through NVML in a helper process.

    A helper that does not answer within `timeout` is abandoned (its stdin closed, never
    killed) and `stuck()` stays true until it exits; the next run starts a fresh helper.
    Lifecycle errors drop all GPU series and back off before NVML is initialised again.
    """

    def __init__(
        self,
        *,
        expected: int | Literal["auto"] = 0,
        processes: bool = False,
        timeout: float = 5.0,
        max_memory_used_ratio: float = 1.0,
        nvml_module: str = "pynvml",
        clock: Clock | None = None,
        max_stuck: int = 2,
        env: dict[str, str] | None = None,
        sysfs: Path = Path("/sys"),
        absent_retry: float = ABSENT_RETRY,
    ) -> None:
        """expected: GPUs that should answer; "auto": the NVIDIA GPUs on the PCI bus;
        absent_retry: seconds between looks for an NVML library that is not there."""
        self._absent_retry = absent_retry
        self._expected_setting = expected
        self._sysfs = sysfs
        self._expected = 0 if expected == "auto" else expected
        self._processes = processes
        self._timeout = timeout
        self._max_used = max_memory_used_ratio
        self._argv = worker_argv(nvml_module)
        self._env = env
        self._clock = clock or SystemClock()
        self._max_stuck = max_stuck
        self._lock = threading.Lock()
        self._worker: WorkerProcess | None = None
        self._abandoned: list[WorkerProcess] = []
        self._backoff = 0.0
        self._retry_at = 0.0
        self._last_error = ""
        self._was_up: bool | None = None
        self._closed = False

    # --- the probe ----------------------------------------------------------------------
    def __call__(self) -> Observation:
        """One round: every GPU's figures, or NVML's state when it cannot answer."""
        with self._lock:
            return self._round()

    def stuck(self) -> bool:
        """True while an abandoned helper has not come back from the driver.

        Lock-free on purpose: it is read while rendering, and a round may hold the lock
        for up to its timeout.
        """
        return any(worker.alive() for worker in list(self._abandoned))

    def close(self) -> None:
        """Let every helper go; none is waited for.

        Not under the round's lock: a round can hold it for the whole NVML timeout while a
        helper hangs, and shutdown must not wait for that. A running round then finds its
        helper released and ends.
        """
        self._closed = True
        worker, abandoned = self._worker, list(self._abandoned)
        for each in [*abandoned, *([worker] if worker else [])]:
            let_go(each)

    # --- internals ----------------------------------------------------------------------
    def _round(self) -> Observation:
        self._reap()
        if self._expected_setting == "auto":
            self._expected = count_gpus(self._sysfs) or 0
        now = self._clock.monotonic()
        if now < self._retry_at:
            wait = self._retry_at - now
            return self._down(self._last_error, f"next try in {wait:.0f}s")
        worker = self._ensure_worker()
        try:
            reply = collect(worker, self._processes, self._timeout)
        except WorkerTimeout:
            self._abandon(worker)
            raise CallTimeout(f"NVML did not answer within {self._timeout:g}s") from None
        except WorkerDied as exc:
            self._drop(worker)
            return self._failed(str(exc), code=None)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            reason = f"{error.get('name', 'error')}: {error.get('message', '')}".rstrip(": ")
            if error.get("code") == LIBRARY_NOT_FOUND:
                self._drop(worker)  # it exits by itself: no helper waits on a CPU host
            return self._failed(reason, code=error.get("code"))
        return self._up(reply)

    def _ensure_worker(self) -> WorkerProcess:
        if self._closed:
            raise CallStuck("GPU check is closed")
        if self._worker is not None and not self._worker.alive():
            self._drop(self._worker)
        if self._worker is None:
            if len(self._abandoned) >= self._max_stuck:
                raise CallStuck(f"{len(self._abandoned)} NVML helpers are stuck in the driver")
            self._worker = WorkerProcess(self._argv, self._env)
            if self._closed:  # close() ran while it started and may not have seen it
                self._drop(self._worker)
                raise CallStuck("GPU check is closed")
        return self._worker

    def _abandon(self, worker: WorkerProcess) -> None:
        log.warning("NVML helper pid %d stopped answering; abandoning it", worker.pid)
        worker.release()
        self._abandoned.append(worker)
        self._worker = None

    def _drop(self, worker: WorkerProcess) -> None:
        let_go(worker)
        if self._worker is worker:
            self._worker = None

    def _reap(self) -> None:
        still = []
        for worker in self._abandoned:
            if worker.alive():
                still.append(worker)
            else:
                log.info("abandoned NVML helper pid %d has exited", worker.pid)
                worker.close_pipes()
        self._abandoned = still

    def _failed(self, reason: str, code: int | None) -> Observation:
        if code == LIBRARY_NOT_FOUND:
            self._backoff = self._absent_retry
        else:
            self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
        self._retry_at = self._clock.monotonic() + self._backoff
        self._last_error = reason
        return self._down(reason, "", code)

    def _down(self, reason: str, note: str, code: int | None = None) -> Observation:
        absent = code == LIBRARY_NOT_FOUND or "LibraryNotFound" in reason
        cpu_host = absent and self._expected == 0
        if self._was_up is not False:
            if absent:
                log.log(logging.INFO if cpu_host else logging.WARNING,
                        "NVML unavailable: %s; no NVML helper runs, GPU metrics are off, and "
                        "medic looks for the library again every %gs", reason,
                        self._absent_retry)  # fmt: skip
            else:
                log.warning("NVML unavailable: %s; GPU metrics are off until it answers", reason)
        self._was_up = False
        state = NvmlState(up=False, count=0, expected=self._expected)
        if cpu_host:
            return Observation((state,))  # no NVML, no GPU expected: a CPU host, all is well
        detail = f"NVML unavailable: {reason}" + (f" ({note})" if note else "")
        return Observation((state,), (detail,))

    def _up(self, reply: dict[str, Any]) -> Observation:
        driver = str(reply.get("driver", ""))
        devices = [_device(raw, driver) for raw in reply.get("gpus", [])]
        if self._was_up is not True:
            log.info("NVML up: %d GPUs, driver %s", len(devices), driver)
        self._was_up = True
        self._backoff = self._retry_at = 0.0
        problems = [
            f"GPU {e.get('gpu')}: {e.get('name')}: {e.get('message')}"
            for e in reply.get("errors", [])
        ]
        if len(devices) < self._expected:
            problems.append(f"{len(devices)} GPUs answer, {self._expected} expected")
        for device in devices:
            if device.reset_required:
                problems.append(f"GPU {device.index} requires a reset (the driver answers "
                                "NVML_ERROR_RESET_REQUIRED)")  # fmt: skip
            if device.memory_total and device.memory_used is not None:
                ratio = (device.memory_used + (device.memory_reserved or 0)) / device.memory_total
                if ratio > self._max_used:
                    problems.append(
                        f"GPU {device.index} memory {ratio:.0%} used, above {self._max_used:.0%}"
                    )
        state = NvmlState(up=True, count=len(devices), expected=self._expected, driver=driver)
        return Observation((state, *devices), tuple(problems))
