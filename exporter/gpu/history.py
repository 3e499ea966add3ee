"""Escalation by history: per GPU, keyed by its board serial (which survives re-imaging and
driver changes), the faults, resets and reboots seen, in the journal. The same fault that
survives `escalate_after_resets` resets escalates to `reboot_node`; one that survives
`escalate_after_reboots` reboots escalates to `inspect_hardware` (gpud's anchor: two
reboots, then hardware inspection; the notes, "Escalation by history"). Each escalation is
journaled, counted and shown in the GPU's verdict.

- A fault is a GPU-level verdict (reset, reboot and the like) with its source: an XID's
  code (`xid:95`), or the driver's own (`driver:reset_gpu`, `reset_required`, `row_remap`).
- A reset is a GPU whose verdict asked for one and no longer does, on the same boot.
- A reboot is a new boot id (/proc/sys/kernel/random/boot_id) since the last record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from exporter.gpu.facts import GpuDevice
from exporter.gpu.verdict import Verdict
from exporter.storage.sqlite import Database

TABLE = """
CREATE TABLE IF NOT EXISTS gpu_history (
    id       INTEGER PRIMARY KEY,
    serial   TEXT NOT NULL,
    at       REAL NOT NULL,
    kind     TEXT NOT NULL,
    fault    TEXT NOT NULL DEFAULT '',
    detail   TEXT NOT NULL DEFAULT '',
    boot_id  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS gpu_history_serial ON gpu_history (serial, id);
"""
RESET_CLASS = frozenset({"reset_gpu", "drain_and_reset", "drain_p2p", "bus_reset",
                         "recover_imex_domain"})  # fmt: skip
"""Verdicts a GPU reset answers."""
GPU_LEVEL = RESET_CLASS | {"reboot_node"}
"""Verdicts that are faults of the GPU (not of an application, not a person's call)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a GPU's history."""

    serial: str
    at: float
    kind: str
    """fault, reset, reboot or escalation."""
    fault: str
    detail: str
    boot_id: str


def read_boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    """This boot's id ("" where the kernel has none)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class GpuHistory:
    """Records what each GPU went through and escalates faults that outlive their remedy."""

    def __init__(
        self,
        db: Database | None,
        resets: int = 2,
        reboots: int = 2,
        clock: Callable[[], float] = time.time,
        boot_id: Callable[[], str] = read_boot_id,
    ) -> None:
        self._db = db
        self._resets, self._reboots = resets, reboots
        self._clock = clock
        self._boot = boot_id()
        self._lock = threading.Lock()
        self._entries: list[Entry] = []  # the whole history when there is no journal
        self._last: dict[str, Verdict] = {}
        self._counts: dict[str, dict[int, int]] = {}
        self.escalated: dict[str, str] = {}
        """serial -> the action its history escalated it to."""
        self.escalations: dict[str, int] = {"reboot_node": 0, "inspect_hardware": 0}
        if db is not None:
            db.script(TABLE)
            rows = db.query("SELECT serial, at, kind, fault, detail, boot_id FROM gpu_history "
                            "ORDER BY id")  # fmt: skip
            self._entries = [Entry(*row) for row in rows]
        self._note_reboot()
        for entry in self._entries:  # escalations stand across restarts, until the GPU's
            if entry.kind == "escalation":  # history is cleared
                to = entry.detail.rsplit(": ", 1)[-1]
                if to == "inspect_hardware" or self.escalated.get(entry.serial) is None:
                    self.escalated[entry.serial] = to

    def entries(self, serial: str | None = None) -> list[Entry]:
        """A GPU's history (every GPU's without a serial), oldest first."""
        with self._lock:
            return [e for e in self._entries if serial is None or e.serial == serial]

    def _add(self, serial: str, kind: str, fault: str = "", detail: str = "") -> None:
        entry = Entry(serial, self._clock(), kind, fault, detail, self._boot)
        self._entries.append(entry)
        if self._db is not None:
            self._db.write(
                "INSERT INTO gpu_history (serial, at, kind, fault, detail, boot_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (entry.serial, entry.at, entry.kind, entry.fault, entry.detail, entry.boot_id),
            )

    def _note_reboot(self) -> None:
        """A boot id other than the last recorded one: every known GPU went through a
        reboot."""
        with self._lock:
            last: dict[str, str] = {}
            for entry in self._entries:
                last[entry.serial] = entry.boot_id
            for serial, boot in last.items():
                if boot and self._boot and boot != self._boot:
                    self._add(serial, "reboot", detail=f"boot {boot} -> {self._boot}")

    def _survived(self, serial: str, fault: str) -> tuple[int, int]:
        """Resets and reboots since this fault first appeared on the GPU."""
        rows = [e for e in self._entries if e.serial == serial]
        first = next((i for i, e in enumerate(rows) if e.kind == "fault" and e.fault == fault),
                     None)  # fmt: skip
        if first is None:
            return 0, 0
        later = rows[first + 1 :]
        return (sum(e.kind == "reset" for e in later), sum(e.kind == "reboot" for e in later))

    def _escalate(self, serial: str, fault: str | None) -> None:
        known = {e.fault for e in self._entries if e.serial == serial and e.kind == "fault"}
        faults = [fault] if fault else sorted(known)
        for each in faults:
            resets, reboots = self._survived(serial, each)
            to = ("inspect_hardware" if reboots >= self._reboots
                  else "reboot_node" if resets >= self._resets else None)  # fmt: skip
            if to is None or self.escalated.get(serial) in (to, "inspect_hardware"):
                continue
            self.escalated[serial] = to
            if fault is not None:  # a new escalation (not one re-read at start)
                self.escalations[to] += 1
                self._add(
                    serial,
                    "escalation",
                    each,
                    f"{each} survived {resets} resets and {reboots} reboots: {to}",
                )

    def observe(self, devices: Iterable[tuple[GpuDevice, Verdict, dict[int, int]]]) -> None:
        """One GPU round: each GPU with its verdict and its counts of GPU-level XIDs (those
        whose catalog bucket asks for a reset or a reboot); a count that grew is a fault."""
        with self._lock:
            for device, found, counts in devices:
                serial = device.serial
                if not serial:
                    continue  # no serial, no history that survives anything
                before = self._last.get(serial)
                self._last[serial] = found
                # Only the driver says a reset happened: its verdict cleared. (A catalog
                # verdict just ages out of its window.)
                if before is not None and self._reset_by(before, found):
                    self._add(serial, "reset", detail=f"{before.action} cleared")
                seen = self._counts.setdefault(serial, {})
                faults = [f"xid:{x}" for x, n in sorted(counts.items()) if n > seen.get(x, 0)]
                seen.update(counts)
                if found.action in GPU_LEVEL and found.source != "catalog":
                    faults.append(f"{found.source}:{found.action}")
                for fault in faults:
                    if fault.startswith("xid:") or not self._seen_since_last_remedy(serial, fault):
                        self._add(serial, "fault", fault, found.detail)
                    self._escalate(serial, fault)

    @staticmethod
    def _reset_by(before: Verdict, now: Verdict) -> bool:
        """The driver's reset verdict cleared (a catalog one only ages out of its window)."""
        return (before.action in RESET_CLASS and before.source != "catalog"
                and now.action not in GPU_LEVEL)  # fmt: skip

    def _seen_since_last_remedy(self, serial: str, fault: str) -> bool:
        """Recorded already, with no reset or reboot after it: the same occurrence."""
        for entry in reversed(self._entries):
            if entry.serial != serial:
                continue
            if entry.kind in ("reset", "reboot"):
                return False
            if entry.kind == "fault" and entry.fault == fault:
                return True
        return False
