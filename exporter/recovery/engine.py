"""The recovery engine: claims, gates and ladders on a loop of their own.

It runs its own asyncio loop on its own thread, so actions never compete with the HTTP
server's loop and an embedding app can report failures from any thread. Each accepted
episode becomes a task on that loop: it passes the episode gates (cooldown, one ladder per
failure type), then walks its ladder (ladder.py), whose first action waits for the claim
and its own start record to commit. Arrivals and the dedup decision are in claims.py, the
gates in gates.py, the slots in dispatch.py, what a restart resumes in resume.py, how
things end in endings.py, the counters in accounting.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from exporter.checks import HealthChecker
from exporter.clock import Clock
from exporter.config.recovery import (
    ActionBase,
    InProcessActionConfig,
    RecoveryConfig,
)
from exporter.events import EventHub
from exporter.recovery import resume
from exporter.recovery.accounting import DURATION_BUCKETS, Accounting
from exporter.recovery.actions import (
    Action,
    ActionRegistry,
    CallableAction,
    ClearGpuCache,
    MissingAction,
    SystemHealthCheck,
    run_in_daemon_thread,
)
from exporter.recovery.claims import Claims
from exporter.recovery.dispatch import Dispatcher, Withdrawn
from exporter.recovery.endings import final_record
from exporter.recovery.episode import Episode
from exporter.recovery.factory import build
from exporter.recovery.gates import (
    BreakerGate,
    CooldownGate,
    DryRunGate,
    Gates,
    OnePerType,
    RateLimitGate,
    Step,
    TargetGate,
)
from exporter.recovery.hygiene import GpuProcesses
from exporter.recovery.journal import Journal
from exporter.recovery.ladder import Ladder
from exporter.recovery.types import LADDER, RUNNING, FailureEvent, Outcome, RecoveryAttempt
from exporter.resilience import BreakerRegistry, BreakerSettings
from exporter.storage.sqlite import CommitWaits

if TYPE_CHECKING:
    from exporter.fleet.gate import FleetGate

__all__ = ["DURATION_BUCKETS", "RecoveryEngine", "Submission"]

GPU_LABELS = frozenset({"gpu", "uuid", "pci"})
"""An event with one of these labels is about a GPU (medic's GPU rules, kernel XIDs)."""

log = logging.getLogger(__name__)
T = TypeVar("T")
INFLOW_PER_TURN = 200

PRUNE_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class Submission:
    """What happened to a submitted event: accepted, or why not."""

    result: str
    """accepted | duplicate | ignored_resolved | unknown_failure_type | queue_full |
    journal_down | stopped"""
    detail: str = ""
    persisted: Future[bool] | None = None
    """Resolves when the episode's claim is committed (None: nothing to wait for). Answer a
    caller that must not lose the event only once it resolves, and only if it is True."""

    @property
    def accepted(self) -> bool:
        """True when the event became a new episode."""
        return self.result == "accepted"


class RecoveryEngine:
    """Walks failure types' ladders; thread-safe to submit to, runs on its own loop."""

    def __init__(
        self,
        config: RecoveryConfig,
        *,
        health: HealthChecker,
        breakers: BreakerRegistry,
        journal: Journal,
        clock: Clock,
        actions: ActionRegistry | None = None,
        events: EventHub | None = None,
        runs: Path | None = None,
        gpu_processes: GpuProcesses | None = None,
        gpu_evidence: Callable[[FailureEvent], dict[str, Any] | None] | None = None,
        fleet: FleetGate | None = None,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self._gpu_processes = gpu_processes
        self._gpu_evidence = gpu_evidence
        self.actions = actions or ActionRegistry()
        self._health = health
        self._breakers = breakers
        self._journal = journal
        self._clock = clock
        self._runs = runs or Path(tempfile.mkdtemp(prefix="medic-runs-"))
        self._breaker_settings = BreakerSettings(
            failure_threshold=config.action_breaker_failures,
            wait_duration_in_open=config.action_breaker_wait,
        )
        self._builtins: dict[str, Action] = {
            "clear_gpu_cache": ClearGpuCache(),
            "system_health_check": SystemHealthCheck(health.run_all),
        }
        self.version = 0
        """Bumped on every change the metrics show; the render loop polls it."""
        self._idle = threading.Condition()
        self.accounting = Accounting(
            {ft: [rung.action for rung in spec.ladder] for ft, spec in config.failures.items()},
            events,
            self._changed,
        )
        self.claims = Claims(
            journal, clock, config.queue_size, max_episodes=config.retention.max_episodes
        )
        self._dispatcher = Dispatcher(config.workers)
        self._commits = CommitWaits()  # used on the engine's loop only
        self._episode_gates = Gates(
            CooldownGate(journal, clock),
            OnePerType(self._dispatcher, config.max_waiting_per_type),
        )
        rung_gates = Gates(
            TargetGate(config, clock),
            BreakerGate(breakers, self._breaker_settings),
            RateLimitGate(config.rate_limit.actions, config.rate_limit.per, clock),
            DryRunGate(config.dry_run),
        )
        self._ladder = Ladder(
            config, journal=journal, claims=self.claims, accounting=self.accounting,
            gates=rung_gates, actions=self._action, health=health, breakers=breakers,
            breaker_settings=self._breaker_settings, clock=clock, runs=self._runs,
            stopping=lambda: self._stopping, commits=self._commits, evidence=self._evidence,
            fleet=fleet,
        )  # fmt: skip
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inflow: list[Episode] = []  # accepted, not yet handed to the loop
        self._inflow_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._live = 0  # episode tasks not finished (wait_idle)
        self._accepting = False
        self._stopping = False
        self._stop_fill = threading.Event()
        """Set at stop: the dedup filter's fill from the journal ends (see Claims.fill)."""

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Load the journal, decide what to do with open episodes, start the loop."""
        opened = self._journal.open()
        self.claims.load(opened)
        if opened.older_before is not None:
            # The dedup filter learns the older closed keys after start, not before it.
            keys = self._journal.closed_keys(opened.older_before)
            threading.Thread(
                target=self.claims.fill, args=(keys, self._stop_fill), name="medic-dedup-fill",
                daemon=True,
            ).start()  # fmt: skip
        if opened.stray:
            self.accounting.finished(RecoveryAttempt(
                0, "*", LADDER, "journal", self._clock.time(), Outcome.INTERRUPTED,
                detail=f"{opened.stray} attempts of an older journal were running",
            ))  # fmt: skip
        in_flight = {e.attempt.id for e in opened.episodes if e.attempt is not None}
        for path in resume.stale_run_files(self._runs, in_flight):
            path.unlink(missing_ok=True)
        for episode in opened.episodes:
            how = resume.plan(episode, self.config, self._runs)
            self.accounting.resume(how)
            if how not in ("requeued", "continued"):
                log.warning("%s: episode %d was mid-rung when medic stopped: %s",
                            episode.failure_type, episode.id, how)  # fmt: skip
        for failure in self.config.failures.values():
            for rung in failure.ladder:
                self._breakers.get(BreakerGate.name(rung.action), self._breaker_settings)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready,), name="medic-recovery", daemon=True
        )
        self._thread.start()
        ready.wait(5)
        # Running episodes first: they hold their failure type from before the restart.
        resumed = sorted(opened.episodes, key=lambda e: (e.state != RUNNING, e.id))
        if resumed:
            log.warning("resuming %d open episodes from the journal", len(resumed))
            self._feed(resumed)
        self._accepting = True

    def stop(self, timeout: float = 3.0) -> None:
        """Refuse new events; cut off running ladders (an in-process action is recorded as
        interrupted, a command goes on for the next medic to adopt); stop the loop."""
        self._accepting = False
        self._stop_fill.set()
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._cancel_all(), loop)
        try:
            future.result(timeout)
        except Exception:  # a ladder that does not stop in time is abandoned with the loop
            log.warning("recovery ladders did not stop within %gs", timeout)
        if self.fleet is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.fleet.close(), loop).result(1)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._ladder.close()

    def _run_loop(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._spawn(self._prune_periodically())
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _cancel_all(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- thread-safe API ----------------------------------------------------------------
    def submit(self, event: FailureEvent) -> Submission:
        """Claim an episode for the event unless it is a duplicate, unknown, or refused."""
        if not self._accepting or self._loop is None:
            return self._refused("stopped", "the recovery engine is not running")
        if event.failure_type not in self.config.failures:
            known = ", ".join(sorted(self.config.failures)) or "none configured"
            return self._refused(
                "unknown_failure_type", f"no ladder for {event.failure_type!r} ({known})"
            )
        claim = self.claims.claim(event)
        self.accounting.result(claim.result)
        if claim.result == "accepted":
            assert claim.episode is not None
            self._feed([claim.episode])
        elif claim.result == "duplicate":
            record = final_record(event, LADDER, Outcome.SKIPPED_DUPLICATE, claim.detail,
                                  self._clock.time())  # fmt: skip
            self._journal.record(record)
            self.accounting.finished(record)
        return Submission(claim.result, claim.detail, claim.persisted)

    def run_soon(self, fn: Callable[[], T]) -> Future[T]:
        """Run fn on the engine's own loop and thread; its future. A large notification's
        claims run here, so that the HTTP thread is left free to answer scrapes instead of
        taking turns with this thread for every lock the claims share. Without a running
        loop, fn runs now."""
        future: Future[T] = Future()
        loop = self._loop

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiter
                future.set_exception(exc)

        if loop is None or not self._accepting:
            run()
            return future
        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed meanwhile
            run()
        return future

    def resolve(self, dedup_key: str) -> bool:
        """The episode's alert resolved: its next rung will not start. True when that
        cancels an episode that had not started yet."""
        what, episode = self.claims.resolve(dedup_key)
        if what == "cancel" and episode is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing waits now
                self._loop.call_soon_threadsafe(self._dispatcher.withdraw, episode)
        if what == "running" and episode is not None and self.fleet and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # a rung the fleet holds looks again now
                self._loop.call_soon_threadsafe(self.fleet.wake, episode.id)
        return what == "cancel"

    def release_held(self, episode: int | None, who: str) -> list[int]:
        """A person lets rungs the fleet holds go on (one episode, or all): their ids."""
        if self.fleet is None:
            return []
        fleet = self.fleet
        return self.run_soon(lambda: fleet.release(episode, who)).result(5)

    def reset(self) -> None:
        """Forget cooldowns and closed episodes; close the actions' breakers."""
        self._journal.reset()
        self.claims.reset()
        for failure in self.config.failures.values():
            for rung in failure.ladder:
                breaker = self._breakers.find(BreakerGate.name(rung.action))
                if breaker is not None:
                    breaker.reset()
        self._changed()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no episode is queued or running (tests, docs, graceful hand-over)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._live == 0, timeout)

    def queue_length(self) -> int:
        """Accepted episodes whose ladder has not started."""
        return self.claims.queued

    def cooldowns(self) -> dict[str, float]:
        """Until when (wall clock) each configured failure type is cooling down; 0 if not."""
        stored = self._journal.cooldowns()
        return {ft: (stored[ft].until if ft in stored else 0.0) for ft in self.config.failures}

    @property
    def journal_healthy(self) -> bool:
        """Whether the journal's last write reached the disk."""
        return self._journal.healthy

    def snapshot(self) -> dict[str, Any]:
        """Counters for the metrics collector, read together."""
        snap = self.accounting.snapshot()
        snap["queue"] = self.claims.queued
        return snap

    # --- on the loop --------------------------------------------------------------------
    def _feed(self, episodes: list[Episode]) -> None:
        """Hand episodes to the loop: one wake-up per burst, not per event (each wake-up
        costs the submitting thread a write to the loop's self-pipe)."""
        assert self._loop is not None
        with self._idle:
            self._live += len(episodes)
        with self._inflow_lock:
            first = not self._inflow
            self._inflow.extend(episodes)
        if first:
            # Racing a stop: the loop may be closed. The episodes' claims are in the
            # journal as queued, so the next start resumes them.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._take_inflow)

    def _take_inflow(self) -> None:
        # A few hundred per loop turn: a 10,000-alert notification is not one long step
        # (each turn of the loop lets the HTTP thread have the GIL sooner).
        with self._inflow_lock:
            episodes, rest = self._inflow[:INFLOW_PER_TURN], self._inflow[INFLOW_PER_TURN:]
            self._inflow = rest
        for episode in episodes:
            self._spawn(self._handle(episode))
        if rest:
            assert self._loop is not None
            self._loop.call_soon(self._take_inflow)

    async def _handle(self, episode: Episode) -> None:
        """One episode from its claim to its final state."""
        try:
            # The claim's commit is not awaited here: gates and skips need no journal, and
            # an action waits for its own start record, which commits after the claim.
            if await self._admitted(episode):
                self.accounting.ladder(+1)
                try:
                    await self._ladder.walk(episode)
                finally:
                    self.accounting.ladder(-1)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recovery of %s failed unexpectedly", episode.failure_type)
        finally:
            self._dispatcher.give_back(episode)
            with self._idle:
                self._live -= 1
                self._idle.notify_all()

    async def _admitted(self, episode: Episode) -> bool:
        """Episode gates, waiting where one says wait; False when the episode ended here."""
        while True:
            if episode.dropped:  # its claim failed to commit: its arrival got a 503
                return False
            if episode.resolved and not episode.started:
                await self._ladder.endings.cancel(episode, "resolved before its ladder started")
                return False
            verdict = self._episode_gates.check(Step(episode))
            if verdict.kind == "admit":
                return True
            if verdict.kind == "skip":
                assert verdict.outcome is not None
                await self._ladder.endings.end(episode, verdict.outcome, verdict.detail)
                return False
            try:
                await self._dispatcher.take(episode)
            except Withdrawn:
                continue  # resolved while waiting: the loop's first check cancels it

    async def _prune_periodically(self) -> None:
        retention = self.config.retention
        while True:
            await run_in_daemon_thread(lambda: self._journal.prune(retention.max_age))
            await asyncio.sleep(PRUNE_EVERY)

    # --- bookkeeping --------------------------------------------------------------------
    def _action(self, name: str) -> Action:
        if name in self._builtins:
            return self._builtins[name]
        spec = self.config.actions.get(name)
        external = self._external(name, spec)
        if external is not None:
            return external
        registered = self.actions.get(name)
        if registered is not None and (spec is None or isinstance(spec, InProcessActionConfig)):
            return CallableAction(name, registered)
        return MissingAction(name)

    def _external(self, name: str, spec: object) -> Action | None:
        """The action for a configured command, http, signal or typed restart, inside its
        drain when it has one."""
        action = build(name, spec, gpu=self._gpu_processes,
                       label_altered=self.accounting.label_altered)  # fmt: skip
        if action is not None and isinstance(spec, ActionBase) and spec.drain is not None:
            from exporter.recovery.drain import Drained  # noqa: PLC0415

            return Drained(action, spec.drain)
        return action

    def _evidence(self, event: FailureEvent, action: str) -> str | None:
        """Before a disruptive rung about a GPU (the event names one: gpu, uuid or pci):
        what a reset would wipe, as JSON for the journal. A provider that fails costs the
        evidence, never the rung."""
        spec = self.config.actions.get(action)
        if self._gpu_evidence is None or not isinstance(spec, ActionBase):
            return None
        if not spec.is_disruptive() or not GPU_LABELS & event.labels.keys():
            return None
        try:
            found = self._gpu_evidence(event)
        except Exception as exc:
            log.exception("the GPU evidence before %s could not be taken", action)
            found = {"error": f"{type(exc).__name__}: {exc}"}
        return None if found is None else json.dumps(found, default=str, sort_keys=True)

    def _changed(self) -> None:
        self.version += 1

    def _refused(self, result: str, detail: str) -> Submission:
        self.accounting.result(result)
        return Submission(result, detail)
