"""Restart hygiene: the old tree gone and its GPU memory released (the fake NVML's per-process
memory) before the start, within a deadline; past the deadline the rung fails, nothing is
started, and the ladder escalates. Against a real supervisord too: a child that outlives
the program's stop is killed before the start."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import Medic
from exporter.config.recovery import HygieneConfig
from exporter.gpu import fakenvml
from exporter.recovery.hygiene import NvmlProcesses, capture, cgroup_pids, settle
from tests.helpers import wait_until
from tests.recovery.conftest import dead, settled

GIB = 2**30


def holding(path: Path, pids: list[int]) -> None:
    """The fake NVML's state: each pid holds 20 GiB of GPU 0."""
    state = fakenvml.make_state(1)
    state["gpus"][0]["processes"] = [{"pid": p, "name": "python3", "used": 20 * GIB}
                                     for p in pids]  # fmt: skip
    path.write_text(json.dumps(state))


def config(server: Path, tmp_path: Path, deadline: str) -> str:
    script = tmp_path / "server.py"
    return f"""
checks:
  - {{name: gpu, type: gpu, enabled: false, nvml_module: exporter.gpu.fakenvml}}
recovery:
  actions:
    restart_server:
      type: process
      pidfile: {server}
      grace: 0.5s
      start: [{sys.executable}, {script}, {server}]
      hygiene: {{gpu_memory: true, deadline: {deadline}}}
    escalate: {{type: command, argv: [sh, -c, 'echo escalated >> {tmp_path}/escalated']}}
  failures:
    vram_exhaustion:
      ladder: [{{action: restart_server, timeout: 30s}}, escalate]
      settle_delay: 0s
"""


def test_the_start_waits_until_the_old_processes_gpu_memory_is_released(
    server: Path, start_medic: Callable[[str], Medic], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    nvml = tmp_path / "nvml.json"
    old, engine = int(server.read_text()), int(Path(f"{server}.engine").read_text())
    holding(nvml, [old, engine])
    monkeypatch.setenv(fakenvml.ENV, str(nvml))
    released: list[float] = []

    def driver() -> None:  # frees the memory a second after the engine died, as NVML can
        wait_until(lambda: dead(engine), timeout=20, what="the engine's end")
        time.sleep(1.0)
        released.append(time.time())  # before the write: medic may read it at once
        holding(nvml, [])

    freeing = threading.Thread(target=driver)
    freeing.start()
    medic = start_medic(config(server, tmp_path, "15s"))
    assert medic.report_failure("vram_exhaustion").accepted
    [found] = settled(medic, 1)
    freeing.join(20)
    assert found.outcome.value == "succeeded", found.detail
    assert "; GPU memory released after " in found.detail
    wait_until(lambda: int(server.read_text() or 0) not in (0, old), what="the new server")
    # Started only once the memory was free: the new server wrote its pid file after.
    # (Not psutil's create_time: it counts from /proc/stat's whole-second boot time.)
    assert server.stat().st_mtime >= released[0]
    assert not (tmp_path / "escalated").exists()


def test_memory_still_held_at_the_deadline_fails_the_rung_and_escalates(
    server: Path, start_medic: Callable[[str], Medic], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    nvml = tmp_path / "nvml.json"
    old, engine = int(server.read_text()), int(Path(f"{server}.engine").read_text())
    holding(nvml, [engine])  # a driver that never lets go
    monkeypatch.setenv(fakenvml.ENV, str(nvml))
    medic = start_medic(config(server, tmp_path, "1s"))
    assert medic.report_failure("vram_exhaustion").accepted
    restart, escalate = settled(medic, 2)
    assert restart.outcome.value == "failed"
    assert restart.detail.endswith(
        f"GPU memory still held 1s after the stop by pid {engine} (20480 MiB); not started"
    ), restart.detail
    assert escalate.action == "escalate" and escalate.outcome.value == "succeeded"
    assert (tmp_path / "escalated").read_text() == "escalated\n"  # the real effect
    assert int(server.read_text()) == old  # nothing was started
    assert dead(old) and dead(engine)


def test_leftovers_are_waited_for_and_a_hung_nvml_is_not_a_release(tmp_path: Path) -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tree = capture([child.pid])
        keep = HygieneConfig(kill_leftovers=False, deadline=0.5)
        clean, seen = settle(tree, keep, None)
        assert not clean and seen == f"old process tree not gone 0.5s after the stop: {child.pid}"
        nvml = tmp_path / "nvml.json"
        holding(nvml, [])
        state = json.loads(nvml.read_text())
        state["hang"] = ["nvmlDeviceGetComputeRunningProcesses"]
        nvml.write_text(json.dumps(state))
        os.environ[fakenvml.ENV] = str(nvml)
        try:
            reader = NvmlProcesses("exporter.gpu.fakenvml", timeout=0.3)
            clean, seen = settle(tree, HygieneConfig(gpu_memory=True, deadline=0.5), reader)
        finally:
            del os.environ[fakenvml.ENV]
            nvml.write_text(json.dumps({"gpus": []}))  # lets the hung reader thread go
        assert not clean
        assert seen == ("old tree of 1 process gone (1 killed after the stop); GPU memory not "
                        "known to be released: NVML did not answer within 0.3s")  # fmt: skip
    finally:
        child.kill()
        child.wait(10)


def test_a_cgroups_processes_are_read_below_it_too(tmp_path: Path) -> None:
    unit = tmp_path / "system.slice" / "vllm.service"
    (unit / "engine").mkdir(parents=True)
    (unit / "cgroup.procs").write_text("101\n102\n")
    (unit / "engine" / "cgroup.procs").write_text("103\n")
    assert sorted(cgroup_pids(tmp_path, "/system.slice/vllm.service")) == [101, 102, 103]
    assert cgroup_pids(tmp_path, "/system.slice/none.service") == []
    assert cgroup_pids(tmp_path, "") == []


def test_a_rung_cut_off_while_waiting_starts_nothing_afterwards(
    server: Path, start_medic: Callable[[str], Medic], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The rung's timeout ends the rung; the restart's thread must not start the server
    later, behind the next rung's back."""
    nvml = tmp_path / "nvml.json"
    old, engine = int(server.read_text()), int(Path(f"{server}.engine").read_text())
    holding(nvml, [engine])
    monkeypatch.setenv(fakenvml.ENV, str(nvml))
    text = config(server, tmp_path, "30s").replace("timeout: 30s", "timeout: 2s")
    medic = start_medic(text)
    assert medic.report_failure("vram_exhaustion").accepted
    restart, escalate = settled(medic, 2)
    assert (restart.outcome.value, restart.detail) == ("timeout", "no result in 2s")
    holding(nvml, [])  # released now: a thread still waiting would go on to the start
    wait_until(lambda: not any(t.name == "medic-action" and t.is_alive()
                               for t in threading.enumerate()),
               what="the action's thread")  # fmt: skip
    # It ended; a start it made would write the pid file within a second (absence needs a
    # bounded look: nothing signals a start that did not happen).
    with pytest.raises(AssertionError, match="timed out"):
        wait_until(lambda: int(server.read_text() or 0) not in (0, old), timeout=2.0,
                   what="a start")  # fmt: skip
    assert escalate.action == "escalate"
