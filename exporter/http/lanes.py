"""Scrapes and intake on one event loop, neither starving the other.

A scrape is cheap (pre-rendered bytes) but a scraper that asks back to back never lets up:
on these machines one cut webhook intake from 4.0k to 1.3k notifications/s, most of that
the scraper's own CPU and the loop's time answering it. While webhook requests are in
flight, scrapes are paced by a token bucket (`rate` per second, `burst` at once): any real
Prometheus (a scrape per target every few seconds, an HA pair, a federation) never waits,
and a runaway scraper gets `rate` answers per second, each within 1/rate seconds (intake
cannot starve it either). With no intake in flight, scrapes are not paced at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

SCRAPE_RATE = 200.0
"""Scrapes per second while intake is in flight (Prometheus at a 1 s interval: 1/s)."""
SCRAPE_BURST = 20.0


class Lanes:
    """Counts intake in flight and paces scrapes meanwhile. Use from one event loop."""

    def __init__(
        self,
        rate: float = SCRAPE_RATE,
        burst: float = SCRAPE_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rate, self._burst, self._clock, self._sleep = rate, burst, clock, sleep
        self._tokens = burst
        self._at = clock()
        self.intake_in_flight = 0
        self.paced = 0
        """Scrapes that waited for a token (they were answered, a little later)."""

    def intake_began(self) -> None:
        """A webhook request is being handled."""
        self.intake_in_flight += 1

    def intake_ended(self) -> None:
        """It was answered (or its client left)."""
        self.intake_in_flight -= 1

    async def scrape(self) -> None:
        """Wait for a scrape's turn: at once unless intake is in flight and the bucket is
        empty; then at most 1/rate seconds."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self.intake_in_flight == 0 or self._tokens >= 1.0:
            self._tokens = max(0.0, self._tokens - 1.0)
            return
        wait = (1.0 - self._tokens) / self._rate
        self._tokens -= 1.0  # taken now, paid for by the wait
        self.paced += 1
        await self._sleep(wait)
