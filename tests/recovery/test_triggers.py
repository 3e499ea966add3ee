"""Failing streaks and local triggers: a check that becomes failing runs its ladder, once
per streak, through the same gates as an alert, and an Alertmanager silence holds it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.app import Medic
from exporter.checks import HealthChecker
from exporter.checks.base import CheckSpec
from tests.e2e.stack import Alertmanager
from tests.fixtures.standin import StandIn
from tests.helpers import FakeClock, wait_until
from tests.recovery.conftest import attempts, settled


def scripted(results: list[bool]) -> Callable[[], bool]:
    """A probe that returns the given results in order."""
    queue = list(results)
    return lambda: queue.pop(0)


def test_a_streak_needs_failure_threshold_failures_and_ends_after_success_threshold() -> None:
    health = HealthChecker(FakeClock())
    health.register(CheckSpec("api", scripted([False, False, True, False, False, False, True,
                                               True]), failure_threshold=3,
                              success_threshold=2))  # fmt: skip
    seen = []
    for _ in range(8):
        health.run("api")
        seen.append(health.streak("api").failing)
    # two failures and a pass: no streak; three failures: failing; one pass is not enough.
    assert seen == [False, False, False, False, False, True, True, False]


def test_failures_in_the_start_period_are_not_counted() -> None:
    clock = FakeClock()
    health = HealthChecker(clock)
    health.register(CheckSpec("api", lambda: False, failure_threshold=2, start_period=60))
    for _ in range(5):
        health.run("api")  # a server still loading its model
    assert health.streak("api").failures == 0 and not health.streak("api").failing
    clock.advance(61)
    health.run("api")
    health.run("api")
    assert health.streak("api").failing


CONFIG = """
checks:
  - name: api
    type: http
    url: {url}/v1/models
    interval: 300ms
    timeout: 300ms
    failure_threshold: 3
    trigger: generation_pipeline_error
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart_server: {{type: http, url: "{url}/admin/restart"}}
  failures:
    generation_pipeline_error:
      verify: [api]
      settle_delay: 0s
      verify_timeout: 5s
      verify_interval: 100ms
      ladder: [restart_server]
"""


@pytest.fixture
def server() -> Iterator[StandIn]:
    stand_in = StandIn()
    yield stand_in
    stand_in.stop()


def triggered(medic: Medic, result: str) -> int:
    assert medic.triggers is not None
    return medic.triggers.counts[("api", result)]


def test_a_hung_server_is_restarted_once_per_streak_and_verified(
    start_medic: Callable[[str], Medic], server: StandIn
) -> None:
    medic = start_medic(CONFIG.format(url=server.url))
    wait_until(lambda: medic.health.results().get("api"), what="the first probe")
    assert triggered(medic, "accepted") == 0  # born at 0
    server.state = "hung"
    [found] = settled(medic, 1)
    # The real effect: the stand-in saw one restart; verification waited for it to serve.
    assert server.restarts == 1
    assert (found.action, found.outcome.value, found.source) == (
        "restart_server",
        "succeeded",
        "check",
    )
    assert found.detail.startswith("200 ") and "; verified by api" in found.detail
    assert triggered(medic, "accepted") == 1
    # The streak ended with the restart. A new hang is a new streak and a new episode.
    wait_until(lambda: not medic.health.streak("api").failing, what="the streak to end")
    server.state = "error"
    both = settled(medic, 2)
    assert server.restarts == 2 and triggered(medic, "accepted") == 2
    assert len({a.dedup_key for a in both}) == 2


def test_a_streak_that_ends_before_its_ladder_starts_closes_the_episode(
    start_medic: Callable[[str], Medic], server: StandIn
) -> None:
    medic = start_medic(CONFIG.format(url=server.url).replace(
        "cooldown: {base: 0s}", "cooldown: {base: 1h}"))  # fmt: skip
    wait_until(lambda: medic.health.results().get("api"), what="the first probe")
    server.state = "error"
    [first] = settled(medic, 1)
    assert first.outcome.value == "succeeded" and server.restarts == 1
    server.state = "error"  # fails again while the failure type cools down
    wait_until(lambda: triggered(medic, "accepted") == 2, what="the second streak's trigger")
    server.state = "ok"  # and recovers by itself
    wait_until(lambda: not medic.health.streak("api").failing, what="the streak to end")
    found = settled(medic, 2)
    assert found[-1].outcome.value == "skipped_cooldown" and server.restarts == 1


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    manager = Alertmanager("route: {receiver: none}\nreceivers: [{name: none}]\n",
                           tmp_path / "am")  # fmt: skip
    yield manager
    manager.stop()


def test_an_alertmanager_silence_holds_a_local_trigger(
    start_medic: Callable[[str], Medic], server: StandIn, alertmanager: Alertmanager
) -> None:
    silence = alertmanager.silence({"check": "api", "alertname": "MedicLocalTrigger"})
    medic = start_medic(
        CONFIG.format(url=server.url)
        + f"""
webhook:
  pull: {{alertmanagers: ["{alertmanager.url}"], interval: 500ms, timeout: 400ms}}
"""
    )
    wait_until(lambda: medic.health.results().get("api"), what="the first probe")
    server.state = "hung"
    wait_until(lambda: triggered(medic, "held_silenced") >= 3, timeout=15,
               what="the silence to hold the trigger")  # fmt: skip
    assert server.restarts == 0 and not attempts(medic)
    alertmanager.http("DELETE", f"/api/v2/silence/{silence}").raise_for_status()
    [found] = settled(medic, 1)  # the silence expired: the trigger goes on
    assert found.outcome.value == "succeeded" and server.restarts == 1
    assert triggered(medic, "accepted") == 1
