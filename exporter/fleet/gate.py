"""The fleet stage every disruptive rung passes: the blast-radius guard, then a slot.

Unlike the rung gates (gates.py), it can take minutes and talks to the network, so it is
awaited on the engine's loop. It answers with a permit (the rung runs, and gives the slot
back when it is concluded) or with None (the episode's alert resolved while it waited).

A rung the fleet holds is an outcome of its own: `held_fleet_limit` (a budget is exceeded),
`held_fleet_unknown` (Prometheus or etcd does not answer and the fail mode is "hold"),
`held_fleet_slot` (it waited `hold_after` for a slot). Each hold is journaled and counted
once, shown in `medic_fleet_held_rungs{reason}` (MedicFleetLimitReached pages on it), and
ends when the fleet recovers or a person releases it (`medic fleet release`). A release
lifts the guard and the fail-closed holds; a full semaphore still makes the rung wait,
because "at most K at once" is the one promise that no single host may break.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.config.fleet import FleetConfig
from exporter.fleet.guard import Answer, BlastRadiusGuard
from exporter.fleet.semaphore import EtcdSemaphore, EtcdUnavailable, Holder, Slot
from exporter.histogram import Histogram
from exporter.recovery.episode import Episode
from exporter.recovery.types import Outcome

log = logging.getLogger(__name__)

REASONS = {
    Outcome.HELD_FLEET_LIMIT: "limit",
    Outcome.HELD_FLEET_UNKNOWN: "unknown",
    Outcome.HELD_FLEET_SLOT: "slot",
}
"""Each hold's outcome and its `reason` label."""
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0)

OnHold = Callable[[Episode, str, Outcome, str], None]
"""Told once per hold: the episode, the rung's action, the outcome and why."""


@dataclass(slots=True)
class Held:
    """A rung the fleet holds now."""

    episode: int
    failure_type: str
    action: str
    outcome: Outcome
    detail: str
    since: float


@dataclass(slots=True)
class Permit:
    """A rung may run; `give_back` after it is concluded."""

    slot: Slot | None = None
    released_by: str | None = None
    _gate: FleetGate | None = field(default=None, repr=False)

    async def give_back(self) -> None:
        """Give the slots back (revoke the lease); an error leaves them to the TTL."""
        if self._gate is not None:
            await self._gate.give_back(self)


class FleetGate:
    """Guard and semaphore, with the holds, releases and counters around them."""

    def __init__(
        self,
        fleet: FleetConfig,
        *,
        guard: BlastRadiusGuard | None,
        semaphore: EtcdSemaphore | None,
        on_hold: OnHold | None = None,
        changed: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = fleet
        self.guard, self.semaphore = guard, semaphore
        self.on_hold: OnHold = on_hold or (lambda *_: None)
        """Set by the ladder: journals and counts each hold."""
        self._changed, self._monotonic = changed, monotonic
        self.held: dict[int, Held] = {}
        self._released: dict[int, str] = {}  # episode -> who released it
        self._wakes: dict[int, asyncio.Event] = {}
        self.slots: dict[int, float] = {}  # lease -> since: this host's slots held now
        self.lost = 0
        self.guard_answers: dict[str, int] = {"ok": 0, "over": 0, "unknown": 0}
        self.wait = Histogram(WAIT_BUCKETS)
        self.last_answer: Answer | None = None

    # --- the stage ----------------------------------------------------------------------
    async def admit(self, episode: Episode, action: str) -> Permit | None:
        """Wait until the fleet lets this rung run; None when its alert resolved meanwhile."""
        began = self._monotonic()
        slot_wait: float | None = None
        guard_ok_at: float | None = None
        try:
            while True:
                if episode.resolved:
                    return None
                released = self._released.get(episode.id)
                guard = self.guard
                if (
                    guard is not None
                    and released is None
                    and (
                        guard_ok_at is None
                        or self._monotonic() - guard_ok_at >= guard.config.recheck
                    )
                ):
                    answer = await guard.check(episode.failure_type)
                    self.guard_answers[answer.kind] += 1
                    self.last_answer = answer
                    if answer.kind == "over" or (
                        answer.kind == "unknown" and guard.config.on_error == "hold"
                    ):
                        outcome = (Outcome.HELD_FLEET_LIMIT if answer.kind == "over"
                                   else Outcome.HELD_FLEET_UNKNOWN)  # fmt: skip
                        self._hold(episode, action, outcome, answer.detail)
                        await self._pause(episode, guard.config.recheck)
                        continue
                    if answer.kind == "unknown":
                        log.warning("%s: %s; proceeding (fleet.guard.on_error: proceed)",
                                    episode.failure_type, answer.detail)  # fmt: skip
                    guard_ok_at = self._monotonic()
                slot = None
                if self.semaphore is not None:
                    config = self.semaphore.config
                    try:
                        got = await asyncio.to_thread(self.semaphore.try_take,
                                                      episode.failure_type, action)  # fmt: skip
                    except EtcdUnavailable as exc:
                        if config.on_error == "hold" and released is None:
                            self._hold(episode, action, Outcome.HELD_FLEET_UNKNOWN,
                                       f"cannot take a fleet slot: {exc}")  # fmt: skip
                            await self._pause(episode, config.poll)
                            continue
                        log.warning("%s: cannot take a fleet slot (%s); proceeding (%s)",
                                    episode.failure_type, exc,
                                    f"released by {released}" if released
                                    else "fleet.semaphore.on_error: proceed")  # fmt: skip
                        got = None
                    if isinstance(got, list):
                        slot_wait = self._monotonic() if slot_wait is None else slot_wait
                        if self._monotonic() - slot_wait >= config.hold_after:
                            self._hold(episode, action, Outcome.HELD_FLEET_SLOT,
                                       waited(self._monotonic() - slot_wait, got))  # fmt: skip
                        await self._pause(episode, config.poll)
                        continue
                    slot = got
                permit = Permit(slot, released, self)
                if slot is not None:
                    self._keep(slot)
                self.wait.observe(self._monotonic() - began)
                return permit
        finally:
            self._unhold(episode)

    def _keep(self, slot: Slot) -> None:
        """Keep the lease alive while the rung runs; a lost lease is counted and logged."""
        assert self.semaphore is not None
        semaphore = self.semaphore
        self.slots[slot.lease] = slot.since
        self._changed()

        async def keep() -> None:
            period = max(semaphore.config.ttl / 3, 0.5)
            while True:
                await asyncio.sleep(period)
                try:
                    alive = await asyncio.to_thread(semaphore.keepalive, slot)
                except EtcdUnavailable as exc:
                    alive = time.monotonic() - slot.last_ok < semaphore.config.ttl
                    log.warning("cannot refresh the fleet slot's lease: %s", exc)
                if not alive and not slot.lost:
                    slot.lost = True
                    self.lost += 1
                    self._changed()
                    log.error("the fleet slot's lease expired while the rung runs: another host "
                              "may take the slot (etcd unreachable for %ss)",
                              semaphore.config.ttl)  # fmt: skip

        slot.keeper = asyncio.get_running_loop().create_task(keep())

    async def give_back(self, permit: Permit) -> None:
        """Stop the keep-alive and revoke the lease."""
        slot, permit.slot = permit.slot, None
        if slot is None or self.semaphore is None:
            return
        if slot.keeper is not None:
            slot.keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.keeper
        self.slots.pop(slot.lease, None)
        self._changed()
        try:
            await asyncio.to_thread(self.semaphore.release, slot)
        except EtcdUnavailable as exc:
            log.warning("cannot give the fleet slot back (%s); it frees when its lease expires "
                        "in %ss", exc, self.semaphore.config.ttl)  # fmt: skip

    # --- holds and releases -------------------------------------------------------------
    def _hold(self, episode: Episode, action: str, outcome: Outcome, detail: str) -> None:
        held = self.held.get(episode.id)
        if held is not None and held.outcome is outcome:
            held.detail = detail
            return
        self.held[episode.id] = Held(episode.id, episode.failure_type, action, outcome, detail,
                                     time.time())  # fmt: skip
        self.on_hold(episode, action, outcome, detail)
        self._changed()

    def _unhold(self, episode: Episode) -> None:
        self._released.pop(episode.id, None)
        self._wakes.pop(episode.id, None)
        if self.held.pop(episode.id, None) is not None:
            self._changed()

    async def _pause(self, episode: Episode, seconds: float) -> None:
        wake = self._wakes.setdefault(episode.id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    def release(self, episode: int | None, who: str) -> list[int]:
        """A person lets held rungs go past the guard (one episode, or all); on the loop."""
        chosen = [e for e in self.held if episode is None or e == episode]
        for each in chosen:
            self._released[each] = who
            self.wake(each)
        return chosen

    def wake(self, episode: int) -> None:
        """Look again now (a release, a resolved alert); on the loop."""
        event = self._wakes.get(episode)
        if event is not None:
            event.set()

    async def close(self) -> None:
        """Close the guard's client."""
        if self.guard is not None:
            await self.guard.close()


def waited(seconds: float, holders: list[Holder]) -> str:
    """Why a rung is still waiting for a slot."""
    who = ", ".join(f"{h.host} ({h.failure_type}/{h.action} since "
                    f"{time.strftime('%H:%M:%S', time.localtime(h.since))})"
                    for h in holders[:5])  # fmt: skip
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return f"waited {seconds:.0f}s for a fleet slot; held by {who}{more}"
