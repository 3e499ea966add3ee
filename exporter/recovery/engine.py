"""The recovery engine: a bounded queue, workers, and ladders walked behind gates.

It runs its own asyncio loop on its own thread, so actions never compete with the HTTP
server's loop and an embedding app can report failures from any thread. For each event:
the episode must be new, the failure type out of cooldown and not already being handled;
then, rung by rung, the action's breaker must admit it, the rate limit allow it and dry-run
be off; the action runs under its timeout and the named checks are re-run to verify.
Recovered: stop. Not recovered: next rung. Out of rungs: `exhausted`, and a longer cooldown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from exporter.checks import HealthChecker
from exporter.clock import Clock
from exporter.config.recovery import (
    CommandActionConfig,
    CooldownConfig,
    FailureConfig,
    HttpActionConfig,
    InProcessActionConfig,
    RecoveryConfig,
    RungConfig,
    SignalActionConfig,
)
from exporter.events import EventHub
from exporter.recovery.actions import (
    Action,
    ActionContext,
    ActionRegistry,
    CallableAction,
    ClearGpuCache,
    CommandAction,
    HttpAction,
    MissingAction,
    SignalAction,
    SystemHealthCheck,
    run_in_daemon_thread,
)
from exporter.recovery.journal import Cooldown, Journal
from exporter.recovery.types import LADDER, ActionResult, FailureEvent, Outcome, RecoveryAttempt
from exporter.resilience import BreakerRegistry, BreakerSettings, CircuitBreakerOpenError

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PRUNE_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class Submission:
    """What happened to a submitted event: accepted, or why not."""

    result: str
    """accepted | duplicate | ignored_resolved | unknown_failure_type | queue_full | stopped;
    accepted covers events that wait in the journal's inbox while the queue is full."""
    detail: str = ""
    persisted: Future[bool] | None = None
    """Resolves when the accepted event's journal row is committed (None: nothing to wait
    for). Answer a caller that must not lose the event only after it resolves."""

    @property
    def accepted(self) -> bool:
        """True when the event was queued."""
        return self.result == "accepted"


@dataclass
class Histogram:
    """Bucket counts, sum and count of observations (Prometheus histogram shape)."""

    buckets: list[int]
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """Add one observation."""
        for index, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[index] += 1
        self.total += value
        self.count += 1


class ActionFailed(Exception):
    """An action reported failure; raised inside the breaker so that it counts."""

    def __init__(self, result: ActionResult) -> None:
        super().__init__(result.detail)
        self.result = result


class RateLimiter:
    """At most `limit` starts per `per` seconds (sliding window)."""

    def __init__(self, limit: int, per: float, clock: Clock) -> None:
        self._limit, self._per, self._clock = limit, per, clock
        self._starts: deque[float] = deque()

    def allow(self) -> bool:
        """Take a slot if one is free."""
        now = self._clock.monotonic()
        while self._starts and self._starts[0] <= now - self._per:
            self._starts.popleft()
        if len(self._starts) >= self._limit:
            return False
        self._starts.append(now)
        return True


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
    ) -> None:
        self.config = config
        self.actions = actions or ActionRegistry()
        self._health = health
        self._breakers = breakers
        self._journal = journal
        self._clock = clock
        self._events = events
        self._ladders: dict[str, FailureConfig] = {str(k): v for k, v in config.failures.items()}
        self._rate = RateLimiter(config.rate_limit.actions, config.rate_limit.per, clock)
        self._action_breaker = BreakerSettings(
            failure_threshold=config.action_breaker_failures,
            wait_duration_in_open=config.action_breaker_wait,
        )
        self._builtins: dict[str, Action] = {
            "clear_gpu_cache": ClearGpuCache(),
            "system_health_check": SystemHealthCheck(health.run_all),
        }
        self._lock = threading.Lock()
        self._pending = 0
        self._queued_keys: set[str] = set()
        self._type_locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[FailureEvent, int]] | None = None
        self._inflow: list[tuple[FailureEvent, int]] = []  # submitted, not yet in the queue
        self._picked: list[int] = []  # inbox ids taken by workers, rows not yet deleted
        self._deferred = 0  # accepted events waiting in the journal's inbox, not in memory
        self._inbox_cursor = 0  # every inbox id up to this one is in memory or done
        self._room: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False
        self._stopping = False
        self.version = 0
        """Bumped on every change the metrics show; the render loop polls it."""
        self._idle = threading.Condition()
        # metrics, read by the collector
        self.attempt_counts: dict[tuple[str, str, str], int] = {}
        self.event_counts: dict[str, int] = {}
        self.durations: dict[str, Histogram] = {}
        self.in_progress = 0

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Mark attempts a dead process left running as interrupted; start the loop; replay
        events that were accepted but never picked up (their inbox rows survived)."""
        interrupted = self._journal.open()
        if interrupted:
            self._count_attempt("*", LADDER, Outcome.INTERRUPTED, interrupted)
        backlog = self._journal.inbox_after(0, 1_000_000)
        for failure in self.config.failures.values():
            for rung in failure.ladder:
                self._breakers.get(self._breaker_name(rung.action), self._action_breaker)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready,), name="medic-recovery", daemon=True
        )
        self._thread.start()
        ready.wait(5)
        if backlog:
            log.warning("replaying %d accepted events a previous run did not start", len(backlog))
            self._replay(backlog)
        self._accepting = True

    def _replay(self, backlog: list[tuple[int, FailureEvent]]) -> None:
        assert self._loop is not None and self._queue is not None
        room = self.config.queue_size
        with self._lock:
            for inbox_id, event in backlog:
                if event.dedup_key:
                    self._queued_keys.add(event.dedup_key)
                if room > 0:
                    room -= 1
                    self._pending += 1
                    self._inbox_cursor = inbox_id
                    self._feed(event, inbox_id)
                else:
                    self._deferred += 1

    def stop(self, timeout: float = 3.0) -> None:
        """Refuse new events; interrupt running actions (recorded as such); stop the loop."""
        self._accepting = False
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._cancel_workers(), loop)
        try:
            future.result(timeout)
        except Exception:  # a worker that does not stop in time is abandoned with the loop
            log.warning("recovery workers did not stop within %gs", timeout)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_loop(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._queue = asyncio.Queue()
        self._room = asyncio.Event()
        self._tasks = [loop.create_task(self._worker()) for _ in range(self.config.workers)]
        self._tasks.append(loop.create_task(self._prune_periodically()))
        self._tasks.append(loop.create_task(self._drain_deferred()))
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _cancel_workers(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- thread-safe API ----------------------------------------------------------------
    def submit(self, event: FailureEvent) -> Submission:
        """Queue an event unless it is a duplicate, unknown, or the queue is full."""
        if not self._accepting or self._loop is None or self._queue is None:
            return self._refused("stopped", "the recovery engine is not running")
        if event.failure_type not in self.config.failures:
            known = ", ".join(sorted(self.config.failures)) or "none configured"
            return self._refused(
                "unknown_failure_type", f"no ladder for {event.failure_type!r} ({known})"
            )
        key = event.dedup_key
        persisted: Future[bool] | None = None
        with self._lock:
            state = self._journal.episode(key) if key else None
            if state == "resolved":
                refused: Submission | None = Submission(
                    "ignored_resolved", "this episode was already resolved"
                )
            elif key and (state == "handled" or key in self._queued_keys):
                refused = Submission("duplicate", "this episode is already handled")
            elif self._pending < self.config.queue_size and not self._deferred:
                refused = None
                self._pending += 1
                inbox_id, persisted = self._journal.inbox_add(event)
                self._inbox_cursor = inbox_id
                self._feed(event, inbox_id)
            elif self._journal.healthy:
                # Queue full: the event waits in the journal's inbox and is fed in later.
                refused = None
                self._deferred += 1
                _, persisted = self._journal.inbox_add(event)
            else:
                refused = Submission(
                    "queue_full", f"{self._pending} events wait and the journal cannot hold more"
                )
            if refused is None and key:
                self._queued_keys.add(key)
        if refused is not None:
            if refused.result == "duplicate":
                self._record_final(event, LADDER, Outcome.SKIPPED_DUPLICATE, refused.detail)
            return self._refused(refused.result, refused.detail)
        self._count_event("accepted")
        return Submission("accepted", persisted=persisted)

    def _feed(self, event: FailureEvent, inbox_id: int) -> None:
        """Hand an event to the loop (self._lock held). One wake-up per burst, not per
        event: each wake-up costs the submitting thread a write to the loop's self-pipe."""
        assert self._loop is not None
        self._inflow.append((event, inbox_id))
        if len(self._inflow) == 1:
            self._loop.call_soon_threadsafe(self._take_inflow)

    def _take_inflow(self) -> None:
        assert self._queue is not None
        with self._lock:
            items, self._inflow = self._inflow, []
        for item in items:
            self._queue.put_nowait(item)

    def _picked_up(self, inbox_id: int) -> None:
        """A worker took the event: its inbox row goes, in one statement per loop turn."""
        assert self._loop is not None
        self._picked.append(inbox_id)
        if len(self._picked) == 1:
            self._loop.call_soon(self._forget_picked)

    def _forget_picked(self) -> None:
        picked, self._picked = self._picked, []
        self._journal.inbox_remove(picked)

    def resolve(self, dedup_key: str) -> bool:
        """Close an episode; a queued, unstarted attempt for it is cancelled (True then)."""
        with self._lock:
            self._journal.mark_episode(dedup_key, "resolved")  # the worker checks it
            return dedup_key in self._queued_keys

    def reset(self) -> None:
        """Forget cooldowns and handled episodes; close the actions' breakers."""
        self._journal.reset()
        for failure in self.config.failures.values():
            for rung in failure.ladder:
                breaker = self._breakers.find(self._breaker_name(rung.action))
                if breaker is not None:
                    breaker.reset()
        self._changed()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (tests, docs, graceful hand-over)."""
        with self._idle:
            return self._idle.wait_for(
                lambda: self._pending == 0 and self._deferred == 0 and self.in_progress == 0,
                timeout,
            )

    def _changed(self) -> None:
        self.version += 1
        with self._idle:
            self._idle.notify_all()

    def queue_length(self) -> int:
        """Events accepted and not yet picked up by a worker."""
        return self._pending

    def cooldowns(self) -> dict[str, float]:
        """Until when (wall clock) each configured failure type is cooling down; 0 if not."""
        stored = self._journal.cooldowns()
        return {ft: (stored[ft].until if ft in stored else 0.0) for ft in self.config.failures}

    @property
    def journal_healthy(self) -> bool:
        """Whether the journal's last write reached the disk."""
        return self._journal.healthy

    # --- the worker ---------------------------------------------------------------------
    async def _worker(self) -> None:
        assert self._queue is not None
        while not self._stopping:
            event, inbox_id = await self._queue.get()
            key = event.dedup_key
            with self._lock:
                self._pending -= 1
                if key:
                    self._queued_keys.discard(key)
                if self._deferred and self._room is not None:
                    self._room.set()
            self._picked_up(inbox_id)
            # Resolved while it waited: cancelled. Replayed after a crash but started before
            # it: a duplicate.
            episode = self._journal.episode(key) if key else None
            try:
                if episode == "resolved":
                    self._count_event("cancelled_resolved")
                elif episode == "handled":
                    detail = "this episode was already handled before a restart"
                    self._record_final(event, LADDER, Outcome.SKIPPED_DUPLICATE, detail)
                elif not self._stopping:
                    await self._walk(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recovery of %s failed unexpectedly", event.failure_type)
            finally:
                self._changed()

    def _cooling(self, event: FailureEvent) -> bool:
        """Record skipped_cooldown and return True while the failure type is cooling down."""
        cooldown = self._journal.cooldown(event.failure_type)
        now = self._clock.time()
        if cooldown is None or now >= cooldown.until:
            return False
        detail = f"cooling down for {cooldown.until - now:.0f}s more"
        self._record_final(event, LADDER, Outcome.SKIPPED_COOLDOWN, detail)
        return True

    async def _walk(self, event: FailureEvent) -> None:
        """One ladder at a time per failure type (two restarts at once would fight); others
        of the type wait their turn, then meet the cooldown the first one started."""
        failure_type = event.failure_type
        if self._cooling(event):
            return
        lock = self._type_locks.setdefault(failure_type, asyncio.Lock())
        with self._lock:
            waiting = self._waiting.get(failure_type, 0)
            crowded = lock.locked() and waiting >= self.config.max_waiting_per_type
            if not crowded:
                self._waiting[failure_type] = waiting + 1
        if crowded:
            detail = f"{waiting} events already wait for this failure type's running ladder"
            self._record_final(event, LADDER, Outcome.SKIPPED_CONCURRENCY, detail)
            return
        acquired = False
        try:
            async with lock:
                acquired = True
                with self._lock:
                    self._waiting[failure_type] -= 1
                if not self._cooling(event):
                    await self._climb(event)
        finally:
            if not acquired:  # cancelled while waiting for the lock
                with self._lock:
                    self._waiting[failure_type] -= 1

    async def _climb(self, event: FailureEvent) -> None:
        failure_type = event.failure_type
        ladder = self._ladders[failure_type]
        with self._lock:
            self.in_progress += 1
        self._changed()
        if event.dedup_key:
            self._journal.mark_episode(event.dedup_key, "handled")
        try:
            for rung in ladder.ladder:
                outcome = await self._rung(event, ladder, rung)
                if outcome is Outcome.SUCCEEDED:
                    self._start_cooldown(failure_type, ladder.cooldown, recovered=True)
                    return
                if outcome in (Outcome.DRY_RUN, Outcome.SKIPPED_RATE_LIMIT):
                    return
            detail = f"none of {len(ladder.ladder)} rungs recovered it; a person is needed"
            log.error("%s: ladder exhausted; %s", failure_type, detail)
            self._record_final(event, LADDER, Outcome.EXHAUSTED, detail)
            self._start_cooldown(failure_type, ladder.cooldown, recovered=False)
        finally:
            with self._lock:
                self.in_progress -= 1
            self._changed()

    async def _rung(self, event: FailureEvent, ladder: FailureConfig, rung: RungConfig) -> Outcome:
        """Gates (rate limit, dry-run; the breaker is in _execute), then the action."""
        action = self._action(rung.action)
        if not self._rate.allow():
            limit = self.config.rate_limit
            detail = f"more than {limit.actions} actions in {limit.per:g}s"
            self._record_final(event, rung.action, Outcome.SKIPPED_RATE_LIMIT, detail)
            return Outcome.SKIPPED_RATE_LIMIT
        ctx = ActionContext(event, dict(rung.params), self.config.dry_run)
        if self.config.dry_run:
            result = await action.run(ctx)
            self._record_final(event, rung.action, Outcome.DRY_RUN, result.detail)
            return Outcome.DRY_RUN
        return await self._execute(event, ladder, rung, action, ctx)

    async def _execute(
        self,
        event: FailureEvent,
        ladder: FailureConfig,
        rung: RungConfig,
        action: Action,
        ctx: ActionContext,
    ) -> Outcome:
        """Run the action through its breaker and under its timeout, then verify."""
        breaker = self._breakers.get(self._breaker_name(rung.action), self._action_breaker)
        started = self._clock.monotonic()
        attempt: list[RecoveryAttempt] = []

        async def guarded() -> ActionResult:
            attempt.append(self._begin(event, rung.action))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the action finishing, and then stop() never gets the worker.
            async with asyncio.timeout(rung.timeout):
                result = await action.run(ctx)
            if not result.ok and not result.unavailable:
                raise ActionFailed(result)
            return result

        try:
            result = await breaker.call_async(guarded)
        except CircuitBreakerOpenError as exc:
            self._record_final(event, rung.action, Outcome.SKIPPED_BREAKER_OPEN, str(exc))
            return Outcome.SKIPPED_BREAKER_OPEN
        except asyncio.CancelledError:
            if attempt:
                self._finish(attempt[0], Outcome.INTERRUPTED, "medic stopped during the action")
            raise
        except Exception as exc:
            return self._end(attempt[0], *self._failure(exc, rung), started)
        if result.unavailable:
            return self._end(attempt[0], Outcome.SKIPPED_UNAVAILABLE, result.detail, started)
        recovered, why = await self._verify(ladder, rung)
        if recovered:
            return self._end(attempt[0], Outcome.SUCCEEDED, result.detail or why, started)
        return self._end(attempt[0], Outcome.NOT_RECOVERED, why, started)

    @staticmethod
    def _failure(exc: Exception, rung: RungConfig) -> tuple[Outcome, str]:
        if isinstance(exc, TimeoutError):
            return Outcome.TIMEOUT, f"no result in {rung.timeout:g}s"
        if isinstance(exc, ActionFailed):
            return Outcome.FAILED, exc.result.detail
        return Outcome.FAILED, f"{type(exc).__name__}: {exc}"

    async def _verify(self, ladder: FailureConfig, rung: RungConfig) -> tuple[bool, str]:
        """Re-run the failure type's checks after the settle delay: is the failure gone?"""
        if not ladder.verify:
            return True, "no checks to verify with"
        settle = ladder.settle_delay if rung.settle_delay is None else rung.settle_delay
        await asyncio.sleep(settle)
        names = list(ladder.verify)
        results = await run_in_daemon_thread(lambda: [self._health.run(n) for n in names])
        failing = [f"{r.name}: {r.reason}" for r in results if not r.ok]
        if failing:
            return False, "still failing: " + "; ".join(failing)
        return True, f"verified by {', '.join(names)}"

    # --- bookkeeping --------------------------------------------------------------------
    def _action(self, name: str) -> Action:
        if name in self._builtins:
            return self._builtins[name]
        spec = self.config.actions.get(name)
        if isinstance(spec, CommandActionConfig):
            return CommandAction(name, spec)
        if isinstance(spec, HttpActionConfig):
            return HttpAction(name, spec)
        if isinstance(spec, SignalActionConfig):
            return SignalAction(name, spec)
        registered = self.actions.get(name)
        if registered is not None and (spec is None or isinstance(spec, InProcessActionConfig)):
            return CallableAction(name, registered)
        return MissingAction(name)

    @staticmethod
    def _breaker_name(action: str) -> str:
        return f"action:{action}"

    def _start_cooldown(
        self, failure_type: str, override: CooldownConfig | None, *, recovered: bool
    ) -> None:
        policy = override or self.config.cooldown
        previous = self._journal.cooldown(failure_type)
        consecutive = 0 if recovered else (previous.consecutive if previous else 0) + 1
        length = min(policy.max, policy.base * policy.multiplier ** max(0, consecutive - 1))
        until = self._clock.time() + length
        self._journal.set_cooldown(failure_type, Cooldown(until, consecutive))

    def _attempt(self, event: FailureEvent, action: str) -> RecoveryAttempt:
        return RecoveryAttempt(
            id=0, failure_type=event.failure_type, action=action, source=event.source,
            started=self._clock.time(), fingerprint=event.fingerprint,
            starts_at=event.starts_at, dedup_key=event.dedup_key,
        )  # fmt: skip

    def _begin(self, event: FailureEvent, action: str) -> RecoveryAttempt:
        attempt = self._attempt(event, action)
        self._journal.begin(attempt)
        if self._events is not None:
            self._events.publish("attempt_started", **attempt.as_dict())
        return attempt

    def _end(
        self, attempt: RecoveryAttempt, outcome: Outcome, detail: str, started: float
    ) -> Outcome:
        elapsed = self._clock.monotonic() - started
        with self._lock:
            histogram = self.durations.get(attempt.action)
            if histogram is None:
                histogram = self.durations[attempt.action] = Histogram([0] * len(DURATION_BUCKETS))
            histogram.observe(elapsed)
        self._finish(attempt, outcome, detail)
        return outcome

    def _finish(self, attempt: RecoveryAttempt, outcome: Outcome, detail: str) -> None:
        self._journal.finish(attempt, outcome, detail[:2000])
        self._count_attempt(attempt.failure_type, attempt.action, outcome)
        if self._events is not None:
            self._events.publish("attempt_finished", **attempt.as_dict())
        level = logging.INFO if outcome is Outcome.SUCCEEDED else logging.WARNING
        log.log(level, "%s: %s %s: %s", attempt.failure_type, attempt.action, outcome.value, detail)

    def _record_final(
        self, event: FailureEvent, action: str, outcome: Outcome, detail: str
    ) -> None:
        attempt = self._attempt(event, action)
        attempt.outcome, attempt.ended, attempt.detail = outcome, attempt.started, detail
        attempt.dry_run = outcome is Outcome.DRY_RUN
        self._journal.begin(attempt)  # one INSERT, already final
        self._count_attempt(event.failure_type, action, outcome)
        if self._events is not None:
            self._events.publish("attempt_finished", **attempt.as_dict())

    def _count_attempt(self, failure_type: str, action: str, outcome: Outcome, n: int = 1) -> None:
        key = (failure_type, action, outcome.value)
        with self._lock:
            self.attempt_counts[key] = self.attempt_counts.get(key, 0) + n
        self._changed()

    def _count_event(self, result: str) -> None:
        with self._lock:
            self.event_counts[result] = self.event_counts.get(result, 0) + 1

    def _refused(self, result: str, detail: str) -> Submission:
        self._count_event(result)
        return Submission(result, detail)

    async def _drain_deferred(self) -> None:
        """Feed events waiting in the journal's inbox into the queue as it frees up."""
        assert self._room is not None and self._queue is not None
        while True:
            await self._room.wait()
            self._room.clear()
            with self._lock:
                free = self.config.queue_size - self._pending
                after, wanted = self._inbox_cursor, min(free, self._deferred)
            if wanted <= 0:
                continue
            load = functools.partial(self._journal.inbox_after, after, wanted)
            batch = await run_in_daemon_thread(load)
            with self._lock:
                lost = wanted - len(batch)
                if lost:
                    # The journal cannot give them back (its writes failed): they are gone.
                    # Forget them, or every later event would queue behind them for ever.
                    log.error("%d deferred events could not be read back from the journal", lost)
                    self._deferred -= lost
                for inbox_id, event in batch:
                    self._deferred -= 1
                    self._pending += 1
                    self._inbox_cursor = inbox_id
                    self._queue.put_nowait((event, inbox_id))
                if self._deferred and self._pending < self.config.queue_size:
                    self._room.set()
            self._changed()  # wakes wait_idle when deferred events were written off

    async def _prune_periodically(self) -> None:
        retention = self.config.retention
        while True:
            await run_in_daemon_thread(
                lambda: self._journal.prune(retention.max_age, retention.max_count)
            )
            await asyncio.sleep(PRUNE_EVERY)

    def snapshot(self) -> dict[str, Any]:
        """Counters for the metrics collector, read together."""
        with self._lock:
            return {
                "deferred": self._deferred,
                "attempts": dict(self.attempt_counts),
                "events": dict(self.event_counts),
                "durations": {
                    k: Histogram(list(v.buckets), v.total, v.count)
                    for k, v in self.durations.items()
                },
                "in_progress": self.in_progress,
                "queue": self._pending,
            }
