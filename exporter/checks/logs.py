"""The log check's probe: follow a file or a unit's journal, count lines that match.

A file is followed by inode and offset: a rotation (a new inode at the path) finishes the
old file before the new one starts at 0, a truncation starts again at 0, and a missing file
(between rotation steps) is waited for. A journal is read from `journalctl --follow
--output=json` in a child process; a reader thread hands its lines over. Each pattern
counts at most once per burst window: a teardown can print the same fatal line thousands
of times, and one incident is one count.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO

from exporter.checks.base import Observation
from exporter.clock import Clock, SystemClock
from exporter.config.logcheck import LogCheckConfig


@dataclass(frozen=True, slots=True)
class LogFact:
    """A log check's counts so far: matches per pattern, and lines read."""

    matches: tuple[tuple[str, int], ...]
    lines: int


class FileFollower:
    """New lines of a file, across rotation and truncation."""

    def __init__(self, path: str, from_start: bool) -> None:
        self.path = path
        self._handle: BinaryIO | None = None
        self._inode: int | None = None
        self._skip_existing = not from_start
        self._partial = b""
        # Where reading starts is fixed now, at medic's start: lines written before it are
        # history (unless from_start), lines written after it are news, read or not yet.
        with contextlib.suppress(FileNotFoundError):
            self._open(os.stat(path).st_ino)

    def _open(self, inode: int) -> None:
        self._handle = open(self.path, "rb")  # noqa: SIM115 - kept open between runs
        self._inode = inode
        if self._skip_existing:
            self._handle.seek(0, os.SEEK_END)
        self._skip_existing = False  # a later file is new from its first byte

    def read(self, limit: int) -> list[str]:
        """The complete lines written since the last call (at most about `limit` bytes)."""
        chunks: list[bytes] = []
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            status = None  # between a rotation's rename and the new file: keep the old one
        if status is not None and status.st_ino != self._inode:
            if self._handle is not None:  # rotated: finish the old file first
                chunks.append(self._handle.read(limit))
                self._handle.close()
            self._open(status.st_ino)
        elif (
            status is not None and self._handle is not None and status.st_size < self._handle.tell()
        ):
            self._handle.seek(0)  # truncated (copytruncate): its lines are new
            self._partial = b""
        if self._handle is not None:
            chunks.append(self._handle.read(max(0, limit - sum(map(len, chunks)))))
        data = self._partial + b"".join(chunks)
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in lines]

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class JournalFollower:
    """New messages of a systemd unit (or the kernel's), from `journalctl --follow
    --output=json`."""

    MAX_WAITING = 200_000

    def __init__(self, unit: str | None, kernel: bool = False) -> None:
        self.unit = unit
        self._kernel = kernel
        self._lines: deque[str] = deque(maxlen=self.MAX_WAITING)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self.error = ""

    def _start(self) -> None:
        argv = ["journalctl", "--follow", "--output=json", "--lines=0", "--no-pager",
                "--dmesg" if self._kernel else f"--unit={self.unit}"]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            self.error = f"cannot run journalctl: {exc.strerror or exc}"
            return
        threading.Thread(target=self._pump, args=(self._process,), daemon=True,
                         name=f"journal-{self.unit or 'kernel'}").start()  # fmt: skip

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under us: stop
            for raw in process.stdout:
                try:
                    message = json.loads(raw).get("MESSAGE", "")
                except (ValueError, AttributeError):
                    continue  # not a journal entry
                if isinstance(message, list):  # binary messages come as byte lists
                    message = bytes(message).decode("utf-8", errors="replace")
                with self._lock:
                    self._lines.append(str(message))

    def read(self, limit: int) -> list[str]:
        """Messages since the last call."""
        if self._process is None and not self.error:
            self._start()
        if self._process is not None and self._process.poll() is not None and not self.error:
            self.error = f"journalctl exited with status {self._process.returncode}"
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        del limit  # the queue's bound is the limit
        return lines

    def close(self) -> None:
        """Stop journalctl."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2)
        if process.stdout is not None:
            process.stdout.close()


class LogProbe:
    """One pass over the new lines per run; fails for `hold` after a pattern matched."""

    def __init__(self, config: LogCheckConfig, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        patterns = config.all_patterns()
        self._patterns = {name: re.compile(regex) for name, regex in patterns.items()}
        # One search per line finds the few lines worth a second look.
        self._any = re.compile("|".join(f"(?:{regex})" for regex in patterns.values()))
        self._follower: FileFollower | JournalFollower = (
            FileFollower(config.path, config.from_start) if config.path is not None
            else JournalFollower(str(config.unit))
        )  # fmt: skip
        self._counts = dict.fromkeys(patterns, 0)
        self._counted_at: dict[str, float] = {}
        self._matched: dict[str, tuple[float, str]] = {}  # pattern -> (when, the line)
        self._lines = 0

    def __call__(self) -> Observation:
        """Read what is new, count the matches, fail while one is fresh."""
        try:
            lines = self._follower.read(self._config.max_bytes_per_run)
        except OSError as exc:
            return Observation(problems=(f"cannot read {self._config.path}: {exc.strerror}",))
        now = self._clock.monotonic()
        self._lines += len(lines)
        for line in lines:
            if self._any.search(line) is None:
                continue
            for name, pattern in self._patterns.items():
                if pattern.search(line) is not None:
                    self._matched[name] = (now, line)
                    if now - self._counted_at.get(name, -1e18) >= self._config.burst_window:
                        self._counts[name] += 1
                        self._counted_at[name] = now
        problems = [
            f"{name}: {line.strip()[:200]!r}"
            for name, (at, line) in sorted(self._matched.items())
            if now - at < self._config.hold or at == now
        ]
        if isinstance(self._follower, JournalFollower) and self._follower.error:
            problems.append(self._follower.error)
        fact = LogFact(tuple(sorted(self._counts.items())), self._lines)
        return Observation((fact,), tuple(problems))

    def stuck(self) -> bool:
        """Never: reads are bounded."""
        return False

    def close(self) -> None:
        """Close the file or stop journalctl."""
        self._follower.close()
