"""The process action: a server's whole process group stopped (TERM, grace, KILL) and gone
before it starts again; a child that ignores SIGTERM or is SIGSTOPped does not survive."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from exporter.app import Medic
from tests.helpers import wait_until
from tests.recovery.conftest import settled

# A server and its engine: the engine ignores SIGTERM, as a wedged one does in effect.
SERVER = """
import os, signal, subprocess, sys, time
engine = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open(sys.argv[1] + ".engine", "w").write(str(engine.pid))
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(600)
"""


def dead(pid: int) -> bool:
    """Gone, or a zombie not yet reaped by its new parent (it holds nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    pidfile = tmp_path / "server.pid"
    first = subprocess.Popen([sys.executable, str(script), str(pidfile)], start_new_session=True)
    wait_until(lambda: pidfile.exists() and Path(f"{pidfile}.engine").exists(),
               what="the server and its engine")  # fmt: skip
    yield pidfile
    for path in (pidfile, Path(f"{pidfile}.engine")):  # whichever instance runs now
        with contextlib.suppress(OSError, ValueError):
            os.killpg(os.getpgid(int(path.read_text())), signal.SIGKILL)
    with contextlib.suppress(OSError):
        first.kill()
    first.wait(10)


def test_the_whole_group_is_gone_before_the_start(
    server: Path, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    old = int(server.read_text())
    engine = int(Path(f"{server}.engine").read_text())
    os.kill(engine, signal.SIGSTOP)  # wedged, too
    script = tmp_path / "server.py"
    medic = start_medic(f"""
recovery:
  actions:
    restart_server:
      type: process
      pidfile: {server}
      grace: 1s
      start: [{sys.executable}, {script}, {server}]
  failures:
    generation_pipeline_error: {{ladder: [{{action: restart_server, timeout: 30s}}],
                                 settle_delay: 0s}}
""")
    assert medic.report_failure("generation_pipeline_error").accepted
    [found] = settled(medic, 1)
    assert found.outcome.value == "succeeded", found.detail
    assert found.detail.endswith(": old tree of 2 processes gone (1 killed after the stop); "
                                 f"started {sys.executable}")  # fmt: skip
    assert dead(old) and dead(engine)  # the real effect
    wait_until(lambda: int(server.read_text() or 0) not in (0, old), what="the new server")
    assert psutil.pid_exists(int(server.read_text()))


def test_it_refuses_medics_own_group_and_says_why(
    start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    (tmp_path / "self.pid").write_text(str(os.getpid()))
    medic = start_medic(f"""
recovery:
  actions:
    restart_self: {{type: process, pidfile: {tmp_path / "self.pid"}}}
    restart_none: {{type: process, pidfile: {tmp_path / "none.pid"}}}
  failures:
    generation_pipeline_error: {{ladder: [restart_self, restart_none], settle_delay: 0s}}
""")
    assert medic.report_failure("generation_pipeline_error").accepted
    first, second, _ = settled(medic, 3)
    assert first.outcome.value == "failed" and first.detail.startswith("refusing to stop")
    assert second.outcome.value == "failed" and "cannot read a pid" in second.detail
