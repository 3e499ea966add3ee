"""A real hung FUSE mount under a disk and a path check: medic keeps serving, reports the
checks stuck, and exits on SIGTERM within shutdown_grace + 2 s (its probes run in helper
processes, so no thread of medic's is blocked in the kernel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import STACK_ROOT
from tests.helpers import MedicProcess, wait_until

HUNGFS = Path(__file__).parents[1] / "fixtures" / "fuse" / "hungfs.py"
# scripts/fetch-stack.sh unpacks Debian's libfuse3 into the project (nothing installed on the
# host); mfusepy (here and in the fixture's process) loads it from FUSE_LIBRARY_PATH.
LIBFUSE = STACK_ROOT / "lib" / "x86_64-linux-gnu" / "libfuse3.so.3"
if LIBFUSE.is_file():
    os.environ.setdefault("FUSE_LIBRARY_PATH", str(LIBFUSE))


def fuse_missing() -> str | None:
    """Why a FUSE mount cannot be made here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if os.geteuid() != 0:
        return "mounting FUSE without fusermount3 needs root"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy or libfuse is missing: {exc}"
    return None


pytestmark = pytest.mark.skipif(fuse_missing() is not None, reason=str(fuse_missing()))


@pytest.fixture
def hung_mount(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    mountpoint = tmp_path / "mnt"
    log = tmp_path / "hungfs.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, str(HUNGFS), str(mountpoint)],
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: b"mounted" in log.read_bytes() or daemon.poll() is not None,
                   timeout=15, what="the FUSE mount")  # fmt: skip
        assert daemon.poll() is None, log.read_text()
        yield mountpoint, daemon
    finally:
        # Killing the daemon aborts every pending request: blocked callers get an error.
        daemon.kill()
        daemon.wait(10)
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()
            and "fsworker" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]  # fmt: skip


def test_sigterm_exits_in_time_with_checks_stuck_on_a_hung_mount(
    tmp_path: Path, hung_mount: tuple[Path, subprocess.Popen[bytes]]
) -> None:
    mountpoint, daemon = hung_mount
    config = tmp_path / "medic.yml"
    config.write_text(f"""
data_dir: {tmp_path / "data"}
server: {{shutdown_grace: 1s}}
checks:
  - {{name: models_disk, type: disk, path: {mountpoint}, interval: 1s, timeout: 1s}}
  - {{name: weights, type: path, path: {mountpoint / "model.safetensors"}, interval: 1s,
     timeout: 1s}}
""")
    medic = MedicProcess(["--config", str(config)], tmp_path / "medic.log")
    try:
        url = medic.wait_listening()

        def stuck() -> bool:
            text = httpx.get(f"{url}/metrics", timeout=5).text
            names = ("models_disk", "weights")
            checks = all(f'medic_check_stuck{{check="{n}"}} 1.0' in text for n in names)
            # The mount's one helper (its checks share it), blocked with SIGKILL pending.
            return checks and 'medic_helper_processes_abandoned{kind="filesystem"} 1.0' in text

        wait_until(stuck, timeout=20, what="both checks stuck, the mount's helper counted")
        assert httpx.get(f"{url}/-/healthy", timeout=5).status_code == 200
        helpers = alive(children(medic.proc.pid))
        assert len(helpers) == 1  # not one per check: no helper after helper on a hung mount
        medic.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = medic.proc.wait(timeout=1 + 2)  # shutdown_grace + 2 s; past it: TimeoutExpired
        assert code == 0, medic.log()
        assert time.monotonic() - started <= 3
        # A FUSE request the daemon has read cannot be interrupted, not even by SIGKILL: the
        # helpers end when the mount answers or goes away (README, "Hung mounts").
        daemon.kill()
        wait_until(lambda: not alive(helpers), timeout=10, what="the helpers to end")
    finally:
        medic.stop()
