"""Walking one episode's ladder, rung by rung.

For each rung: a resolved alert cancels it; the rung gates may skip it; otherwise its start
is recorded and committed (held while the journal cannot commit), only then the action
runs, under its timeout, and the failure type's checks are re-run to verify. The rung's end
and, when the ladder is over, the episode's final state are recorded as one group each.

Guarantees this file keeps: an action starts only after its start record is committed; a
rung whose start was committed is never started again (after a crash it is adopted, taken
as finished, or treated as interrupted), except a command the journal proves never ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.checks import HealthChecker
from exporter.clock import Clock
from exporter.config.recovery import (
    ActionBase,
    FailureConfig,
    RecoveryConfig,
    RestartBase,
    RungConfig,
)
from exporter.recovery import launch
from exporter.recovery.accounting import Accounting
from exporter.recovery.actions import Action, ActionContext
from exporter.recovery.claims import Claims
from exporter.recovery.endings import Endings
from exporter.recovery.episode import Episode, Launch
from exporter.recovery.gates import BreakerGate, Gates, Settle, Step, Verdict
from exporter.recovery.journal import Journal
from exporter.recovery.promquery import PrometheusQuery
from exporter.recovery.types import ActionResult, FailureEvent, Outcome, RecoveryAttempt
from exporter.recovery.verify import verify
from exporter.resilience import BreakerRegistry, BreakerSettings
from exporter.storage.sqlite import CommitWaits

if TYPE_CHECKING:
    from exporter.fleet.gate import FleetGate

log = logging.getLogger(__name__)

HOLD_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


class Dropped(Exception):
    """The episode's claim failed to commit: it must not act."""


"""Seconds between tries to record a rung's start while the journal cannot commit."""


class Ladder:
    """Runs episodes' ladders on the engine's loop."""

    def __init__(
        self,
        config: RecoveryConfig,
        *,
        journal: Journal,
        claims: Claims,
        accounting: Accounting,
        gates: Gates,
        actions: Callable[[str], Action],
        health: HealthChecker,
        breakers: BreakerRegistry,
        breaker_settings: BreakerSettings,
        clock: Clock,
        runs: Path,
        stopping: Callable[[], bool],
        commits: CommitWaits,
        evidence: Callable[[FailureEvent, str], str | None] = lambda _event, _action: None,
        fleet: FleetGate | None = None,
    ) -> None:
        self._config = config
        self._fleet = fleet
        if fleet is not None:
            fleet.on_hold = self._held
        self._evidence = evidence
        self._commits = commits
        self._journal = journal
        self._claims = claims
        self._accounting = accounting
        self._gates = gates
        self._actions = actions
        self._health = health
        self._prometheus = PrometheusQuery(config.prometheus_url) if config.prometheus_url else None
        self._breakers = breakers
        self._breaker_settings = breaker_settings
        self._clock = clock
        self._runs = runs
        self._stopping = stopping
        self.endings = Endings(config, journal=journal, claims=claims, accounting=accounting,
                               clock=clock, runs=runs)  # fmt: skip

    def _startup(self, rung: RungConfig) -> float | None:
        """The rung's action's start-up deadline (a typed restart's hygiene), if any."""
        spec = self._config.actions.get(rung.action)
        return spec.hygiene.start_deadline if isinstance(spec, RestartBase) else None

    # --- the walk -----------------------------------------------------------------------
    def close(self) -> None:
        """Release what verification holds (the Prometheus client)."""
        if self._prometheus is not None:
            self._prometheus.close()

    async def walk(self, episode: Episode) -> None:
        """Walk the episode's ladder from its current rung to a final state."""
        ladder = self._config.failures.get(episode.failure_type)
        if ladder is None:
            await self.endings.end(episode, Outcome.CANCELLED, "its failure type has no ladder now")
            return
        if episode.resume is not None and await self._resume(episode, ladder):
            return
        while episode.rung < len(ladder.ladder):
            rung = ladder.ladder[episode.rung]
            if not self._claims.start(episode):
                await self.endings.cancel(
                    episode, f"resolved before rung {episode.rung + 1} started"
                )
                return
            verdict = self._gates.check(Step(episode, rung))
            assert verdict.kind != "wait", "rung gates admit or skip"
            if verdict.kind == "skip":
                if await self._skipped(episode, rung, verdict):
                    return
                continue
            outcome = await self._within_fleet(episode, ladder, rung, verdict.settle)
            if outcome is None:
                return
            if outcome is Outcome.SUCCEEDED or episode.dropped:
                return
        detail = f"none of {len(ladder.ladder)} rungs recovered it; a person is needed"
        await self.endings.end(
            episode,
            Outcome.EXHAUSTED,
            detail,
            cooldown=self.endings.cooldown(episode, ladder, False),
        )

    async def _within_fleet(
        self, episode: Episode, ladder: FailureConfig, rung: RungConfig, settle: tuple[Settle, ...]
    ) -> Outcome | None:
        """Run the rung; a disruptive one first passes the fleet stage and holds its slot
        until it is concluded. None when its alert resolved while the fleet held it."""
        disruptive = self._disruptive(rung)
        permit = None
        if disruptive and self._fleet is not None:
            try:
                permit = await self._fleet.admit(episode, rung.action)
            except BaseException:
                for each in settle:
                    each(None)
                raise
            if permit is None:
                for each in settle:
                    each(None)
                await self.endings.cancel(
                    episode, f"resolved while the fleet held rung {episode.rung + 1}"
                )
                return None
        self._accounting.disruptive(+1 if disruptive else 0)
        try:
            outcome = await self._run(episode, ladder, rung, settle)
        except asyncio.CancelledError:
            # medic stops: an adopted command may go on, so the slot is left to its lease's
            # TTL instead of being given back now.
            if permit is not None and permit.slot is not None and permit.slot.keeper:
                permit.slot.keeper.cancel()
            raise
        else:
            if permit is not None:
                await permit.give_back()
        finally:
            self._accounting.disruptive(-1 if disruptive else 0)
        return outcome

    def _disruptive(self, rung: RungConfig) -> bool:
        """Whether the rung's action disrupts its target (the fleet's limits count it)."""
        spec = self._config.actions.get(rung.action)
        return isinstance(spec, ActionBase) and spec.is_disruptive()

    def _held(self, episode: Episode, action: str, outcome: Outcome, detail: str) -> None:
        """The fleet holds a rung: one final record of the hold, counted (the rung itself
        runs later, as an attempt of its own, or never when its alert resolves)."""
        record = self.endings.record(episode, action, outcome, detail, episode.rung)
        self._journal.record(record)
        self._accounting.finished(record)

    async def _skipped(self, episode: Episode, rung: RungConfig, verdict: Verdict) -> bool:
        """Record a rung a gate skipped; True when that ends the ladder."""
        assert verdict.outcome is not None
        detail = verdict.detail
        if verdict.outcome is Outcome.DRY_RUN:
            described = await self._actions(rung.action).run(self._context(episode, rung, 0))
            detail = described.detail
        record = self.endings.record(episode, rung.action, verdict.outcome, detail, episode.rung)
        if verdict.ends_ladder:
            await self.endings.end(episode, verdict.outcome, detail, record=record)
            return True
        episode.rung += 1
        self._journal.skip_rung(episode, record)
        self._accounting.finished(record)
        return False

    async def _run(
        self, episode: Episode, ladder: FailureConfig, rung: RungConfig, settle: tuple[Settle, ...]
    ) -> Outcome:
        """Record the rung's start, run it, verify, record its end."""
        attempt = self._journal.new_attempt(
            self.endings.attempt(episode, rung.action, episode.rung)
        )
        episode.attempt, episode.launch = attempt, None
        # What a disruptive rung against a GPU would wipe, taken now, committed with the
        # rung's start: before the action can run.
        evidence = self._evidence(episode.event, rung.action)
        try:
            await self._hold_until_started(episode, attempt, evidence)
        except Dropped:  # its claim never committed: its arrival was refused, nothing runs
            for each in settle:
                each(None)
            self._claims.forget(episode)
            self.endings.rung_ended(episode, attempt, Outcome.INTERRUPTED, "its claim failed")
            return Outcome.INTERRUPTED
        except BaseException:  # medic stops before the action started: it never ran
            for each in settle:
                each(None)
            never = "medic stopped before the action started; it never ran"
            self.endings.rung_ended(episode, attempt, Outcome.INTERRUPTED, never)
            raise
        self._accounting.started(attempt)
        started = self._clock.monotonic()
        ctx = self._context(episode, rung, attempt.id)
        try:
            async with asyncio.timeout(rung.timeout):
                result = await self._actions(rung.action).run(ctx)
        except TimeoutError:
            result = ActionResult(False, f"no result in {rung.timeout:g}s")
            outcome: Outcome | None = Outcome.TIMEOUT
        except asyncio.CancelledError:
            for each in settle:
                each(None)
            self.endings.stopped_during(episode, attempt)
            raise
        except Exception as exc:
            result, outcome = ActionResult(False, f"{type(exc).__name__}: {exc}"), None
        else:
            outcome = None
        # The gates are settled once the rung is concluded: a target stays taken while
        # its start-up is verified (a second restart then would only restart it again).
        try:
            return await self._conclude(
                episode, ladder, rung, attempt, result, outcome=outcome, started=started
            )
        finally:
            for each in settle:
                each(None if result.unavailable else result.ok)

    async def _conclude(
        self,
        episode: Episode,
        ladder: FailureConfig,
        rung: RungConfig,
        attempt: RecoveryAttempt,
        result: ActionResult,
        *,
        outcome: Outcome | None,
        started: float | None,
    ) -> Outcome:
        """From an action's result to the rung's outcome; records it, and the episode's end
        when the ladder is over."""
        detail = result.detail
        if outcome is None:
            if result.unavailable:
                outcome = Outcome.SKIPPED_UNAVAILABLE
            elif not result.ok:
                outcome = Outcome.FAILED
            else:
                recovered, why = await verify(
                    self._health, ladder, rung, self._stopping, self._prometheus,
                    startup=self._startup(rung),
                )  # fmt: skip
                outcome = Outcome.SUCCEEDED if recovered else Outcome.NOT_RECOVERED
                detail = why
                if recovered and result.detail:
                    # What the action said, and what verification found when there was any.
                    detail = f"{result.detail}; {why}" if ladder.verifies else result.detail
        elapsed = None if started is None else self._clock.monotonic() - started
        if outcome is Outcome.SUCCEEDED:
            await self.endings.end(
                episode, Outcome.SUCCEEDED, detail, closing=(attempt, outcome, detail, elapsed),
                cooldown=self.endings.cooldown(episode, ladder, True),
            )  # fmt: skip
            return outcome
        episode.rung += 1
        self.endings.rung_ended(episode, attempt, outcome, detail, elapsed)
        return outcome

    # --- after a restart ------------------------------------------------------------------
    async def _resume(self, episode: Episode, ladder: FailureConfig) -> bool:
        """Deal with the rung that was in flight when the last medic stopped; True when that
        ended the episode. See resume.py for how `episode.resume` was decided."""
        how, attempt = episode.resume, episode.attempt
        episode.resume = None
        if attempt is None:
            return False
        rung = ladder.ladder[min(episode.rung, len(ladder.ladder) - 1)]
        files = launch.RunFiles.of(self._runs, attempt.id)
        if how == "never_ran":
            detail = "medic stopped before the command started; it never ran"
            self.endings.rung_ended(episode, attempt, Outcome.INTERRUPTED, detail)
            return False  # the same rung runs now: its first start never happened
        if how in ("adopted", "finished_while_down"):
            remaining = attempt.started + rung.timeout - self._clock.time()
            result, timed_out = await launch.adopt(episode.launch, files, remaining)
            outcome = Outcome.TIMEOUT if timed_out else None
            self._settle_breaker(rung.action, result)
            concluded = await self._conclude(
                episode, ladder, rung, attempt, result, outcome=outcome, started=None
            )
            return concluded is Outcome.SUCCEEDED
        return await self._interrupted(episode, ladder, rung, attempt)

    async def _interrupted(
        self, episode: Episode, ladder: FailureConfig, rung: RungConfig,
        attempt: RecoveryAttempt,
    ) -> bool:  # fmt: skip
        """The in-flight rung may have run: never start it again. retry_once: verify, then
        go on with the next rung; give_up (or a second interruption): end for a person."""
        detail = "medic stopped during the action; it may have run, so it is not started again"
        if attempt.outcome is Outcome.INTERRUPTED:  # recorded at a graceful stop
            detail = attempt.detail or detail
        if self._config.interrupted == "retry_once" and episode.interruptions == 0:
            episode.interruptions += 1
            recovered, why = (
                await verify(
                    self._health,
                    ladder,
                    rung,
                    self._stopping,
                    self._prometheus,
                    startup=self._startup(rung),
                )
                if ladder.verifies
                else (False, "")
            )
            if recovered:
                await self.endings.end(
                    episode, Outcome.SUCCEEDED, f"verified after a restart: {why}",
                    closing=(attempt, Outcome.INTERRUPTED, detail, None),
                    cooldown=self.endings.cooldown(episode, ladder, True),
                )  # fmt: skip
                return True
            episode.rung += 1
            self.endings.rung_ended(episode, attempt, Outcome.INTERRUPTED, detail)
            return False
        reason = (f"interrupted by a restart ({self._config.interrupted}, "
                  f"{episode.interruptions + 1} time(s)); a person is needed")  # fmt: skip
        await self.endings.end(
            episode, Outcome.INTERRUPTED, reason,
            closing=(attempt, Outcome.INTERRUPTED, detail, None),
            cooldown=self.endings.cooldown(episode, ladder, False),
        )  # fmt: skip
        return True

    def _settle_breaker(self, action: str, result: ActionResult) -> None:
        """An adopted command's result counts on its action's breaker too."""
        breaker = self._breakers.get(BreakerGate.name(action), self._breaker_settings)
        if result.ok:
            breaker.on_success(False)
        elif not result.unavailable:
            breaker.on_error(False)

    # --- pieces -----------------------------------------------------------------------------
    async def _hold_until_started(
        self, episode: Episode, attempt: RecoveryAttempt, evidence: str | None = None
    ) -> None:
        """Record the rung's start and wait for its commit. While the journal cannot commit,
        nothing runs: try again with backoff (until medic stops). Raises Dropped when the
        episode's claim failed and its source retries (the arrival was refused)."""
        tries = 0
        while True:
            started = await self._commits.committed(self._started(episode, attempt, evidence))
            # Batches commit in order: the claim's batch is done by now.
            claimed = episode.claimed is None or episode.claimed.result()
            if started and claimed:
                break
            if episode.dropped:
                raise Dropped
            if not claimed:
                episode.unclaimed = True  # an app's report: written again, then run
            if tries == 0:
                log.error("%s: cannot record the start of %s; holding it until the journal "
                          "commits again", episode.failure_type, attempt.action)  # fmt: skip
                self._accounting.result("held_journal_down")
            await asyncio.sleep(HOLD_BACKOFF[min(tries, len(HOLD_BACKOFF) - 1)])
            tries += 1
        self._journal.remember(attempt)

    def _started(
        self, episode: Episode, attempt: RecoveryAttempt, evidence: str | None = None
    ) -> Future[bool] | None:
        """Queue the rung's start record, after the claim again if that failed to commit."""
        if episode.unclaimed:
            episode.unclaimed = False
            episode.claimed = self._journal.add_episode(episode)
        return self._journal.start_rung(episode, attempt, evidence)

    def _context(self, episode: Episode, rung: RungConfig, attempt_id: int) -> ActionContext:
        async def record_launch(recorded: Launch) -> bool:
            episode.launch = recorded
            attempt = episode.attempt
            assert attempt is not None
            return await self._commits.committed(self._journal.record_launch(attempt, recorded))

        return ActionContext(
            episode.event, dict(rung.params), dry_run=self._config.dry_run,
            attempt_id=attempt_id, episode=episode.key or f"episode-{episode.id}",
            runs=self._runs, record_launch=record_launch, stopping=self._stopping,
        )  # fmt: skip
