"""NVIDIA's XID catalog as data (exporter/gpu/data/xid_catalog.csv), and the bucket medic
files each XID under: what the catalog's immediate action asks of the host.

- `restart_app`: the process that hit the fault (RESTART_APP; XID 94, a contained error);
- `reset_gpu`: RESET_GPU, and XID 48's workflow (alone: reset);
- `reboot_node`: RESTART_BM, RESTART_VM (XID 79, fallen off the bus);
- `inspect_hardware`: a person decides: CONTACT_SUPPORT, CHECK_*, UPDATE_SWFW, the NVLink
  decode workflows, rows without an action, and any XID the catalog does not list (the safe
  default: medic never guesses a disruptive action);
- `ignore`: IGNORE, and XID 45 (preemptive cleanup after another XID, which decides).

XID 154 (the driver's recovery action changed) is the driver's verdict itself: its bucket
is `inspect_hardware` in the table, and the verdict reads the driver's field instead.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import get_args

from exporter.config.checks import XidBucket

log = logging.getLogger(__name__)

Bucket = XidBucket
BUCKETS: tuple[str, ...] = get_args(XidBucket)
SAFE_DEFAULT: Bucket = "inspect_hardware"

IMMEDIATE: dict[str, Bucket] = {
    "RESTART_APP": "restart_app",
    "RESET_GPU": "reset_gpu",
    "WORKFLOW_XID_48": "reset_gpu",  # alone: reset; with 63/64: drain and reset
    "RESTART_BM": "reboot_node",
    "RESTART_VM": "reboot_node",
    "IGNORE": "ignore",
    "WORKFLOW_XID_45": "ignore",  # follow the other XID; alone, restart the Fabric Manager
}
"""The catalog's immediate actions medic acts on; every other one is SAFE_DEFAULT."""


@dataclass(frozen=True, slots=True)
class XidEntry:
    """One catalog row."""

    xid: int
    mnemonic: str
    description: str
    immediate: str

    @property
    def bucket(self) -> Bucket:
        """The catalog's immediate action, as medic's bucket."""
        return IMMEDIATE.get(self.immediate, SAFE_DEFAULT)


@cache
def catalog() -> dict[int, XidEntry]:
    """The shipped catalog, read once."""
    text = resources.files("exporter.gpu").joinpath("data/xid_catalog.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {int(r["xid"]): XidEntry(int(r["xid"]), r["mnemonic"], r["description"],
                                    r["immediate"]) for r in rows}  # fmt: skip


class XidClassifier:
    """XID -> bucket: the config's overrides, then the catalog, then the safe default (said
    once per unknown XID in the log)."""

    def __init__(self, overrides: Mapping[int, Bucket] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._catalog = catalog()
        self._unknown_said: set[int] = set()

    def bucket(self, xid: int) -> Bucket:
        """Where this XID goes."""
        if xid in self._overrides:
            return self._overrides[xid]
        entry = self._catalog.get(xid)
        if entry is not None:
            return entry.bucket
        if xid not in self._unknown_said:
            self._unknown_said.add(xid)
            log.warning("XID %d is not in NVIDIA's catalog (edition 2025-10-29): filed as %s",
                        xid, SAFE_DEFAULT)  # fmt: skip
        return SAFE_DEFAULT

    def name(self, xid: int) -> str:
        """The catalog's mnemonic, or "unknown"."""
        entry = self._catalog.get(xid)
        return entry.mnemonic if entry is not None else "unknown"
