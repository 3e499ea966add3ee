"""The `process` action: restart a server's whole process group from its pid file.

SIGTERM to the group, `grace` to exit, SIGKILL to what is left, and the tree must be gone
within the hygiene deadline before anything starts again: a model server's engine processes outlive
a killed parent and keep its ports and GPU memory (the model-server notes, "Restart
hygiene"), so the parent alone is never enough. Then `start` (an argv list, in a session
of its own so that it outlives medic) brings it back; verify the rung with a real request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

from exporter.config.recovery import ProcessActionConfig
from exporter.recovery.actions import ActionContext, run_until_cut_off
from exporter.recovery.external import base_environment, read_pid
from exporter.recovery.hygiene import (
    GpuProcesses,
    OldTree,
    capture,
    cgroup_pids,
    settle,
    wait_gone,
)
from exporter.recovery.types import ActionResult


class ProcessRestartAction:
    """Stop a process group or a cgroup's processes (TERM, grace, KILL, gone), then start
    it again."""

    def __init__(
        self,
        name: str,
        config: ProcessActionConfig,
        gpu: GpuProcesses | None = None,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
    ) -> None:
        self.name = name
        self._config = config
        self._gpu = gpu
        self._cgroups = cgroup_root

    def _stop_tree(self, tree: OldTree, what: str, cut_off: threading.Event,
                   terminate: Callable[[], None]) -> tuple[bool, str]:  # fmt: skip
        """SIGTERM (the caller's way), grace, then hygiene: SIGKILL what is left, wait until
        all of it is gone (and its GPU memory released, if asked)."""
        terminate()
        wait_gone(tree, self._config.grace, cut_off=cut_off)
        # SIGKILL after the grace is this action's own stop, whatever hygiene says.
        hygiene = self._config.hygiene.model_copy(update={"kill_leftovers": True})
        clean, seen = settle(tree, hygiene, self._gpu, cut_off=cut_off)
        return clean, f"stopped {what}: {seen}"

    def _stop_cgroup(self, cut_off: threading.Event) -> tuple[bool, str]:
        """Every process of the cgroup and below it."""
        cgroup = str(self._config.cgroup)
        pids = cgroup_pids(self._cgroups, cgroup)
        if not pids:
            return True, f"no process in cgroup {cgroup}"
        if {os.getpid(), 1} & set(pids):
            return False, f"refusing to stop cgroup {cgroup}: medic or pid 1 is in it"
        tree = capture(pids)

        def terminate() -> None:
            for process in tree.processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.terminate()

        return self._stop_tree(tree, f"cgroup {cgroup}", cut_off, terminate)

    def _stop_group(self, pid: int, cut_off: threading.Event) -> tuple[bool, str]:
        """The pid's whole process group."""
        pgid = os.getpgid(pid)
        if pid <= 1 or pgid in (0, 1, os.getpgrp()):
            return False, f"refusing to stop process group {pgid} of pid {pid}"
        tree = capture([pid, pgid])
        return self._stop_tree(tree, f"process group {pgid}", cut_off,
                               lambda: os.killpg(pgid, signal.SIGTERM))  # fmt: skip

    def _stop_any(self, cut_off: threading.Event) -> tuple[bool, str]:
        config = self._config
        if config.cgroup is not None:
            return self._stop_cgroup(cut_off)
        try:
            pid = read_pid(str(config.pidfile))
        except (OSError, ValueError) as exc:
            return False, f"cannot read a pid from {config.pidfile}: {exc}"
        if not psutil.pid_exists(pid):
            return True, f"pid {pid} was not running"
        return self._stop_group(pid, cut_off)

    def _restart(self, cut_off: threading.Event) -> ActionResult:
        config = self._config
        stopped_ok, stopped = self._stop_any(cut_off)
        if not stopped_ok:
            return ActionResult(False, f"{stopped}; not started")
        if not config.start:
            return ActionResult(True, stopped)
        # setsid --fork: the server runs in a session of its own, reparented away from
        # medic (it outlives medic, and never lingers as medic's zombie).
        try:
            launcher = subprocess.run(
                ["setsid", "--fork", *config.start], env=base_environment(os.environ),  # noqa: S607
                cwd=config.cwd or "/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ActionResult(False, f"{stopped}; cannot start {config.start[0]}: {exc}")
        if launcher.returncode != 0:
            why = f"setsid exited with status {launcher.returncode}"
            return ActionResult(False, f"{stopped}; cannot start {config.start[0]}: {why}")
        return ActionResult(True, f"{stopped}; started {config.start[0]}")

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Stop the group, wait until it is gone, start again."""
        if ctx.dry_run:
            return ActionResult(True, f"would send {self._config.does()}")
        result: ActionResult = await run_until_cut_off(self._restart)
        return result
