"""Restart hygiene: between the stop and the start of a restart, the old process tree is gone
(the whole tree or cgroup, not the parent alone) and the GPU memory its processes held is
released, within a deadline.

A model server's engine and worker processes outlive a killed parent and keep their GPU
memory, so the next start runs out of memory (the model-server notes, "Restart hygiene").
The tree is captured before the stop, as psutil processes (which know their start time, so
a reused pid is never mistaken for an old one); after the stop, what is left of it is
killed, if the config says so, and waited for; then NVML is asked, until the deadline, whether
any of the old pids still holds memory.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from exporter.config.recovery import HygieneConfig
from exporter.gpu.client import collect, worker_argv
from exporter.helper import WorkerDied, WorkerProcess, WorkerTimeout, let_go

POLL = 0.05


class GpuProcesses(Protocol):
    """pid -> GPU memory it holds (bytes, summed over GPUs; None when NVML cannot tell)."""

    def __call__(self) -> dict[int, int | None]: ...


class GpuUnreadable(Exception):
    """NVML failed or hung: whether the memory is released is not known."""


class NvmlProcesses:
    """The compute processes NVML lists, asked of the GPU check's helper process (one per
    read, let go afterwards): on a sick driver any NVML call can block in the kernel, and
    that must never be medic's own process (README, "GPUs")."""

    def __init__(self, module: str = "pynvml", timeout: float = 5.0) -> None:
        self._argv = worker_argv(module)
        self._timeout = timeout

    def __call__(self) -> dict[int, int | None]:
        """pid -> GPU memory summed over GPUs, or raise GpuUnreadable."""
        try:
            worker = WorkerProcess(self._argv)
        except OSError as exc:
            raise GpuUnreadable(f"cannot start the NVML helper: {exc}") from exc
        try:
            reply = collect(worker, True, self._timeout)
        except WorkerTimeout:
            raise GpuUnreadable(f"NVML did not answer within {self._timeout:g}s") from None
        except WorkerDied as exc:
            raise GpuUnreadable(f"the NVML helper died: {exc}") from None
        finally:
            let_go(worker)  # a hung one exits once the driver lets it go
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise GpuUnreadable(f"NVML: {error.get('name')}: {error.get('message', '')}")
        held: dict[int, int | None] = {}
        for gpu in reply.get("gpus", []):
            for proc in gpu.get("processes") or []:
                pid, used = int(proc["pid"]), proc.get("used")
                before = held.get(pid, 0)
                held[pid] = None if used is None or before is None else before + int(used)
        return held


@dataclass(frozen=True, slots=True)
class OldTree:
    """The processes of the instance being restarted, captured before its stop."""

    processes: tuple[psutil.Process, ...]

    @property
    def pids(self) -> list[int]:
        """Their pids, in capture order."""
        return [p.pid for p in self.processes]

    def alive(self) -> list[psutil.Process]:
        """Those still running (a zombie counts as gone: it holds nothing)."""
        left = []
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(process)
        return left


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def capture(pids: Iterable[int]) -> OldTree:
    """Each pid, its descendants, and the members of any process group one of them leads."""
    found: dict[int, psutil.Process] = {}
    leaders = set()
    for pid in pids:
        root = _process(pid) if pid > 1 else None
        if root is None:
            continue
        found.setdefault(pid, root)
        with contextlib.suppress(psutil.Error):
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid and pid != os.getpgrp():
                leaders.add(pid)
    if leaders:
        for process in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(process.pid) in leaders:
                    found.setdefault(process.pid, process)
    found.pop(os.getpid(), None)  # never medic itself
    return OldTree(tuple(found.values()))


def cgroup_pids(root: Path, cgroup: str) -> list[int]:
    """Every pid in a cgroup (v2) and the cgroups below it; [] when it cannot be read."""
    base = root / cgroup.lstrip("/")
    if not cgroup or not base.is_dir():
        return []
    pids: list[int] = []
    for procs in [base / "cgroup.procs", *base.rglob("*/cgroup.procs")]:
        with contextlib.suppress(OSError, ValueError):
            pids.extend(int(line) for line in procs.read_text().split())
    return pids


def _mib(used: int | None) -> str:
    return "an unknown amount" if used is None else f"{used / 2**20:.0f} MiB"


def wait_gone(tree: OldTree, timeout: float, clock: Callable[[], float] = time.monotonic,
              cut_off: threading.Event | None = None) -> list[psutil.Process]:  # fmt: skip
    """Wait up to `timeout` for every process of the tree to end; those still alive.

    Not psutil.wait_procs: for processes that are not medic's children it waits until they
    are reaped, and a zombie whose new parent reaps late is dead already."""
    deadline = clock() + timeout
    alive = tree.alive()
    while alive and clock() < deadline and not (cut_off and cut_off.is_set()):
        time.sleep(POLL)
        alive = tree.alive()
    return alive


def _tree_gone(tree: OldTree, config: HygieneConfig, deadline: float,
               clock: Callable[[], float], cut_off: threading.Event | None,
               ) -> tuple[bool, str]:  # fmt: skip
    alive = tree.alive()
    killed = 0
    if alive and config.kill_leftovers:
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()  # a stopped (SIGSTOP) process dies of SIGKILL too
                killed += 1
    alive = wait_gone(tree, deadline - clock(), clock, cut_off)
    if alive:
        pids = ", ".join(str(p.pid) for p in alive)
        return False, f"old process tree not gone {config.deadline:g}s after the stop: {pids}"
    count = len(tree.processes)
    gone = f"old tree of {count} process{'' if count == 1 else 'es'} gone"
    return True, gone + (f" ({killed} killed after the stop)" if killed else "")


def _gpu_released(tree: OldTree, config: HygieneConfig, gpu: GpuProcesses, *, started: float,
                  deadline: float, clock: Callable[[], float],
                  cut_off: threading.Event | None) -> tuple[bool, str]:  # fmt: skip
    old = set(tree.pids)
    while True:
        unreadable = ""
        try:
            holding = {pid: used for pid, used in gpu().items() if pid in old}
        except GpuUnreadable as exc:
            holding, unreadable = {}, str(exc)
        if not holding and not unreadable:
            return True, f"GPU memory released after {clock() - started:.1f}s"
        if clock() >= deadline or (cut_off and cut_off.is_set()):
            if unreadable:
                return False, f"GPU memory not known to be released: {unreadable}"
            held = ", ".join(f"pid {pid} ({_mib(used)})" for pid, used in sorted(holding.items()))
            return False, f"GPU memory still held {config.deadline:g}s after the stop by {held}"
        time.sleep(POLL)


def settle(
    tree: OldTree,
    config: HygieneConfig,
    gpu: GpuProcesses | None,
    clock: Callable[[], float] = time.monotonic,
    cut_off: threading.Event | None = None,
) -> tuple[bool, str]:
    """After the stop: kill and wait out what is left of the tree, then wait until NVML
    shows none of its pids holding GPU memory; (clean, what was seen). Blocking; a set
    `cut_off` (the rung has ended) ends the waits as unclean."""
    started = clock()
    deadline = started + config.deadline
    seen = []
    if config.tree:
        gone, said = _tree_gone(tree, config, deadline, clock, cut_off)
        if not gone:
            return False, said
        seen.append(said)
    if config.gpu_memory:
        if gpu is None:
            return False, "; ".join([*seen, "no NVML to ask whether GPU memory is released"])
        released, said = _gpu_released(
            tree, config, gpu, started=started, deadline=deadline, clock=clock, cut_off=cut_off
        )
        seen.append(said)
        if not released:
            return False, "; ".join(seen)
    if cut_off is not None and cut_off.is_set():
        return False, "; ".join([*seen, "cut off: the rung has ended"])
    return True, "; ".join(seen) or "no hygiene asked"
