"""Drain before a disruptive rung: a real HTTP server under steady load (four clients in a
loop) is restarted by the process action. With drain (take it out of rotation, wait until
its in-flight gauge is zero, restart, put it back) no request that began before the drain
fails; without it, the restart cuts off the requests in flight, and the test counts them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from exporter.app import Medic
from tests.e2e.stack import free_port
from tests.helpers import wait_until
from tests.recovery.conftest import settled

ROOT = Path(__file__).parents[2]


@dataclass
class Request:
    began: float
    status: int | None  # None: the connection failed (cut off, refused)
    accepted: float | None
    error: str = ""


class Load:
    """Clients in a loop against /work until stopped; every request recorded."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url, self.done = url, threading.Event()
        self.requests: list[Request] = []
        self._threads = [threading.Thread(target=self._loop) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self.done.is_set():
                began = time.time()
                try:
                    response = client.get(self.url)
                    accepted = response.headers.get("X-Accepted-At")
                    at = float(accepted) if accepted else None
                    self.requests.append(Request(began, response.status_code, at))
                except httpx.HTTPError as exc:
                    self.requests.append(Request(began, None, None, type(exc).__name__))
                    time.sleep(0.02)  # refused while it restarts: do not spin

    def stop(self) -> None:
        self.done.set()
        for thread in self._threads:
            thread.join(10)

    def failed_before(self, moment: float) -> list[Request]:
        """Requests the server had begun (or the client had sent) before `moment` that did
        not end in a 200."""
        return [r for r in self.requests if r.status != 200
                and (r.accepted if r.accepted is not None else r.began) < moment]  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.fixtures.drainable", str(port), str(tmp_path)]
    first = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
               if (tmp_path / "server.pid").exists() else False, what="the server")  # fmt: skip
    yield port, tmp_path
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int((tmp_path / "server.pid").read_text()), signal.SIGKILL)
    with contextlib.suppress(OSError):
        first.kill()
    first.wait(10)


def config(port: int, work: Path, drain: bool) -> str:
    base = f"http://127.0.0.1:{port}"
    drained = (f"""
      drain:
        call: {{url: {base}/drain}}
        idle: {{url: {base}/metrics, metrics: [inflight_requests]}}
        deadline: 10s
        undo: {{url: {base}/undrain}}""" if drain else "")  # fmt: skip
    return f"""
checks:
  - {{name: ready, type: http, url: {base}/ready, interval: 1h, failure_threshold: 1}}
recovery:
  actions:
    restart_server:
      type: process
      pidfile: {work}/server.pid
      grace: 5s
      start: [{sys.executable}, -m, tests.fixtures.drainable, '{port}', {work}]
      cwd: {ROOT}{drained}
  failures:
    generation_pipeline_error:
      ladder: [{{action: restart_server, timeout: 40s}}]
      verify: [ready]
      settle_delay: 0s
      verify_timeout: 20s
      verify_interval: 100ms
"""


def restart_under_load(start_medic: Callable[[str], Medic], port: int, work: Path,
                       drain: bool) -> tuple[Load, float, str]:  # fmt: skip
    load = Load(f"http://127.0.0.1:{port}/work")
    try:
        wait_until(lambda: sum(r.status == 200 for r in load.requests) >= 8,
                   what="steady load")  # fmt: skip
        medic = start_medic(config(port, work, drain))
        asked = time.time()
        assert medic.report_failure("generation_pipeline_error").accepted
        [found] = settled(medic, 1)
        # Load goes on a while after the restart: the new server must serve it.
        served = len(load.requests)
        wait_until(lambda: sum(r.status == 200 for r in load.requests[served:]) >= 8,
                   what="load served again")  # fmt: skip
    finally:
        load.stop()
    assert found.outcome.value == "succeeded", found.detail
    return load, asked, found.detail


def test_with_drain_no_request_that_began_before_it_fails(
    server: tuple[int, Path], start_medic: Callable[[str], Medic]
) -> None:
    port, work = server
    old = int((work / "server.pid").read_text())
    load, _, detail = restart_under_load(start_medic, port, work, drain=True)
    drained_at = float((work / "drained_at").read_text())
    assert int((work / "server.pid").read_text()) != old  # it was restarted
    assert load.failed_before(drained_at) == []
    began_before = [r for r in load.requests if r.began < drained_at]
    assert len(began_before) >= 8
    assert detail.startswith(f"drained: POST http://127.0.0.1:{port}/drain: 200; in flight ")
    assert f"; undone: POST http://127.0.0.1:{port}/undrain: 200" in detail


def test_without_drain_the_restart_fails_requests_in_flight(
    server: tuple[int, Path], start_medic: Callable[[str], Medic]
) -> None:
    port, work = server
    load, asked, _ = restart_under_load(start_medic, port, work, drain=False)
    # Sent before medic was even asked, and failed: in flight when the restart came.
    cut_off = load.failed_before(asked)
    assert cut_off, "a restart under load cut nothing off"
    assert {r.error for r in cut_off} <= {"RemoteProtocolError", "ReadError"}, cut_off
    assert not (work / "drained_at").exists()
