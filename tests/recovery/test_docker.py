"""The docker action against a stand-in Engine API on a unix socket (tests/fixtures/dockerd.py):
stop, the old tree gone, start (or one restart call without hygiene), and the engine's
errors (no such container, 500, no answer, no socket) each a clear `failed` detail."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.app import Medic
from tests.fixtures.dockerd import DockerStandIn
from tests.recovery.conftest import dead, run

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DockerStandIn]:
    stand_in = DockerStandIn(str(tmp_path / "docker.sock"), {"vllm": SLEEPER, "tgi": SLEEPER})
    yield stand_in
    stand_in.close()


def action(tmp_path: Path, container: str, extra: str = "") -> str:
    return f"{{type: docker, container: {container}, socket: {tmp_path}/docker.sock{extra}}}"


def test_a_container_is_stopped_cleaned_and_started(
    engine: DockerStandIn, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    old = engine.containers["vllm"].inspect()["State"]["Pid"]
    outcome, detail = run(start_medic, action(tmp_path, "vllm", ", stop_timeout: 2"))
    assert outcome == "succeeded", detail
    assert detail.startswith(f"restarted vllm: pid {old} -> ")
    assert detail.endswith("; old tree of 1 process gone")
    assert engine.starts == 1 and dead(old)  # the real effect
    assert engine.calls == ["GET /containers/vllm/json", "POST /containers/vllm/stop",
                            "POST /containers/vllm/start", "GET /containers/vllm/json"]  # fmt: skip
    engine.calls.clear()
    outcome, detail = run(start_medic, action(
        tmp_path, "vllm", ", api_version: '1.43', hygiene: {tree: false}"))  # fmt: skip
    assert outcome == "succeeded" and detail.endswith("; no hygiene asked"), detail
    assert engine.calls[1] == "POST /v1.43/containers/vllm/restart" and engine.starts == 2


def test_engine_errors_are_clear_failures(
    engine: DockerStandIn, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    assert run(start_medic, action(tmp_path, "nosuch")) == (
        "failed", "no such container: nosuch")  # fmt: skip
    engine.containers["tgi"].fail = "driver failed programming external connectivity"
    assert run(start_medic, action(tmp_path, "tgi")) == ("failed", (
        "POST /start: 500 driver failed programming external connectivity"))  # fmt: skip
    engine.containers["vllm"].hang = True
    outcome, detail = run(start_medic, action(tmp_path, "vllm", ", api_timeout: 1s"))
    assert (outcome, detail) == ("failed", "the Docker engine did not answer GET "
                                 "/containers/vllm/json within 1s")  # fmt: skip
    missing = tmp_path / "none.sock"
    outcome, detail = run(start_medic, f"{{type: docker, container: vllm, socket: {missing}}}")
    assert outcome == "failed"
    assert detail.startswith(f"cannot reach the Docker engine at {missing}: ")
