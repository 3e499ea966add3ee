"""Breaker behaviour: threads, tasks, cancellation, timeouts, decorators, listeners, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest

from exporter.resilience import (
    BreakerRegistry,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    CircuitBreakerOpenError,
    InMemoryBreakerStore,
    SqliteBreakerStore,
)
from exporter.storage.sqlite import Database
from tests.helpers import FakeClock, wait_until

OPEN, HALF_OPEN, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


def boom() -> None:
    raise RuntimeError("boom")


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.settings.failure_threshold):
        with pytest.raises(RuntimeError):
            breaker.call(boom)
    assert breaker.state is OPEN


def test_open_error_says_which_breaker_and_when_to_retry() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("tts", BreakerSettings(failure_threshold=1, wait_duration_in_open=30),
                             clock=clock)  # fmt: skip
    trip(breaker)
    clock.advance(10)
    with pytest.raises(CircuitBreakerOpenError, match=r"'tts' is open; retry in 20.0s") as info:
        breaker.call(lambda: 1)
    assert info.value.retry_after == pytest.approx(20)


def test_half_open_never_admits_more_than_its_cap_across_threads() -> None:
    clock = FakeClock()
    cap = 3
    settings = BreakerSettings(
        failure_threshold=1, wait_duration_in_open=1, permitted_calls_in_half_open=cap
    )
    breaker = CircuitBreaker("gen", settings, clock=clock)
    trip(breaker)
    clock.advance(2)
    release = threading.Event()
    lock = threading.Lock()
    inside = {"now": 0, "max": 0, "admitted": 0, "refused": 0}

    def slow() -> None:
        with lock:
            inside["now"] += 1
            inside["admitted"] += 1
            inside["max"] = max(inside["max"], inside["now"])
        release.wait(10)
        with lock:
            inside["now"] -= 1

    def worker() -> None:
        try:
            breaker.call(slow)
        except CircuitBreakerOpenError:
            with lock:
                inside["refused"] += 1

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    wait_until(lambda: inside["admitted"] + inside["refused"] == 32, what="all 32 attempts")
    assert inside["max"] == cap and inside["admitted"] == cap
    release.set()
    for thread in threads:
        thread.join(5)
    assert breaker.state is CLOSED


def test_the_lock_is_not_held_while_a_call_runs() -> None:
    breaker = CircuitBreaker("shared")
    started, release = threading.Event(), threading.Event()

    def hang() -> None:
        started.set()
        release.wait(10)

    thread = threading.Thread(target=breaker.call, args=(hang,))
    thread.start()
    started.wait(5)
    assert breaker.call(lambda: "other caller") == "other caller"  # not blocked behind it
    assert breaker.snapshot().successful == 1
    release.set()
    thread.join(5)


def test_half_open_cap_holds_for_asyncio_tasks() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "gen", BreakerSettings(failure_threshold=1, permitted_calls_in_half_open=2), clock=clock
    )
    trip(breaker)
    clock.advance(60)

    async def main() -> tuple[int, int]:
        gate = asyncio.Event()
        inside = 0
        peak = 0

        async def slow() -> None:
            nonlocal inside, peak
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1

        tasks = [asyncio.create_task(breaker.call_async(slow)) for _ in range(50)]
        async with asyncio.timeout(5):  # every task has either started a trial or been refused
            while sum(t.done() for t in tasks) + inside < 50:
                await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        refused = sum(isinstance(r, CircuitBreakerOpenError) for r in results)
        return peak, refused

    peak, refused = asyncio.run(main())
    assert peak == 2 and refused == 48
    assert breaker.state is CLOSED


def test_a_cancelled_trial_gives_its_permit_back_and_is_not_a_failure() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("gen", BreakerSettings(failure_threshold=1), clock=clock)
    trip(breaker)
    clock.advance(60)

    async def main() -> None:
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(breaker.call_async(forever))
        await started.wait()
        with pytest.raises(CircuitBreakerOpenError):  # the only trial permit is taken
            await breaker.call_async(asyncio.sleep, 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is HALF_OPEN
        await breaker.call_async(asyncio.sleep, 0)  # the permit came back

    asyncio.run(main())
    snap = breaker.snapshot()
    assert breaker.state is CLOSED
    assert (snap.failed, snap.ignored) == (1, 1)


def test_async_call_timeout_cancels_and_counts_as_failure() -> None:
    breaker = CircuitBreaker("slow", BreakerSettings(failure_threshold=1, call_timeout=0.05))

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await breaker.call_async(asyncio.sleep, 10)

    asyncio.run(main())
    assert breaker.state is OPEN and breaker.snapshot().failed == 1


def test_sync_call_over_its_timeout_returns_but_counts_as_failure() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "slow", BreakerSettings(failure_threshold=1, call_timeout=1.0), clock=clock
    )

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.state is OPEN


def test_decorator_and_context_managers_sync_and_async() -> None:
    breaker = CircuitBreaker("deco", BreakerSettings(failure_threshold=2))

    @breaker
    def double(x: int) -> int:
        return 2 * x

    @breaker
    async def triple(x: int) -> int:
        return 3 * x

    assert double(2) == 4 and double.__name__ == "double"
    assert asyncio.run(triple(2)) == 6
    with breaker:
        pass
    with pytest.raises(ValueError), breaker:
        raise ValueError("inside")

    async def use_async_cm() -> None:
        async with breaker:
            raise KeyError("async inside")

    with pytest.raises(KeyError):
        asyncio.run(use_async_cm())
    assert breaker.state is OPEN
    with pytest.raises(CircuitBreakerOpenError), breaker:
        pass
    snap = breaker.snapshot()
    assert (snap.successful, snap.failed, snap.not_permitted) == (3, 2, 1)


def test_ignored_exceptions_and_keyboard_interrupt_are_not_failures() -> None:
    breaker = CircuitBreaker(
        "ig", BreakerSettings(failure_threshold=1, ignore_exceptions=(KeyError,))
    )
    with pytest.raises(KeyError):
        breaker.call(lambda: {"a": 1}["x"])

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.state is CLOSED and breaker.snapshot().ignored == 2


def test_listeners_hear_transitions_and_a_bad_listener_is_contained() -> None:
    heard: list[tuple[str, str]] = []

    def bad(*_: object) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("l", BreakerSettings(failure_threshold=1, wait_duration_in_open=0))
    breaker.add_listener(bad)
    breaker.add_listener(lambda _b, a, b: heard.append((a.value, b.value)))
    trip(breaker)
    breaker.call(lambda: None)
    breaker.force_open()
    breaker.disable()
    breaker.reset()
    assert heard == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "closed"),
        ("closed", "forced_open"), ("forced_open", "disabled"), ("disabled", "closed"),
    ]  # fmt: skip


def test_failure_rate_over_the_window_with_a_minimum_of_calls() -> None:
    breaker = CircuitBreaker("rate", BreakerSettings(
        failure_threshold=0, failure_rate_threshold=0.5, sliding_window_size=4,
        minimum_number_of_calls=4))  # fmt: skip
    for fn in (boom, lambda: None, boom):
        with contextlib.suppress(RuntimeError):
            breaker.call(fn)
    assert breaker.state is CLOSED  # 2 of 3 failed, but 4 calls are needed
    breaker.call(lambda: None)
    assert breaker.state is OPEN  # 2 of 4 = 50 %


def test_open_breaker_is_still_open_after_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    db = Database(tmp_path / "medic.db")
    registry = BreakerRegistry(clock=clock, store=SqliteBreakerStore(db))
    settings = BreakerSettings(failure_threshold=1, wait_duration_in_open=60)
    trip(registry.get("model", settings))
    registry.get("admin").force_open()
    db.close()

    clock.advance(20)  # the process restarts 20 s later
    db = Database(tmp_path / "medic.db")
    again = BreakerRegistry(clock=clock, store=SqliteBreakerStore(db))
    model = again.get("model", settings)
    assert model.state is OPEN
    assert model.retry_after() == pytest.approx(40)
    assert again.get("admin").state is BreakerState.FORCED_OPEN
    assert again.get("fresh").state is CLOSED
    clock.advance(41)
    model.call(lambda: None)  # the wait carried over; this is the trial
    assert model.state is CLOSED
    db.close()


def test_registry_shares_breakers_by_name() -> None:
    registry = BreakerRegistry(store=InMemoryBreakerStore())
    registry.declare("gen", BreakerSettings(failure_threshold=7))
    first = registry.get("gen", BreakerSettings(failure_threshold=2))
    assert first is registry.get("gen") and first.settings.failure_threshold == 7
    assert registry.find("absent") is None
    with pytest.raises(ValueError, match="already in use"):
        registry.declare("gen", BreakerSettings(failure_threshold=3))
    heard: list[str] = []
    registry.add_listener(lambda b, _f, _t: heard.append(b.name))
    registry.get("later").force_open()
    first.force_open()
    assert heard == ["later", "gen"]
