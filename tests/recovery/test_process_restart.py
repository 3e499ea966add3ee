"""The process action: a server's whole process group stopped (TERM, grace, KILL) and gone
before it starts again; a child that ignores SIGTERM or is SIGSTOPped does not survive."""

from __future__ import annotations

import os
import signal
import subprocess
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


def test_a_cgroups_processes_are_stopped_and_gone_before_the_start(tmp_path: Path) -> None:
    """`cgroup:` instead of a pid file: every process listed in the cgroup and below it
    (a cgroup v2 tree laid out in a directory, as /sys/fs/cgroup is)."""
    import asyncio

    from exporter.config.recovery import ProcessActionConfig
    from exporter.recovery.actions import ActionContext
    from exporter.recovery.processrestart import ProcessRestartAction
    from exporter.recovery.types import FailureEvent

    ready = tmp_path / "ignoring"
    ignoring = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"open('{ready}', 'w').close(); time.sleep(600)"]  # fmt: skip
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    engine = subprocess.Popen(ignoring)
    wait_until(ready.exists, what="the engine to ignore SIGTERM")
    unit = tmp_path / "system.slice" / "tts.service"
    (unit / "engine").mkdir(parents=True)
    (unit / "cgroup.procs").write_text(f"{server.pid}\n")
    (unit / "engine" / "cgroup.procs").write_text(f"{engine.pid}\n")
    marker = tmp_path / "started"
    config = ProcessActionConfig(type="process", cgroup="/system.slice/tts.service", grace=0.5,
                                 start=["sh", "-c", f"echo yes > {marker}"])  # fmt: skip
    action = ProcessRestartAction("restart", config, cgroup_root=tmp_path)
    ctx = ActionContext(FailureEvent("generation_pipeline_error", "test"))
    try:
        result = asyncio.run(action.run(ctx))
        assert result.ok, result.detail
        assert result.detail == (
            "stopped cgroup /system.slice/tts.service: old tree of 2 processes gone (1 killed "
            "after the stop); started sh")  # fmt: skip
        assert server.wait(5) == -signal.SIGTERM and engine.wait(5) == -signal.SIGKILL
        wait_until(marker.exists, what="the start")
        (unit / "cgroup.procs").write_text(f"{os.getpid()}\n")  # medic's own cgroup
        refused = asyncio.run(action.run(ctx))
        assert not refused.ok and refused.detail == (
            "refusing to stop cgroup /system.slice/tts.service: medic or pid 1 is in it; "
            "not started"
        )
    finally:
        for process in (server, engine):
            process.kill()
            process.wait(5)
