"""Scrapes paced only while intake is in flight, each wait bounded (issue 19)."""

from __future__ import annotations

import asyncio

import pytest

from exporter.http.lanes import Lanes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Waits:
    def __init__(self) -> None:
        self.clock, self.waited = Clock(), list[float]()

    async def sleep(self, seconds: float) -> None:
        self.waited.append(seconds)
        self.clock.now += seconds  # the wait passes on the lanes' clock


@pytest.fixture
def waits() -> Waits:
    return Waits()


def test_scrapes_are_never_paced_without_intake_in_flight(waits) -> None:
    clock, waited = waits.clock, waits.waited
    lanes = Lanes(rate=100.0, burst=5.0, clock=clock, sleep=waits.sleep)

    async def scrapes() -> None:
        for _ in range(1000):  # back to back, no time passing
            await lanes.scrape()

    asyncio.run(scrapes())
    assert waited == [] and lanes.paced == 0


def test_a_runaway_scraper_gets_the_rate_while_intake_is_in_flight(waits) -> None:
    clock, waited = waits.clock, waits.waited
    lanes = Lanes(rate=100.0, burst=5.0, clock=clock, sleep=waits.sleep)

    async def scrapes(count: int) -> None:
        for _ in range(count):
            await lanes.scrape()

    lanes.intake_began()
    began = clock.now
    asyncio.run(scrapes(105))
    assert lanes.paced == 100  # the burst went at once, then one per 1/rate
    assert max(waited) <= 1 / 100 + 1e-9  # no scrape waits longer than 1/rate
    assert clock.now - began == pytest.approx(1.0)  # 100 paced scrapes: one second
    lanes.intake_ended()
    clock.now += 1.0
    waited.clear()
    asyncio.run(scrapes(50))
    assert waited == []  # intake done: unpaced again
