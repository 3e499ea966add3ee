"""CheckScheduler: every check runs at its interval; a hung one never holds up the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.checks import CheckSpec, HealthChecker
from exporter.scheduler import CheckScheduler
from tests.helpers import wait_until


def test_a_hung_check_does_not_stop_the_others_and_stop_does_not_wait_for_it() -> None:
    release = threading.Event()
    runs: list[float] = []

    def tick() -> bool:
        runs.append(time.monotonic())
        return True

    health = HealthChecker()
    health.register(CheckSpec("hang", release.wait, interval=0.2, timeout=0.1))
    health.register(CheckSpec("tick", tick, interval=0.1))
    scheduler = CheckScheduler(health)
    scheduler.start()
    try:
        wait_until(lambda: len(runs) >= 5, timeout=10, what="five runs of the healthy check")
        hang = {s.spec.name: s for s in health.states()}["hang"]
        assert hang.stuck
        assert hang.last is not None and hang.last.reason in ("timeout", "stuck")
    finally:
        started = time.monotonic()
        scheduler.stop()
        health.close()
        stop_took = time.monotonic() - started
        release.set()
    assert stop_took < 2, f"stop waited {stop_took:.2f}s for a hung check"


def test_first_round_runs_at_start_and_disabled_checks_do_not_run() -> None:
    ran: list[str] = []

    def probe(name: str) -> Callable[[], bool]:
        def run() -> bool:
            ran.append(name)
            return True

        return run

    health = HealthChecker()
    health.register(CheckSpec("a", probe("a"), interval=3600))
    health.register(CheckSpec("b", probe("b"), interval=3600, enabled=False))
    scheduler = CheckScheduler(health)
    scheduler.start()
    try:
        wait_until(health.ready, what="the first round")
        assert ran == ["a"]
    finally:
        scheduler.stop()
