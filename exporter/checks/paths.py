"""A file or directory that must be there: model weights, a voices folder, a tokenizer."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporter.checks.base import Observation


@dataclass(frozen=True, slots=True)
class PathPresence:
    """Whether `path` exists as the kind of thing it should be."""

    path: str
    present: bool


class PathCheck:
    """Fails when the path is missing, the wrong kind, too small, unreadable or empty."""

    def __init__(
        self,
        path: str | Path,
        kind: Literal["file", "dir", "any"] = "any",
        min_size: int = 0,
        readable: bool = True,
        non_empty: bool = False,
    ) -> None:
        self._path = str(path)
        self._kind = kind
        self._min_size = min_size
        self._readable = readable
        self._non_empty = non_empty

    def __call__(self) -> Observation:
        """stat the path and, if asked, read it; reading may block (the runner bounds it)."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return self._absent("missing")
        except OSError as exc:
            return self._absent(f"cannot stat: {exc.strerror or exc}")
        is_dir = stat.S_ISDIR(st.st_mode)
        if self._kind == "file" and is_dir:
            return self._absent("is a directory, expected a file")
        if self._kind == "dir" and not is_dir:
            return self._absent("is not a directory")
        problems = []
        if not is_dir and st.st_size < self._min_size:
            problems.append(f"size {st.st_size} bytes is below {self._min_size}")
        try:
            if is_dir and (self._readable or self._non_empty):
                with os.scandir(self._path) as entries:
                    if self._non_empty and next(entries, None) is None:
                        problems.append("directory is empty")
            elif self._readable:
                with open(self._path, "rb") as handle:
                    handle.read(1)
        except OSError as exc:
            problems.append(f"cannot read: {exc.strerror or exc}")
        return Observation((PathPresence(self._path, True),), tuple(problems))

    def _absent(self, reason: str) -> Observation:
        return Observation((PathPresence(self._path, False),), (f"{self._path}: {reason}",))
