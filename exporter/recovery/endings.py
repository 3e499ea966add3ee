"""How rungs and episodes end on record: final states, the records that say so, cooldowns,
and a command's files, which go only once its end is committed."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from exporter.clock import Clock
from exporter.config.recovery import CooldownConfig, FailureConfig, RecoveryConfig
from exporter.recovery import launch
from exporter.recovery.accounting import Accounting
from exporter.recovery.claims import Claims
from exporter.recovery.episode import Episode
from exporter.recovery.journal import Cooldown, Journal
from exporter.recovery.types import LADDER, FailureEvent, Outcome, RecoveryAttempt

Closing = tuple[RecoveryAttempt, Outcome, str, float | None]
"""The attempt in flight that an end closes: the attempt, its outcome, detail, and how long
it ran (None: not measured here, e.g. adopted)."""


class Endings:
    """Writes the ends: of an episode (with its records and cooldown) and of rungs."""

    def __init__(
        self,
        config: RecoveryConfig,
        *,
        journal: Journal,
        claims: Claims,
        accounting: Accounting,
        clock: Clock,
        runs: Path,
    ) -> None:
        self._config = config
        self._journal = journal
        self._claims = claims
        self._accounting = accounting
        self._clock = clock
        self._runs = runs

    async def cancel(self, episode: Episode, detail: str) -> None:
        """The episode was resolved before its next rung: cancelled."""
        self._accounting.result("cancelled_resolved")
        await self.end(episode, Outcome.CANCELLED, detail)

    async def end(
        self,
        episode: Episode,
        outcome: Outcome,
        detail: str,
        *,
        record: RecoveryAttempt | None = None,
        closing: Closing | None = None,
        cooldown: Cooldown | None = None,
    ) -> None:
        """The episode's final state, with a record about the whole ladder unless one is
        given, or the rung that closes it succeeded (that attempt says it all)."""
        if record is None and (closing is None or closing[1] is not Outcome.SUCCEEDED):
            record = self.record(episode, LADDER, outcome, detail, None)
        self._claims.close(episode, outcome.value)
        episode.attempt = episode.launch = None
        attempt_close = None if closing is None else closing[:3]
        ended = self._journal.end_episode(episode, detail, closing=attempt_close, record=record,
                                          cooldown=cooldown)  # fmt: skip
        if closing is not None:
            self.files_after(closing[0], ended)
            self._accounting.finished(closing[0], closing[3])
        if record is not None:
            self._accounting.finished(record)

    def rung_ended(
        self, episode: Episode, attempt: RecoveryAttempt, outcome: Outcome, detail: str,
        elapsed: float | None = None,
    ) -> None:  # fmt: skip
        """The rung in flight ended without ending the ladder (episode.rung says what is
        next: the following rung, or the same one when it never ran)."""
        episode.attempt = episode.launch = None
        self.files_after(attempt, self._journal.end_rung(episode, attempt, outcome, detail))
        self._accounting.finished(attempt, elapsed)

    def stopped_during(self, episode: Episode, attempt: RecoveryAttempt) -> None:
        """medic stops while the rung runs. A command goes on (the next medic adopts it); an
        action in this process dies with it: recorded interrupted, resumed by the policy."""
        if episode.launch is not None:
            return
        self._journal.interrupt(attempt, "medic stopped during the action")
        self._accounting.finished(attempt)

    def files_after(self, attempt: RecoveryAttempt, commit: Future[bool] | None) -> None:
        """Remove a closed attempt's command files once its end is committed, never before:
        until then a restart reads them to know whether the command ran (see resume.py)."""
        files = launch.RunFiles.of(self._runs, attempt.id)
        if commit is None:
            files.remove()
            return

        def forget(done: Future[bool]) -> None:
            if done.result():
                files.remove()

        commit.add_done_callback(forget)

    def cooldown(self, episode: Episode, ladder: FailureConfig, recovered: bool) -> Cooldown:
        """The failure type's next cooldown: base after a recovery, growing while ladders
        keep ending without one."""
        policy: CooldownConfig = ladder.cooldown or self._config.cooldown
        previous = self._journal.cooldown(episode.failure_type)
        consecutive = 0 if recovered else (previous.consecutive if previous else 0) + 1
        length = min(policy.max, policy.base * policy.multiplier ** max(0, consecutive - 1))
        return Cooldown(self._clock.time() + length, consecutive)

    def attempt(self, episode: Episode, action: str, rung: int | None) -> RecoveryAttempt:
        """A new attempt of the episode (not yet recorded)."""
        return new_attempt(episode.event, action, self._clock.time(), episode.id, rung)

    def record(
        self, episode: Episode, action: str, outcome: Outcome, detail: str, rung: int | None
    ) -> RecoveryAttempt:
        """A final record (a skip, or an end of the whole ladder)."""
        return final_record(episode.event, action, outcome, detail, self._clock.time(),
                            episode_id=episode.id, rung=rung)  # fmt: skip


def new_attempt(
    event: FailureEvent, action: str, started: float, episode_id: int | None = None,
    rung: int | None = None,
) -> RecoveryAttempt:  # fmt: skip
    """An attempt for the event, running (not yet recorded)."""
    return RecoveryAttempt(
        id=0, failure_type=event.failure_type, action=action, source=event.source,
        started=started, fingerprint=event.fingerprint, starts_at=event.starts_at,
        dedup_key=event.dedup_key, episode_id=episode_id, rung=rung,
    )  # fmt: skip


def final_record(
    event: FailureEvent, action: str, outcome: Outcome, detail: str, now: float,
    *, episode_id: int | None = None, rung: int | None = None,
) -> RecoveryAttempt:  # fmt: skip
    """A record that is final as written: a skip, a duplicate, an end of a whole ladder."""
    record = new_attempt(event, action, now, episode_id, rung)
    record.outcome, record.ended, record.detail = outcome, now, detail[:2000]
    record.dry_run = outcome is Outcome.DRY_RUN
    return record
