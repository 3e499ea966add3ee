"""The supervisor action against a real supervisord (PyPI's 4.3.0 in .stack/pytriton):
restart a program and wait until it runs again, over the unix socket and over
[inet_http_server] with basic auth; errors say what went wrong."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.app import Medic
from tests.e2e.stack import MODEL_SERVER_VENV, free_port, needs_supervisord
from tests.helpers import wait_until
from tests.recovery.conftest import dead, run, settled

VENV = MODEL_SERVER_VENV
pytestmark = needs_supervisord
CONF = """
[unix_http_server]
file={work}/s.sock
chmod=0700
[inet_http_server]
port=127.0.0.1:{port}
username=medic
password=s3cret
[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
childlogdir={work}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:sleeper]
command={python} -c "import time; time.sleep(600)"
startsecs=1
stopasgroup=true
killasgroup=true
[program:slow]
command={python} {work}/slow.py {slow_port}
startsecs=1
stopasgroup=true
killasgroup=true
[program:leaky]
command={python} {work}/leaky.py
startsecs=1
stopasgroup=false
killasgroup=false
"""

# A program whose engine ignores SIGTERM: supervisord (no stopasgroup) stops only the main.
LEAKY = """
import os, signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import os, signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open('{work}/engine.pid', 'w').write(str(os.getpid())); time.sleep(600)"])
time.sleep(600)
"""

# A server that listens 2.5 s after its start: RUNNING (startsecs=1) is not serving yet.
SLOW = """
import http.server, sys, time
time.sleep(2.5)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                http.server.SimpleHTTPRequestHandler).serve_forever()
"""


class Supervisord:
    def __init__(self, work: Path) -> None:
        self.work, self.port = work, free_port()
        self.slow_port = free_port()
        (work / "leaky.py").write_text(LEAKY.format(work=work))
        (work / "slow.py").write_text(SLOW)
        conf = CONF.format(work=work, port=self.port, python=sys.executable,
                           slow_port=self.slow_port)  # fmt: skip
        (work / "supervisord.conf").write_text(conf)
        subprocess.run([str(VENV / "bin" / "supervisord"), "-c", str(work / "supervisord.conf")],
                       check=True, timeout=30)  # fmt: skip
        wait_until(lambda: self.spawns() >= 1 and "entered RUNNING" in self.log(), timeout=20,
                   what="the program to run")  # fmt: skip

    def log(self) -> str:
        return (self.work / "supervisord.log").read_text()

    def spawns(self) -> int:
        return self.log().count("spawned: 'sleeper'")

    def stop(self) -> None:
        pid = int((self.work / "supervisord.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="its exit")
        # The leaky program's engine outlives supervisord, as it outlives the program.
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((self.work / "engine.pid").read_text()), signal.SIGKILL)


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Supervisord]:
    (tmp_path / "sv").mkdir()
    daemon = Supervisord(tmp_path / "sv")
    yield daemon
    daemon.stop()


def tcp_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_program_is_restarted_over_the_unix_socket(
    supervisord: Supervisord, start_medic: Callable[[str], Medic]
) -> None:
    before = supervisord.spawns()
    outcome, detail = run(start_medic, f"{{type: supervisor, url: 'unix://{supervisord.work}"
                                       "/s.sock', program: sleeper, target: sleeper}")  # fmt: skip
    assert outcome == "succeeded", detail
    assert detail.startswith("restarted sleeper: pid ")
    assert detail.endswith(", RUNNING; old tree of 1 process gone")
    old, new = detail.removeprefix("restarted sleeper: pid ").split(", ")[0].split(" -> ")
    assert old != new
    assert supervisord.spawns() == before + 1  # the real effect: supervisord spawned it again


def test_over_http_with_basic_auth_and_a_wrong_password(
    supervisord: Supervisord, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    url = f"http://127.0.0.1:{supervisord.port}"
    action = (f"{{type: supervisor, url: '{url}', program: sleeper, username: medic, "
              f"password: {{file: {tmp_path / 'pw'}}}}}")  # fmt: skip
    assert run(start_medic, action)[0] == "succeeded"
    (tmp_path / "pw").write_text("wrong\n")
    outcome, detail = run(start_medic, action)
    assert outcome == "failed" and detail == f"supervisord at {url} answered 401 Unauthorized"


def test_errors_are_clear_failures(
    supervisord: Supervisord, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    sock = f"unix://{supervisord.work}/s.sock"
    outcome, detail = run(start_medic, f"{{type: supervisor, url: '{sock}', program: nosuch}}")
    assert outcome == "failed" and detail == "supervisord: BAD_NAME: nosuch"
    missing = f"unix://{tmp_path}/none.sock"
    outcome, detail = run(start_medic, f"{{type: supervisor, url: '{missing}', program: x}}")
    assert outcome == "failed" and detail.startswith(f"cannot reach supervisord at {missing}")


def test_a_child_that_outlives_the_programs_stop_is_killed_before_the_start(
    supervisord: Supervisord, start_medic: Callable[[str], Medic]
) -> None:
    """supervisord stops only the main process here (no stopasgroup): the engine child
    ignores SIGTERM and would keep its ports and GPU memory into the next start."""
    engine_pid = supervisord.work / "engine.pid"
    wait_until(engine_pid.exists, timeout=20, what="the leaky program's engine")
    engine = int(engine_pid.read_text())
    sock = f"unix://{supervisord.work}/s.sock"
    outcome, detail = run(start_medic, f"{{type: supervisor, url: '{sock}', program: leaky}}")
    assert outcome == "succeeded", detail
    assert detail.endswith("RUNNING; old tree of 2 processes gone (1 killed after the stop)")
    assert dead(engine)  # the real effect: the old engine is gone
    wait_until(lambda: int(engine_pid.read_text() or 0) not in (0, engine),
               timeout=20, what="the new engine")  # fmt: skip
    kept = (f"{{type: supervisor, url: '{sock}', program: leaky, "
            "hygiene: {kill_leftovers: false, deadline: 1s}}")  # fmt: skip
    outcome, detail = run(start_medic, kept)
    assert outcome == "failed"
    assert detail.startswith("stopped leaky; old process tree not gone 1s after the stop: ")
    assert detail.endswith("; not started")


def test_verification_waits_for_the_restarted_program_to_serve(
    supervisord: Supervisord, start_medic: Callable[[str], Medic]
) -> None:
    port = supervisord.slow_port
    wait_until(lambda: tcp_open(port), timeout=20, what="the slow program to listen")
    medic = start_medic(f"""
checks:
  - {{name: serving, type: http, url: 'http://127.0.0.1:{port}/', interval: 1h,
     failure_threshold: 1}}
recovery:
  actions:
    restart: {{type: supervisor, url: 'unix://{supervisord.work}/s.sock', program: slow,
              hygiene: {{start_deadline: 20s}}}}
  failures:
    generation_pipeline_error:
      ladder: [restart]
      verify: [serving]
      settle_delay: 0s
      verify_timeout: 0s
      verify_interval: 100ms
""")  # fmt: skip
    before = supervisord.log().count("spawned: 'slow'")
    assert medic.report_failure("generation_pipeline_error").accepted
    [found] = settled(medic, 1)
    assert found.outcome.value == "succeeded", found.detail
    # RUNNING came at 1 s (startsecs), serving at 2.5 s: verification waited for it.
    waited = float(found.detail.rsplit("verified by serving after ", 1)[1].rstrip("s"))
    assert waited >= 1.0, found.detail
    assert supervisord.log().count("spawned: 'slow'") == before + 1
