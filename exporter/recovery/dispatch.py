"""Who runs now: one ladder per failure type, at most `workers` ladders in all.

Episodes that cannot start wait in arrival order; when a ladder ends, the oldest waiter
whose failure type is free takes its place. Runs on the engine's loop only.
"""

from __future__ import annotations

import asyncio
from collections import deque

from exporter.recovery.episode import Episode


class Withdrawn(Exception):
    """A waiting episode was taken out of line (resolved, or medic stops)."""


class Dispatcher:
    """Slots for running ladders."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._running: dict[str, Episode] = {}  # failure type -> the episode holding it
        self._waiting: dict[str, deque[tuple[Episode, asyncio.Future[None]]]] = {}

    def holds(self, episode: Episode) -> bool:
        """Whether this episode holds its failure type's slot."""
        return self._running.get(episode.failure_type) is episode

    def busy(self, failure_type: str) -> bool:
        """Whether a ladder of this failure type runs."""
        return failure_type in self._running

    def waiting(self, failure_type: str) -> int:
        """Episodes of this failure type waiting for a slot."""
        line = self._waiting.get(failure_type)
        return len(line) if line else 0

    async def take(self, episode: Episode) -> None:
        """Wait until this episode may run its ladder; raises Withdrawn if taken out."""
        failure_type = episode.failure_type
        if not self.busy(failure_type) and not self.waiting(failure_type) and self._free():
            self._running[failure_type] = episode
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(failure_type, deque()).append((episode, turn))
        try:
            await turn
        except asyncio.CancelledError:
            self._leave_line(episode)
            if self.holds(episode):  # its turn came just as it was cancelled
                self.give_back(episode)
            raise

    def give_back(self, episode: Episode) -> None:
        """The episode's ladder is over: let the next one in."""
        if self.holds(episode):
            del self._running[episode.failure_type]
        self._pump()

    def withdraw(self, episode: Episode) -> bool:
        """Take a waiting episode out of line; True if it was waiting."""
        turn = self._leave_line(episode)
        if turn is None:
            return False
        if not turn.done():
            turn.set_exception(Withdrawn())
        return True

    def _free(self) -> bool:
        return len(self._running) < self._workers

    def _leave_line(self, episode: Episode) -> asyncio.Future[None] | None:
        line = self._waiting.get(episode.failure_type)
        if not line:
            return None
        for index, (waiting, turn) in enumerate(line):
            if waiting is episode:
                del line[index]
                if not line:
                    del self._waiting[episode.failure_type]
                return turn
        return None

    def _pump(self) -> None:
        while self._free():
            heads = [
                (line[0][0].id, failure_type)
                for failure_type, line in self._waiting.items()
                if line and failure_type not in self._running
            ]
            if not heads:
                return
            _, failure_type = min(heads)
            line = self._waiting[failure_type]
            episode, turn = line.popleft()
            if not line:
                del self._waiting[failure_type]
            if turn.done():  # cancelled meanwhile
                continue
            self._running[failure_type] = episode
            turn.set_result(None)
