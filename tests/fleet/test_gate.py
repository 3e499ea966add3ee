"""The fleet stage's holds, releases and cancellations, with a guard that answers as told."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from exporter.config.fleet import FleetConfig
from exporter.fleet.gate import FleetGate
from exporter.fleet.guard import Answer
from exporter.recovery.episode import Episode
from exporter.recovery.types import FailureEvent, Outcome

FLEET = FleetConfig.model_validate(
    {"guard": {"budgets": [{"max_affected": "50%"}], "recheck": "10ms"}}
)


class ToldGuard:
    """Answers what the test sets; counts the questions."""

    def __init__(self, answer: Answer, on_error: str = "hold") -> None:
        self.answer, self.asked = answer, 0
        assert FLEET.guard is not None
        self.config = FLEET.guard.model_copy(update={"on_error": on_error})

    async def check(self, _failure_type: str) -> Answer:
        self.asked += 1
        return self.answer

    async def close(self) -> None:
        pass


def stage(guard: ToldGuard) -> tuple[FleetGate, list[tuple[Any, ...]]]:
    holds: list[tuple[Any, ...]] = []
    gate = FleetGate(FLEET, guard=guard, semaphore=None,  # type: ignore[arg-type]
                     on_hold=lambda *args: holds.append(args))  # fmt: skip
    return gate, holds


def episode() -> Episode:
    return Episode(7, FailureEvent("vram_exhaustion", "alert"), 0.0)


async def until(predicate: Any) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.005)


def test_within_budget_the_rung_runs_at_once() -> None:
    gate, holds = stage(ToldGuard(Answer("ok", "within every budget")))
    permit = asyncio.run(gate.admit(episode(), "restart"))
    assert permit is not None and permit.released_by is None
    assert holds == [] and gate.guard_answers["ok"] == 1


def test_over_budget_holds_once_then_a_person_releases_it() -> None:
    guard = ToldGuard(Answer("over", "the fleet: 8 of 12 hosts (67%)"))
    gate, holds = stage(guard)
    ep = episode()

    async def scenario() -> Any:
        task = asyncio.create_task(gate.admit(ep, "restart"))
        await until(lambda: guard.asked >= 3)  # it keeps asking while held
        assert ep.id in gate.held and not task.done()
        assert gate.release(None, "oncall") == [ep.id]
        return await task

    permit = asyncio.run(scenario())
    assert permit is not None and permit.released_by == "oncall"
    assert [(h[1], h[2]) for h in holds] == [("restart", Outcome.HELD_FLEET_LIMIT)]  # once
    assert gate.held == {}


def test_a_resolved_alert_ends_the_hold_without_running() -> None:
    gate, holds = stage(ToldGuard(Answer("over", "too many")))
    ep = episode()

    async def scenario() -> Any:
        task = asyncio.create_task(gate.admit(ep, "restart"))
        await until(lambda: ep.id in gate.held)
        ep.resolved = True
        gate.wake(ep.id)
        return await task

    assert asyncio.run(scenario()) is None
    assert len(holds) == 1 and gate.held == {}


def test_an_unanswered_guard_holds_fail_closed_and_proceeds_fail_open() -> None:
    unknown = Answer("unknown", "cannot ask Prometheus: ConnectError")
    gate, holds = stage(ToldGuard(unknown, on_error="proceed"))
    assert asyncio.run(gate.admit(episode(), "restart")) is not None
    assert holds == []
    gate, holds = stage(ToldGuard(unknown, on_error="hold"))
    ep = episode()

    async def scenario() -> None:
        task = asyncio.create_task(gate.admit(ep, "restart"))
        await until(lambda: holds)
        task.cancel()  # medic stops: the hold ends with it
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert [h[2] for h in holds] == [Outcome.HELD_FLEET_UNKNOWN]
    assert gate.held == {}
