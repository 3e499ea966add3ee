"""BoundedRunner: deadlines, abandoned calls, the cap on them, and shutdown."""

from __future__ import annotations

import threading

import pytest

from exporter.checks.runner import BoundedRunner, CallStuck, CallTimeout, RunnerClosed
from tests.helpers import wait_until


def test_returns_value_and_raises_the_calls_own_error() -> None:
    runner = BoundedRunner()
    assert runner.call("a", lambda: 42, timeout=5) == 42
    with pytest.raises(ZeroDivisionError):
        runner.call("a", lambda: 1 / 0, timeout=5)


def test_overrun_frees_the_caller_and_marks_the_key_stuck_until_it_returns() -> None:
    release = threading.Event()
    returned: list[str] = []
    runner = BoundedRunner(on_returned=returned.append)
    with pytest.raises(CallTimeout):
        runner.call("nfs", release.wait, timeout=0.05)
    assert runner.stuck("nfs")
    with pytest.raises(CallStuck):  # no second thread piles up behind the hung one
        runner.call("nfs", lambda: True, timeout=5)
    assert runner.call("other", lambda: "fine", timeout=5) == "fine"
    release.set()
    wait_until(lambda: not runner.stuck("nfs"), what="the hung call to return")
    assert returned == ["nfs"]
    assert runner.call("nfs", lambda: "back", timeout=5) == "back"


def test_abandoned_calls_are_capped() -> None:
    release = threading.Event()
    runner = BoundedRunner(max_abandoned=2)
    for key in ("a", "b"):
        with pytest.raises(CallTimeout):
            runner.call(key, release.wait, timeout=0.01)
    with pytest.raises(CallStuck, match="2 calls are stuck"):
        runner.call("c", lambda: True, timeout=5)
    release.set()
    wait_until(lambda: runner.abandoned_total() == 0)


def test_close_releases_a_waiting_caller_and_refuses_new_calls() -> None:
    release = threading.Event()
    runner = BoundedRunner()
    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            runner.call("hang", release.wait, timeout=60)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    wait_until(lambda: runner._waiting, what="the call to start")
    runner.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], RunnerClosed)
    with pytest.raises(RunnerClosed):
        runner.call("x", lambda: True, timeout=1)
    release.set()
