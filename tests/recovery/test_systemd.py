"""The systemd action over a real D-Bus (Debian's dbus-daemon, from .stack) against a
stand-in org.freedesktop.systemd1 (tests/fixtures/systemd1.py) whose units are real
processes: restart and wait for the jobs' JobRemoved, hygiene between the stop and the start,
and the errors systemd answers with, each a clear `failed` detail."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Medic
from tests.e2e.stack import STACK_ROOT, require
from tests.helpers import wait_until
from tests.recovery.conftest import dead, run

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""
# A server whose engine child ignores SIGTERM and writes its pid (KillMode=process leaves it).
SERVER = """
import os, signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import os, signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(%r, 'w').write(str(os.getpid())); time.sleep(600)"])
time.sleep(600)
"""


class Systemd:
    """A private bus and the stand-in systemd1 on it."""

    def __init__(self, work: Path, units: dict[str, Any]) -> None:
        self.work = work
        self.address = f"unix:path={work / 'bus'}"
        (work / "bus.conf").write_text(BUS_CONFIG.format(socket=work / "bus"))
        env = {**os.environ, "LD_LIBRARY_PATH": str(STACK_ROOT / "lib" / "x86_64-linux-gnu")}
        self.bus = subprocess.Popen(
            [require("dbus-daemon"), f"--config-file={work / 'bus.conf'}", "--nofork",
             "--nopidfile"], env=env,
        )  # fmt: skip
        wait_until((work / "bus").exists, what="the bus socket")
        (work / "units.json").write_text(json.dumps({"journal": str(work / "journal"),
                                                     "units": units}))  # fmt: skip
        self.systemd = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.systemd1", self.address,
             str(work / "units.json")], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.systemd.stdout is not None
        # Bounded: a stand-in stuck before its "ready" (no bus) must not hang the suite.
        readable, _, _ = select.select([self.systemd.stdout], [], [], 20)
        assert readable, "the systemd1 stand-in did not come up within 20s"
        assert self.systemd.stdout.readline().strip() == "ready"

    def journal(self) -> list[str]:
        return (self.work / "journal").read_text().splitlines()

    def stop(self) -> None:
        for process in (self.systemd, self.bus):
            process.terminate()
            process.wait(10)
        assert self.systemd.stdout is not None
        self.systemd.stdout.close()


@pytest.fixture
def units(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "server.py").write_text(SERVER % str(tmp_path / "engine.pid"))
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    return {
        "vllm.service": {"argv": sleeper},
        "leaky.service": {"argv": [sys.executable, str(tmp_path / "server.py")],
                          "kill_mode": "process"},
        "broken.service": {"argv": sleeper, "running": False, "start_result": "failed"},
        "locked.service": {"argv": sleeper, "deny": True},
        "slow.service": {"argv": sleeper, "job_delay": 30},
    }  # fmt: skip


@pytest.fixture
def systemd(tmp_path: Path, units: dict[str, Any]) -> Iterator[Systemd]:
    (tmp_path / "sd").mkdir()
    daemon = Systemd(tmp_path / "sd", units)
    yield daemon
    daemon.stop()
    engine = tmp_path / "engine.pid"
    if engine.exists():
        os.kill(int(engine.read_text()), 9)


def action(systemd: Systemd, unit: str, extra: str = "") -> str:
    return f"{{type: systemd, unit: {unit}, bus: '{systemd.address}'{extra}}}"


def test_a_unit_is_restarted_and_its_jobs_waited_for(
    systemd: Systemd, start_medic: Callable[[str], Medic]
) -> None:
    [started] = [line for line in systemd.journal() if line.startswith("start vllm.service")]
    old = started.split()[-1]
    outcome, detail = run(start_medic, action(systemd, "vllm.service"))
    assert outcome == "succeeded", detail
    assert detail.startswith("restarted vllm.service: active (running), MainPID ")
    assert detail.endswith("; old tree of 1 process gone")
    starts = [line for line in systemd.journal() if line.startswith("start vllm.service")]
    assert len(starts) == 2 and f"stop vllm.service {old}" in systemd.journal()  # real effect
    assert dead(int(old))
    # Without hygiene: one RestartUnit job.
    outcome, detail = run(start_medic, action(
        systemd, "vllm.service", ", hygiene: {tree: false}"))  # fmt: skip
    assert outcome == "succeeded" and detail.endswith("; no hygiene asked"), detail
    assert len([line for line in systemd.journal() if line.startswith("start vllm")]) == 3


def test_a_child_left_by_killmode_process_is_killed_before_the_start(
    systemd: Systemd, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    engine_pid = tmp_path / "engine.pid"
    wait_until(engine_pid.exists, what="the engine")
    engine = int(engine_pid.read_text())
    outcome, detail = run(start_medic, action(systemd, "leaky.service"))
    assert outcome == "succeeded", detail
    assert detail.endswith("; old tree of 2 processes gone (1 killed after the stop)")
    assert dead(engine)


def test_errors_are_clear_failures(
    systemd: Systemd, start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    assert run(start_medic, action(systemd, "nosuch.service")) == (
        "failed", "unit not found: nosuch.service")  # fmt: skip
    outcome, detail = run(start_medic, action(systemd, "locked.service"))
    assert outcome == "failed"
    assert detail.startswith("permission denied to stop locked.service: Interactive "
                             "authentication required. (run medic as root, or allow "
                             "org.freedesktop.systemd1.manage-units")  # fmt: skip
    outcome, detail = run(start_medic, action(systemd, "broken.service"))
    assert (outcome, detail) == ("failed", "the job restarting broken.service ended 'failed' "
                                 "(old tree of 0 processes gone)")  # fmt: skip
    missing = f"unix:path={tmp_path}/none"
    outcome, detail = run(start_medic, f"{{type: systemd, unit: a.service, bus: '{missing}'}}")
    assert outcome == "failed" and detail.startswith(f"cannot reach the D-Bus {missing} bus: ")


def test_a_job_that_never_ends_is_cut_off_by_the_rung_timeout(
    systemd: Systemd, start_medic: Callable[[str], Medic]
) -> None:
    outcome, detail = run(start_medic, action(systemd, "slow.service").replace(
        "}", ", hygiene: {tree: false}}"), timeout="2s")  # fmt: skip
    assert (outcome, detail) == ("timeout", "no result in 2s")
