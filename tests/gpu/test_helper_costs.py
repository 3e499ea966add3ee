"""What the NVML helpers cost: none stays while the library is absent (a CPU host; issue 19:
two idle helpers cost 32-35 MiB for nothing), and a busy host's round stays fast."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from exporter.gpu import fakenvml
from exporter.gpu.check import GpuCheck
from exporter.gpu.facts import GpuDevice, NvmlState
from exporter.gpu.xid import XidWatcher
from tests.gpu.conftest import FAKE, FakeNvml
from tests.helpers import FakeClock, MedicProcess, wait_until


def helpers(root: int | None = None) -> list[psutil.Process]:
    """Live NVML helper processes below `root` (this test process by default)."""
    found = []
    for child in psutil.Process(root or os.getpid()).children(recursive=True):
        try:
            if "exporter.gpu.worker" in child.cmdline() and child.status() != "zombie":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_the_check_keeps_no_helper_while_the_library_is_absent(fake_nvml: FakeNvml) -> None:
    fake_nvml.state["library"] = False
    fake_nvml.write()
    clock = FakeClock()
    gpu = GpuCheck(nvml_module=FAKE, timeout=5.0, clock=clock, absent_retry=300.0)
    try:
        observation = gpu()
        state = next(f for f in observation.facts if isinstance(f, NvmlState))
        assert state.up is False and observation.problems == ()  # a CPU host: all is well
        wait_until(lambda: not helpers(), what="the helper to exit by itself")
        clock.advance(299)
        assert gpu().problems == ()
        assert not helpers()  # no new look before absent_retry
        fake_nvml.state["library"] = True  # the driver was installed meanwhile
        fake_nvml.write()
        clock.advance(2)
        found = gpu()
        assert [f.index for f in found.facts if isinstance(f, GpuDevice)] == [0, 1]
        assert len(helpers()) == 1  # a helper stays while NVML answers
    finally:
        gpu.close()


def test_the_xid_watcher_keeps_no_helper_while_the_library_is_absent(
    fake_nvml: FakeNvml,
) -> None:
    fake_nvml.state["library"] = False
    fake_nvml.write()
    watcher = XidWatcher(FAKE, absent_retry=300.0)
    watcher.start()
    try:
        wait_until(lambda: watcher.absent, what="the watcher to learn NVML is absent")
        wait_until(lambda: not helpers(), what="its helper to exit by itself")
    finally:
        watcher.stop()


def test_medic_on_a_host_without_nvml_runs_no_nvml_helper(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    # The default config has a gpu check and so an XID watcher; this machine has no driver.
    proc = medic_process([], env={"MEDIC_DATA_DIR": str(tmp_path / "data")})
    url = proc.wait_listening()
    wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
    wait_until(lambda: not helpers(proc.proc.pid), what="medic's NVML helpers to exit")
    assert "no NVML helper runs" in proc.log()
    assert proc.log().count("NVML unavailable") == 1  # said once
    assert proc.terminate() == 0


def test_a_busy_hosts_round_fits_the_checks_timeout(fake_nvml: FakeNvml) -> None:
    # 8 GPUs with 500 processes each: the payload of a busy inference host. The fake used
    # to take 11.5 s per round here, past any timeout a check would have.
    fake_nvml.state = fakenvml.make_state(8)
    for index, gpu in enumerate(fake_nvml.state["gpus"]):
        gpu["processes"] = [
            {"pid": 100_000 + index * 1000 + n, "name": f"worker-{n}", "used": 2**20}
            for n in range(500)
        ]
    fake_nvml.write()
    os.utime(fake_nvml.path, (1, 1))  # settled long ago, as a state file between edits is
    gpu = GpuCheck(nvml_module=FAKE, timeout=5.0, processes=True)
    try:
        found = [f for f in gpu().facts if isinstance(f, GpuDevice)]
        assert sum(len(d.processes or ()) for d in found) == 4000
        assert found[7].processes is not None and found[7].processes[-1].name == "worker-499"
    finally:
        gpu.close()
