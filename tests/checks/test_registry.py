"""HealthChecker: the seeds' register/run/run_all/enable/disable/status surface."""

from __future__ import annotations

import threading

import pytest

from exporter.checks import CheckSpec, HealthChecker, Observation, SystemHealthStatus
from tests.helpers import FakeClock


def test_run_records_result_and_last_success(clock: FakeClock) -> None:
    health = HealthChecker(clock)
    health.register_probe("ok", lambda: Observation(facts=("fact",)))
    result = health.run("ok")
    assert result.ok and result.reason == "" and result.facts == ("fact",)
    assert result.started_at == clock.now
    state = health.states()[0]
    assert state.last == result and state.last_success == clock.now


def test_a_raising_check_fails_with_class_and_message_and_others_go_on() -> None:
    health = HealthChecker()

    def broken() -> None:
        raise PermissionError("/models is not readable")

    health.register_probe("broken", broken)
    health.register_probe("fine", lambda: True)
    results = health.run_all()
    assert results["broken"].ok is False
    assert results["broken"].reason == "PermissionError: /models is not readable"
    assert results["fine"].ok is True


def test_probe_return_values() -> None:
    health = HealthChecker()
    health.register_probe("none", lambda: None)
    health.register_probe("false", lambda: False)
    health.register_probe("problems", lambda: Observation(problems=("a", "b")))
    health.register_probe("nonsense", lambda: 42)  # type: ignore[arg-type, return-value]
    results = health.run_all()
    assert results["none"].ok
    assert (results["false"].ok, results["false"].reason) == (False, "probe returned False")
    assert results["problems"].reason == "a; b"
    assert results["nonsense"].reason.startswith("TypeError: probe returned int")


def test_timeout_reports_timeout_then_stuck_until_the_probe_returns() -> None:
    release = threading.Event()
    health = HealthChecker()
    health.register(CheckSpec("hang", release.wait, interval=1, timeout=0.05))
    assert health.run("hang").reason == "timeout"
    assert health.states()[0].stuck
    assert health.run("hang").reason == "stuck"
    release.set()


def test_status_is_unhealthy_only_when_a_critical_check_fails() -> None:
    health = HealthChecker()
    outcome = {"model": True, "disk": True}
    health.register(CheckSpec("model", lambda: outcome["model"], critical=True))
    health.register(CheckSpec("disk", lambda: outcome["disk"]))
    health.run_all()
    assert health.status() is SystemHealthStatus.HEALTHY
    outcome["disk"] = False
    health.run_all()
    assert health.status() is SystemHealthStatus.DEGRADED
    outcome["model"] = False
    health.run_all()
    assert health.status() is SystemHealthStatus.UNHEALTHY


def test_disable_removes_the_result_and_skips_scheduled_runs() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return True

    health = HealthChecker()
    health.register_probe("c", probe)
    health.run("c")
    health.disable("c")
    assert health.results() == {} and health.ready()
    assert health.run_if_enabled("c") is None and len(calls) == 1
    health.enable("c")
    assert not health.ready()
    assert health.run_if_enabled("c") is not None and len(calls) == 2


def test_ready_after_every_enabled_check_ran_once() -> None:
    health = HealthChecker()
    health.register_probe("a", lambda: True)
    health.register_probe("b", lambda: False)
    assert not health.ready()
    health.run("a")
    assert not health.ready()
    health.run("b")
    assert health.ready()


def test_names_are_unique_and_unknown_names_are_errors() -> None:
    health = HealthChecker()
    health.register_probe("a", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        health.register_probe("a", lambda: True)
    with pytest.raises(KeyError, match="no check named 'zz'"):
        health.run("zz")
    health.unregister("a")
    assert health.names() == []


def test_listeners_hear_every_result_and_a_failing_listener_is_contained() -> None:
    health = HealthChecker()
    heard: list[object] = []

    def bad(_result: object) -> None:
        raise RuntimeError("listener bug")

    health.add_listener(bad)
    health.add_listener(heard.append)
    health.register_probe("a", lambda: True)
    result = health.run("a")
    assert heard == [result]


def test_invalid_spec_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        CheckSpec("x", lambda: True, interval=0)
