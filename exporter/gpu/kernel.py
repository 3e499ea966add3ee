"""XID lines from the kernel log, with the process that hit the fault, routed to the
application's own ladder: `NVRM: Xid (PCI:0000:3b:00): 31, pid=4242, name=python3, ...`.

NVML's XID events carry no pid; the kernel's line does. For an XID NVIDIA's catalog files
under `restart_app`, the pid's systemd unit (from /proc/PID/cgroup) or its process name picks
the configured app, and that app's failure type runs with the XID, pid, process name, unit
and PCI address as labels: only that application is restarted. A storm of one XID (a
teardown prints thousands) is one episode per GPU, XID, app and `storm_window`: the rest
are duplicates of it. Other buckets are the GPU's verdict's business, never an app's.

Sources: /dev/kmsg (root or CAP_SYSLOG), `journalctl -k`, or a file (tests, and hosts that
log the kernel to a file).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exporter.checks.logs import FileFollower, JournalFollower
from exporter.config.checks import GpuCheckConfig, XidAppConfig
from exporter.gpu.xids import BUCKETS, XidClassifier

log = logging.getLogger(__name__)

XID_LINE = re.compile(
    r"NVRM: Xid \(PCI:(?P<pci>[0-9A-Fa-f:.]+)\): (?P<xid>\d+)"
    r"(?:, pid=(?P<pid>\d+|'<unknown>'|<unknown>))?(?:, name=(?P<name>[^,]*))?"
)
RESULTS = ("accepted", "duplicate", "unmatched", "refused")
"""What became of a restart_app XID line: an episode, one already open for its storm
window, no configured app for its process, or the engine said no."""
POLL = 0.5


@dataclass(frozen=True, slots=True)
class KernelXid:
    """One parsed XID line."""

    pci: str
    xid: int
    pid: int | None
    name: str


def parse(line: str) -> KernelXid | None:
    """The XID in a kernel log line, or None."""
    found = XID_LINE.search(line)
    if found is None:
        return None
    pid = found.group("pid")
    return KernelXid(found.group("pci").lower(), int(found.group("xid")),
                     int(pid) if pid and pid.isdigit() else None,
                     (found.group("name") or "").strip())  # fmt: skip


class Lines(Protocol):
    """A source of new log lines."""

    def read(self, limit: int) -> list[str]:
        """Lines since the last call."""
        ...

    def close(self) -> None:
        """Release the source."""
        ...


class KmsgFollower:
    """New records of /dev/kmsg: one record per read(), from the end of the ring at start;
    EPIPE (records overwritten before we read them) skips ahead, as dmesg does."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def read(self, limit: int) -> list[str]:
        """The messages of the records written since the last call."""
        lines: list[str] = []
        while len(lines) < limit:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                raise
            # "6,1234,5678,-;NVRM: Xid ...": the message follows the first ';'.
            text = record.decode("utf-8", errors="replace")
            lines.append(text.split(";", 1)[-1].rstrip("\n"))
        return lines

    def close(self) -> None:
        """Close the device."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


def open_source(source: str) -> Lines:
    """kmsg, journal, or a file path."""
    if source == "kmsg":
        return KmsgFollower()
    if source == "journal":
        return JournalFollower(None, kernel=True)
    return FileFollower(source, from_start=False)


class KernelXids:
    """Follows the kernel log on a thread of its own; counts and routes XID lines."""

    def __init__(
        self,
        config: GpuCheckConfig,
        submit: Callable[[str, dict[str, str], str], str],
        proc_root: Path = Path("/proc"),
        clock: Callable[[], float] = time.time,
        source: Callable[[str], Lines] = open_source,
    ) -> None:
        self._config = config
        self._submit = submit
        self._proc = proc_root
        self._clock = clock
        self._open = source
        self._classifier = XidClassifier(config.xid_buckets)
        self._apps = [(app, re.compile(app.process) if app.process else None)
                      for app in config.apps]  # fmt: skip
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {
            (b, r): 0 for b in BUCKETS for r in (*RESULTS, "seen")
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._window = -1
        self._sent: set[str] = set()
        self.version = 0

    def start(self) -> None:
        """Open the source here (where reading starts: lines written after start() returns
        are news, whenever the thread gets to them), then follow it on a thread."""
        source = str(self._config.kernel_log)
        try:
            lines = self._open(source)
        except OSError as exc:
            log.warning("cannot read the kernel log from %s: %s; XIDs come from NVML only",
                        source, exc)  # fmt: skip
            return
        lines.read(0)  # journalctl starts on its first read: from now, too
        self._thread = threading.Thread(target=self._run, args=(lines,),
                                        name="medic-kernel-xid", daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the thread ends within one poll)."""
        self._stop.set()

    def _run(self, lines: Lines) -> None:
        try:
            while not self._stop.wait(POLL):
                for line in lines.read(1 << 20):
                    try:
                        self.handle(line)
                    except Exception:  # one bad line (or a failing submit) stops nothing
                        log.exception("kernel XID line not handled: %r", line[:200])
        finally:
            lines.close()

    def _count(self, bucket: str, result: str) -> None:
        with self._lock:
            self.counts[(bucket, result)] += 1
            self.version += 1

    def app_of(self, fault: KernelXid) -> tuple[XidAppConfig | None, str, str]:
        """The configured app of the faulting process, with its unit and name."""
        unit, name = "", fault.name
        if fault.pid is not None:
            with contextlib.suppress(OSError):
                cgroup = (self._proc / str(fault.pid) / "cgroup").read_text()
                for part in reversed(cgroup.strip().split("/")):
                    if part.endswith((".service", ".scope")):
                        unit = part
                        break
            with contextlib.suppress(OSError):
                name = name or (self._proc / str(fault.pid) / "comm").read_text().strip()
        for app, pattern in self._apps:
            if (app.unit is not None and app.unit == unit) or (
                pattern is not None and pattern.search(name)
            ):
                return app, unit, name
        return None, unit, name

    def handle(self, line: str) -> None:
        """One kernel log line: counted if an XID, routed if an application's fault."""
        fault = parse(line)
        if fault is None:
            return
        bucket = self._classifier.bucket(fault.xid)
        self._count(bucket, "seen")
        if bucket != "restart_app":
            return
        app, unit, name = self.app_of(fault)
        if app is None:
            self._count(bucket, "unmatched")
            log.info("XID %d from pid %s (%s, %s): no app configured for it", fault.xid,
                     fault.pid, name or "?", unit or "no unit")  # fmt: skip
            return
        window = int(self._clock() // self._config.storm_window)
        key = f"kernel-xid:{fault.pci}:{fault.xid}:{app.failure_type}:{window}"
        if self._window != window:  # keys of earlier windows can no longer repeat
            self._window, self._sent = window, set()
        if key in self._sent:
            # A storm: the episode is open already. Not even submitted, so that 5,000 lines
            # cost no journal rows (the engine would record each duplicate).
            self._count(bucket, "duplicate")
            return
        labels = {"xid": str(fault.xid), "bucket": bucket, "pci": fault.pci,
                  "pid": str(fault.pid or ""), "process_name": name, "unit": unit}  # fmt: skip
        result = self._submit(app.failure_type, labels, key)
        if result in ("accepted", "duplicate"):
            self._sent.add(key)
        self._count(bucket, result if result in RESULTS else "refused")
