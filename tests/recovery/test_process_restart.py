"""The process action: a server's whole process group stopped (TERM, grace, KILL) and gone
before it starts again; a child that ignores SIGTERM or is SIGSTOPped does not survive."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import psutil

from exporter.app import Medic
from tests.helpers import wait_until
from tests.recovery.conftest import dead, settled


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
