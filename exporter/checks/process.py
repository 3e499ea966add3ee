"""The process check's probe: find the process, report that it lives and what it holds.

`medic_process_start_time_seconds` changes when the process restarted: a crash loop shows
as a staircase even when every look finds it alive.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import psutil

from exporter.checks.base import Observation
from exporter.config.processcheck import ProcessCheckConfig


@dataclass(frozen=True, slots=True)
class ProcessFact:
    """The process found (pid 0: none)."""

    pid: int
    rss: int | None = None
    open_files: int | None = None
    start_time: float | None = None


class ProcessProbe:
    """One look per run: by pid file, systemd unit (MainPID) or name."""

    def __init__(self, config: ProcessCheckConfig) -> None:
        self._config = config
        self._pattern = re.compile(config.process) if config.process else None

    def _find(self) -> tuple[int, str]:
        """(pid, why none) of the process."""
        config = self._config
        if config.pidfile is not None:
            return self._from_pidfile(config.pidfile)
        if config.unit is not None:
            return self._from_unit(config.unit)
        assert self._pattern is not None
        for proc in psutil.process_iter(["name", "cmdline"]):
            text = f"{proc.info.get('name') or ''} {' '.join(proc.info.get('cmdline') or [])}"
            if self._pattern.search(text):
                return proc.pid, ""
        return 0, f"no process matches {self._pattern.pattern!r}"

    @staticmethod
    def _from_pidfile(path: str) -> tuple[int, str]:
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            return 0, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        return (int(text), "") if text.isdigit() else (0, f"{path}: no pid in it")

    def _from_unit(self, unit: str) -> tuple[int, str]:
        try:
            shown = subprocess.run(
                ["systemctl", "show", "--property=MainPID", "--value", unit],  # noqa: S607
                capture_output=True, text=True, timeout=self._config.timeout, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 0, f"cannot ask systemd about {unit}: {exc}"
        pid = shown.stdout.strip()
        if shown.returncode != 0 or not pid.isdigit():
            return 0, f"systemctl show {unit}: {shown.stderr.strip() or pid}"
        return (int(pid), "") if pid != "0" else (0, f"{unit} has no main process")

    def __call__(self) -> Observation:
        """Alive, with its RSS and open files, within the configured bounds."""
        pid, why = self._find()
        if not pid:
            return Observation((ProcessFact(0),), (why,))
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return Observation((ProcessFact(0),), (f"pid {pid} is a zombie",))
                rss = proc.memory_info().rss
                start = proc.create_time()
                try:
                    files: int | None = proc.num_fds()
                except psutil.AccessDenied:
                    files = None
        except psutil.NoSuchProcess:
            return Observation((ProcessFact(0),), (f"pid {pid} is not running",))
        except psutil.AccessDenied as exc:
            return Observation((ProcessFact(pid),), (f"pid {pid}: {exc}",))
        problems = []
        config = self._config
        if config.max_rss is not None and rss > config.max_rss:
            problems.append(f"pid {pid} resident memory {rss} bytes, above {config.max_rss}")
        if (
            config.max_open_files is not None
            and files is not None
            and files > config.max_open_files
        ):
            problems.append(f"pid {pid} has {files} open files, above {config.max_open_files}")
        return Observation((ProcessFact(pid, rss, files, start),), tuple(problems))
