"""Arrivals and claims: the one place where "already handled" is decided.

Every source (webhook, pull, the app's report_failure, POST /api/v1/failures, the replay at
start) goes through `claim()`. Under one lock it either finds the episode's key (duplicate,
or a resolved episode) or creates the episode and queues its row to the journal. A key is
never forgotten while its episode is open, so a duplicate cannot slip in between arrival
and action; a duplicate's answer waits for the original claim's commit (even when the
episode already ended, e.g. skipped by its cooldown before the commit), so no answer
promises more than the journal holds. A claim whose commit fails is forgotten again, open
or closed (its arrival was answered "could not accept"), so a retry is claimed afresh.

Memory stays bounded: only the newest MEMORY_CLOSED closed keys stay here; an older one is
looked up in the journal when it comes again (a short read on its own connection). Without
a journal, the oldest closed keys are forgotten.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from exporter.clock import Clock
from exporter.recovery import journal as journal_module
from exporter.recovery.bloom import Forgotten
from exporter.recovery.episode import Episode
from exporter.recovery.journal import Journal, Opened
from exporter.recovery.types import QUEUED, RESOLVED, FailureEvent

FILL_STEP = 256
"""Keys the filter takes in per hold of the claims' lock while it fills (under a ms)."""
DURABLE_SOURCES = frozenset({"alert", "api", "check"})
"""Sources that retry when refused: they are only accepted with a journal to hold them.
(An embedding app's own report has no one to lose it to: it dies with the process.)"""


@dataclass(frozen=True, slots=True)
class Claim:
    """The decision about one arrival."""

    result: str
    """accepted | duplicate | ignored_resolved | queue_full | journal_down"""
    episode: Episode | None = None
    persisted: Future[bool] | None = None
    """What an answer must wait for: the (original) claim's commit."""
    detail: str = ""


class Claims:
    """Every known episode key, open or closed, and the open episodes themselves."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        queue_size: int,
        kept: int | None = None,
        max_episodes: int = 100_000,
    ) -> None:
        self.lock = threading.Lock()
        self._journal = journal
        self._clock = clock
        self._queue_size = queue_size
        self._kept = journal_module.MEMORY_CLOSED if kept is None else kept
        self._open: dict[str, Episode] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()
        """The newest closed keys, oldest first."""
        self._forgot = Forgotten(max_episodes)
        """Closed keys that only the journal knows, roughly (a Bloom filter: "maybe" or a
        certain "no"; empty while memory has forgotten nothing)."""
        self._unconfirmed: dict[str, Episode] = {}
        """Closed episodes whose claim has not committed yet: duplicates wait for it."""
        self.queued = 0
        """Open episodes whose ladder has not started (bounded by queue_size)."""
        self._unsure = False
        """The journal holds closed keys that the filter has not taken in yet (right after
        a start, until fill() ends): every key memory does not know is asked of it."""

    def load(self, opened: Opened) -> None:
        """What the journal holds at start: closed keys and open episodes."""
        with self.lock:
            self._closed = OrderedDict(opened.closed)
            self._unsure = opened.older_before is not None  # see fill()
            self._spill()
            for episode in opened.episodes:
                if episode.key is not None:
                    self._open[episode.key] = episode
                if episode.state == QUEUED:
                    self.queued += 1

    def fill(self, chunks: Iterable[list[str]], stop: threading.Event | None = None) -> bool:
        """Take in the keys of the journal's older closed episodes (Journal.closed_keys), a
        chunk per lock: run on a thread of its own after start, so that neither the start
        nor any claim waits for a long journal. Until it ends, each key memory does not
        know costs a read of the journal instead of a few hashes. False if stopped."""
        for chunk in chunks:
            for at in range(0, len(chunk), FILL_STEP):
                if stop is not None and stop.is_set():
                    return False
                began = time.perf_counter()
                with self.lock:  # briefly: claims wait for it (5,000 keys held it 15 ms)
                    for key in chunk[at : at + FILL_STEP]:
                        self._forgot.add(key)
                # Half a core at most: a start with millions of closed episodes fills in
                # seconds without taking the GIL from the answers meanwhile.
                time.sleep(time.perf_counter() - began)
        self._unsure = False
        return True

    def claim(self, event: FailureEvent) -> Claim:
        """Claim an episode for this event, or say why not."""
        durable = self._journal.durable
        if not durable and event.source in DURABLE_SOURCES:
            return Claim("journal_down", detail="the recovery journal is unavailable")
        key = event.dedup_key
        stored = None
        if key is not None and self._forgotten(key):
            # Asked outside the lock: a read waits for the disk and the GIL, and every
            # other claim, close and commit callback would queue behind it.
            stored = self._journal.closed_state(key)
        with self.lock:
            known = self._known(key, stored) if key is not None else None
            if known is not None:
                return known
            if self.queued >= self._queue_size:
                return Claim("queue_full", detail=f"{self.queued} events wait already")
            episode = Episode(self._journal.episode_id(), event, self._clock.time())
            episode.claimed = self._journal.add_episode(episode)
            if key is not None:
                self._open[key] = episode
            self.queued += 1
        if episode.claimed is not None:
            episode.claimed.add_done_callback(lambda done: self._confirmed(episode, done))
        return Claim("accepted", episode, episode.claimed)

    def _confirmed(self, episode: Episode, done: Future[bool]) -> None:
        """The claim's commit is known (on the journal's writer thread)."""
        if not done.result() and episode.event.source in DURABLE_SOURCES:
            self.forget(episode)  # its arrival was answered 503: it will come again
            return
        if not done.result():
            episode.unclaimed = True  # nobody sends it again: hold it until it commits
        elif episode.claimed is done:
            # Committed: None says so (see Ladder._hold_until_started), and it breaks the
            # cycle episode -> future -> this callback -> episode, which only the garbage
            # collector would free: 10,000 alerts made a 100 ms full collection.
            episode.claimed = None
        key = episode.key
        if key is not None and key in self._unconfirmed:  # rare: only a fast ending
            with self.lock:
                if self._unconfirmed.get(key) is episode:
                    del self._unconfirmed[key]

    def _remember(self, key: str, state: str) -> None:
        """A closed key's state, newest (self.lock held)."""
        self._closed[key] = state
        self._closed.move_to_end(key)
        self._spill()

    def _spill(self) -> None:
        """Leave only the newest `kept` closed keys in memory (self.lock held). Each one's
        claim has committed (unconfirmed ones are in self._unconfirmed), so the journal
        answers for it."""
        while len(self._closed) > self._kept:
            key, _ = self._closed.popitem(last=False)
            self._forgot.add(key)

    def _forgotten(self, key: str) -> bool:
        """Whether memory let go of the key while the journal may still hold it (a
        lock-free first look: dict reads are atomic; checked again under the lock)."""
        if key in self._open or key in self._unconfirmed or key in self._closed:
            return False
        if self._unsure:
            return True
        return bool(self._forgot) and key in self._forgot

    @property
    def closed_in_memory(self) -> int:
        """How many closed keys memory holds (bounded by `kept`)."""
        return len(self._closed)

    def _known(self, key: str, stored: str | None = None) -> Claim | None:
        """The answer for a key seen before (self.lock held), or None if it is new;
        stored: what the journal said about it, when memory had forgotten it."""
        episode = self._open.get(key) or self._unconfirmed.get(key)
        if episode is None:
            state = self._closed.get(key) or stored
        else:
            state = RESOLVED if episode.resolved else self._closed.get(key)
        pending = _pending(episode.claimed) if episode is not None else None
        if state == RESOLVED:
            return Claim("ignored_resolved", episode, pending,
                         "this episode was already resolved")  # fmt: skip
        if episode is not None or state is not None:
            return Claim("duplicate", episode, pending, "this episode is already handled")
        return None

    def forget(self, episode: Episode) -> None:
        """The claim did not commit: as if it never arrived (it may have ended meanwhile)."""
        with self.lock:
            episode.dropped = True
            key = episode.key
            if key is not None:
                if self._open.get(key) is episode:
                    del self._open[key]
                if self._unconfirmed.pop(key, None) is episode:
                    self._closed.pop(key, None)
            if not episode.started:
                episode.started = True  # counted once: it will never start now
                self.queued -= 1

    def start(self, episode: Episode) -> bool:
        """Commit to starting the episode's next rung, unless it was resolved: the line
        after which a resolved alert no longer cancels the rung. False if resolved."""
        with self.lock:
            if episode.resolved:
                return False
            if not episode.started:
                episode.started = True
                self.queued -= 1
            return True

    def close(self, episode: Episode, state: str) -> None:
        """The episode reached its final state."""
        with self.lock:
            if not episode.started:
                self.queued -= 1
                episode.started = True  # counted once: it will never start now
            episode.state = state
            key = episode.key
            if key is not None and not episode.dropped:
                if self._open.get(key) is episode:
                    del self._open[key]
                self._remember(key, RESOLVED if episode.resolved else state)
                claimed = episode.claimed
                if claimed is not None and not claimed.done():
                    self._unconfirmed[key] = episode

    def resolve(self, key: str) -> tuple[str, Episode | None]:
        """The alert of this episode resolved. Returns what that did: ("cancel", episode)
        when its next rung will not start, ("running", episode) when a rung already runs
        (it finishes), ("closed", None) otherwise."""
        stored = None
        if self._forgotten(key):
            stored = self._journal.closed_state(key)  # outside the lock (see claim)
        with self.lock:
            episode = self._open.get(key)
            if episode is not None:
                if not episode.resolved:
                    episode.resolved = True
                    self._journal.mark_resolved(episode)
                return ("running" if episode.started else "cancel"), episode
            state = self._closed.get(key) or stored
            if state is None:
                self._journal.tombstone(key)
            elif state != RESOLVED:
                self._journal.mark_resolved_key(key)
            self._remember(key, RESOLVED)  # a late firing of it is ignored, not a duplicate
            return "closed", None

    def reset(self) -> None:
        """Forget closed episodes (open ones go on)."""
        with self.lock:
            self._closed.clear()
            self._unconfirmed.clear()
            self._forgot.clear()  # the journal forgets them too (Journal.reset)


def _pending(future: Future[bool] | None) -> Future[bool] | None:
    return None if future is None or (future.done() and future.result()) else future
