"""The built-in probes against the real filesystem and psutil, and with injected readings."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from exporter.checks import (
    CheckSpec,
    DiskCheck,
    FilesystemUsage,
    HealthChecker,
    HostMemory,
    HostMemoryCheck,
    PathCheck,
    PathPresence,
)
from exporter.checks.disk import find_mount
from exporter.checks.host import read_host_memory


def test_host_memory_reads_the_real_host() -> None:
    memory = read_host_memory()
    assert memory.total > memory.available > 0
    observation = HostMemoryCheck(min_available_ratio=0.0)()
    assert observation.problems == ()
    assert isinstance(observation.facts[0], HostMemory)


def test_host_memory_thresholds() -> None:
    low = HostMemory(total=16 * 2**30, available=2**29, swap_total=0, swap_free=0)
    check = HostMemoryCheck(min_available_ratio=0.05, min_available_bytes=2**30, read=lambda: low)
    problems = check().problems
    assert len(problems) == 2
    assert "3.1% of 16.00 GiB is below 5.0%" in problems[0]
    assert "0.50 GiB is below 1.00 GiB" in problems[1]


def test_disk_reports_size_avail_and_mount(tmp_path: Path) -> None:
    observation = DiskCheck(tmp_path, min_avail_ratio=0.0)()
    usage = observation.facts[0]
    assert isinstance(usage, FilesystemUsage)
    st = os.statvfs(tmp_path)
    assert usage.size == st.f_blocks * st.f_frsize
    assert usage.avail is not None and 0 < usage.avail <= usage.size
    assert usage.path == str(tmp_path) and not usage.device_error
    assert observation.problems == ()


def test_disk_threshold_fails(tmp_path: Path) -> None:
    observation = DiskCheck(tmp_path, min_avail_bytes=2**60)()
    assert observation.problems and "GiB free" in observation.problems[0]


def test_disk_on_a_missing_path_is_a_device_error(tmp_path: Path) -> None:
    observation = DiskCheck(tmp_path / "gone")()
    usage = observation.facts[0]
    assert isinstance(usage, FilesystemUsage) and usage.device_error
    assert observation.problems == ("cannot read filesystem: No such file or directory",)


def test_find_mount_prefers_the_longest_prefix() -> None:
    mounts = [("/", "ext4"), ("/models", "nfs4"), ("/models-old", "xfs")]
    assert find_mount("/models/tts/a.bin", mounts) == ("/models", "nfs4")
    assert find_mount("/models-old/x", mounts) == ("/models-old", "xfs")
    assert find_mount("/etc", mounts) == ("/", "ext4")


def test_path_present_then_removed_at_run_time(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x" * 2048)
    check = PathCheck(model, kind="file", min_size=1024)
    assert check().problems == ()
    assert check().facts == (PathPresence(str(model), True),)
    model.unlink()
    observation = check()
    assert observation.facts == (PathPresence(str(model), False),)
    assert observation.problems == (f"{model}: missing",)


def test_path_kind_size_and_emptiness(tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"x")
    voices = tmp_path / "voices"
    voices.mkdir()
    assert PathCheck(small, min_size=10)().problems == ("size 1 bytes is below 10",)
    assert PathCheck(small, kind="dir")().facts == (PathPresence(str(small), False),)
    assert PathCheck(voices, kind="file")().problems == (
        f"{voices}: is a directory, expected a file",
    )
    assert PathCheck(voices, kind="dir", non_empty=True)().problems == ("directory is empty",)
    (voices / "alice.wav").write_bytes(b"RIFF")
    assert PathCheck(voices, kind="dir", non_empty=True)().problems == ()


def test_reading_a_path_that_blocks_times_out_as_stuck(tmp_path: Path) -> None:
    # Opening a FIFO blocks until a writer appears: a real hang, like a dead network mount.
    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    health = HealthChecker()
    health.register(CheckSpec("weights", PathCheck(fifo), interval=1, timeout=0.1))
    result = health.run("weights")
    assert (result.ok, result.reason) == (False, "timeout")
    assert health.states()[0].stuck
    unblock = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    unblock.start()
    unblock.join(timeout=5)
