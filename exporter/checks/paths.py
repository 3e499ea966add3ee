"""A file or directory that must be there: model weights, a voices folder, a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporter import fsworker
from exporter.checks.base import Observation
from exporter.checks.fsprobe import Helper


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
        *,
        helper: Helper | None = None,
    ) -> None:
        self._path = str(path)
        self._kind = kind
        self._min_size = min_size
        self._readable = readable
        self._non_empty = non_empty
        self._helper = helper

    def __call__(self) -> Observation:
        """stat the path and, if asked, read it: in the helper process when there is one
        (a hung mount blocks it there, not medic); in-process otherwise."""
        request = {"path": self._path, "kind": self._kind, "min_size": self._min_size,
                   "readable": self._readable, "non_empty": self._non_empty}  # fmt: skip
        if self._helper is not None:
            found = self._helper.request({"op": "inspect", **request})
        else:
            found = fsworker.inspect(
                self._path, self._kind, self._min_size, self._readable, self._non_empty
            )
        problems = tuple(str(p) for p in found["problems"])
        if not found["present"]:
            return self._absent(problems[0])
        return Observation((PathPresence(self._path, True),), problems)

    def stuck(self) -> bool:
        """True while an abandoned probe has not returned."""
        return self._helper is not None and self._helper.stuck()

    def close(self) -> None:
        """Stop the helper (never waits for it)."""
        if self._helper is not None:
            self._helper.close()

    def _absent(self, reason: str) -> Observation:
        return Observation((PathPresence(self._path, False),), (f"{self._path}: {reason}",))
