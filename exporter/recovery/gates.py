"""Gates: small policies an episode passes before its ladder and each rung before it runs.

Each gate has one job and answers admit, wait or skip (with the outcome recorded for the
skip). `Gates` tries them in a fixed order; the first answer that is not admit wins, and
gates that had already admitted are told to let go (a breaker's half-open permit goes back).
Episode gates: cooldown, one ladder per failure type. Rung gates: the action's breaker, the
rate limit, dry-run. Later gates (per target, budget, fleet) slot into the same chains.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from exporter.clock import Clock
from exporter.config.recovery import RecoveryConfig, RungConfig
from exporter.recovery.episode import Episode
from exporter.recovery.types import Outcome
from exporter.resilience import BreakerRegistry, BreakerSettings, CircuitBreakerOpenError

if TYPE_CHECKING:
    from exporter.recovery.dispatch import Dispatcher
    from exporter.recovery.journal import Journal

Settle = Callable[[bool | None], None]
"""Told how the admitted rung went: True succeeded, False failed, None did not count."""


class Verdict(NamedTuple):
    """A gate's answer."""

    kind: Literal["admit", "wait", "skip"]
    outcome: Outcome | None = None
    detail: str = ""
    ends_ladder: bool = True
    """For a skipped rung: whether the ladder stops (else it moves to the next rung)."""
    settle: tuple[Settle, ...] = ()


ADMIT = Verdict("admit")
WAIT = Verdict("wait")


def skip(outcome: Outcome, detail: str, *, ends_ladder: bool = True) -> Verdict:
    """A skip with its outcome and reason."""
    return Verdict("skip", outcome, detail, ends_ladder)


@dataclass(frozen=True, slots=True)
class Step:
    """What is at a gate: an episode about to start its ladder, or one of its rungs."""

    episode: Episode
    rung: RungConfig | None = None


class Gate(Protocol):
    """One policy."""

    def check(self, step: Step) -> Verdict:
        """Admit, wait or skip."""
        ...


class Gates:
    """Gates tried in order."""

    def __init__(self, *gates: Gate) -> None:
        self.gates = gates

    def check(self, step: Step) -> Verdict:
        """The first verdict that is not admit; or admit, carrying every gate's settle."""
        settles: list[Settle] = []
        for gate in self.gates:
            verdict = gate.check(step)
            if verdict.kind != "admit":
                for settle in settles:
                    settle(None)
                return verdict
            settles.extend(verdict.settle)
        return Verdict("admit", settle=tuple(settles))


# --- episode gates ------------------------------------------------------------------------
class CooldownGate:
    """A failure type rests after a ladder: events in that time are skipped_cooldown."""

    def __init__(self, journal: Journal, clock: Clock) -> None:
        self._journal, self._clock = journal, clock

    def check(self, step: Step) -> Verdict:
        """Skip while the cooldown runs; an episode already mid-ladder goes on."""
        if step.episode.started:
            return ADMIT
        cooldown = self._journal.cooldown(step.episode.failure_type)
        now = self._clock.time()
        if cooldown is None or now >= cooldown.until:
            return ADMIT
        return skip(Outcome.SKIPPED_COOLDOWN, f"cooling down for {cooldown.until - now:.0f}s more")


class OnePerType:
    """One ladder per failure type at a time (two restarts at once would fight); a few
    events may wait behind the running one, more are skipped_concurrency."""

    def __init__(self, dispatcher: Dispatcher, max_waiting: int) -> None:
        self._dispatcher, self._max = dispatcher, max_waiting

    def check(self, step: Step) -> Verdict:
        """Admit the holder of the type's slot; wait for it; or skip when crowded."""
        episode = step.episode
        if self._dispatcher.holds(episode):
            return ADMIT
        failure_type = episode.failure_type
        waiting = self._dispatcher.waiting(failure_type)
        if self._dispatcher.busy(failure_type) and waiting >= self._max and not episode.started:
            detail = f"{waiting} events already wait for this failure type's running ladder"
            return skip(Outcome.SKIPPED_CONCURRENCY, detail)
        return WAIT


# --- rung gates ---------------------------------------------------------------------------
class BreakerGate:
    """Each action has a breaker `action:<name>`: an action that keeps failing is skipped
    (skipped_breaker_open) and the ladder moves on to its next rung."""

    def __init__(self, breakers: BreakerRegistry, settings: BreakerSettings) -> None:
        self._breakers, self._settings = breakers, settings

    @staticmethod
    def name(action: str) -> str:
        """The breaker's name for an action."""
        return f"action:{action}"

    def check(self, step: Step) -> Verdict:
        """Take the breaker's permission; the runner settles it with the rung's result."""
        assert step.rung is not None
        breaker = self._breakers.get(self.name(step.rung.action), self._settings)
        try:
            trial = breaker.acquire_permission()
        except CircuitBreakerOpenError as exc:
            return skip(Outcome.SKIPPED_BREAKER_OPEN, str(exc), ends_ladder=False)

        def settle(ok: bool | None) -> None:
            if ok is None:
                breaker.release_permission(trial)
            elif ok:
                breaker.on_success(trial)
            else:
                breaker.on_error(trial)

        return Verdict("admit", settle=(settle,))


class SlidingWindow:
    """At most `limit` takes in any `per` seconds."""

    def __init__(self, limit: int, per: float) -> None:
        self.limit, self.per = limit, per
        self._takes: deque[float] = deque()

    def take(self, now: float) -> bool:
        """Take a slot at `now` if one is free."""
        while self._takes and self._takes[0] <= now - self.per:
            self._takes.popleft()
        if len(self._takes) >= self.limit:
            return False
        self._takes.append(now)
        return True

    def give_back(self, taken: float) -> None:
        """Return the slot taken at `taken` (what it was for did not happen)."""
        if self._takes and self._takes[-1] == taken:
            self._takes.pop()


class RateLimitGate:
    """At most `limit` rungs started per `per` seconds, across failure types (sliding)."""

    def __init__(self, limit: int, per: float, clock: Clock) -> None:
        self._window, self._clock = SlidingWindow(limit, per), clock

    def check(self, step: Step) -> Verdict:
        """Take a slot if one is free; otherwise the ladder stops (skipped_rate_limit)."""
        if not self._window.take(self._clock.monotonic()):
            window = self._window
            return skip(Outcome.SKIPPED_RATE_LIMIT,
                        f"more than {window.limit} actions in {window.per:g}s")  # fmt: skip
        return ADMIT


class DryRunGate:
    """Under dry-run every rung is described, not run, and the ladder stops there."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled

    def check(self, step: Step) -> Verdict:
        """Skip with dry_run while enabled (the runner adds the action's description)."""
        return skip(Outcome.DRY_RUN, "dry run") if self._enabled else ADMIT


class TargetGate:
    """Rungs that act on the same target (a unit, a container …) never run at once, and
    the target's cooldown and budget of disruptive actions hold across failure types: three
    alerts that each would restart vllm.service within a minute restart it once."""

    def __init__(self, config: RecoveryConfig, clock: Clock) -> None:
        self._actions, self._targets, self._clock = config.actions, config.targets, clock
        self._busy: dict[str, int] = {}  # target -> the episode acting on it
        self._budgets: dict[str, SlidingWindow] = {
            name: SlidingWindow(spec.budget.actions, spec.budget.per)
            for name, spec in config.targets.items()
            if spec.budget is not None
        }
        self._rested_from: dict[str, float] = {}  # target -> when its last disruption ended

    def check(self, step: Step) -> Verdict:
        """Take the target for this rung, or skip with the reason (the ladder ends: the
        other ladder's action on it is the remedy in progress)."""
        assert step.rung is not None
        action = self._actions.get(step.rung.action)
        target = action.target if action is not None else None
        if action is None or target is None:
            return ADMIT
        holder = self._busy.get(target)
        if holder is not None:
            return skip(Outcome.SKIPPED_TARGET_BUSY,
                        f"{target} is being acted on by episode {holder}")  # fmt: skip
        disruptive = action.is_disruptive()
        limits = self._targets.get(target)
        now = self._clock.monotonic()
        if disruptive and limits is not None:
            rested = self._rested_from.get(target)
            if rested is not None and now < rested + limits.cooldown:
                left = rested + limits.cooldown - now
                return skip(Outcome.SKIPPED_TARGET_COOLDOWN, f"{target} rests for {left:.0f}s more")
            budget = self._budgets.get(target)
            if budget is not None and not budget.take(now):
                return skip(Outcome.SKIPPED_TARGET_BUDGET,
                            f"{target} had {budget.limit} disruptive actions in "
                            f"{budget.per:g}s")  # fmt: skip
        self._busy[target] = step.episode.id

        def settle(ok: bool | None) -> None:
            """After the rung and its verification; None: it did not run after all."""
            self._busy.pop(target, None)
            if not disruptive:
                return
            if ok is None:  # a later gate refused, or medic stopped first: not a disruption
                budget = self._budgets.get(target)
                if budget is not None:
                    budget.give_back(now)
                return
            self._rested_from[target] = self._clock.monotonic()

        return Verdict("admit", settle=(settle,))
