"""Size and free space of the filesystem that holds a path."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from exporter import fsworker
from exporter.checks.base import Observation
from exporter.checks.fsprobe import Helper

Mounts = Callable[[], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class FilesystemUsage:
    """statvfs of `path`; size and avail are None when the filesystem could not be read."""

    path: str
    mountpoint: str
    fstype: str
    size: int | None
    avail: int | None

    @property
    def device_error(self) -> bool:
        """True when statvfs failed (unmounted, dead network share, permission)."""
        return self.size is None


def read_mounts() -> list[tuple[str, str]]:
    """(mountpoint, fstype) of every mounted filesystem."""
    return [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]


def find_mount(path: str, mounts: list[tuple[str, str]]) -> tuple[str, str]:
    """The mount that holds path: the longest mountpoint that is a prefix of it."""
    best = ("/", "unknown")
    for mountpoint, fstype in mounts:
        inside = path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) >= len(best[0]):
            best = (mountpoint, fstype)
    return best


class DiskCheck:
    """Fails when free space falls below a ratio of the size or a number of bytes."""

    def __init__(
        self,
        path: str | Path,
        min_avail_ratio: float = 0.05,
        min_avail_bytes: int = 0,
        mounts: Mounts = read_mounts,
        helper: Helper | None = None,
    ) -> None:
        self._path = str(path)
        self._min_ratio = min_avail_ratio
        self._min_bytes = min_avail_bytes
        self._mounts = mounts
        self._helper = helper

    def __call__(self) -> Observation:
        """statvfs the path once, in the helper process when there is one (a hung mount
        blocks it there, not medic); in-process otherwise."""
        if self._helper is not None:
            found = self._helper.request({"op": "statvfs", "path": self._path})
        else:
            found = fsworker.statvfs(self._path)
        real = found.get("realpath") or os.path.abspath(self._path)
        mountpoint, fstype = find_mount(real, self._mounts())
        if not found.get("ok"):
            usage = FilesystemUsage(self._path, mountpoint, fstype, None, None)
            return Observation((usage,), (f"cannot read filesystem: {found.get('strerror')}",))
        size, avail = int(found["size"]), int(found["avail"])
        usage = FilesystemUsage(self._path, mountpoint, fstype, size, avail)
        problems = []
        ratio = avail / size if size else 0.0
        if ratio < self._min_ratio:
            problems.append(f"{ratio:.1%} free on {mountpoint}, below {self._min_ratio:.1%}")
        if avail < self._min_bytes:
            problems.append(
                f"{avail / 2**30:.2f} GiB free on {mountpoint}, "
                f"below {self._min_bytes / 2**30:.2f} GiB"
            )
        return Observation((usage,), tuple(problems))

    def stuck(self) -> bool:
        """True while an abandoned statvfs has not returned."""
        return self._helper is not None and self._helper.stuck()

    def close(self) -> None:
        """Stop the helper (never waits for it)."""
        if self._helper is not None:
            self._helper.close()
