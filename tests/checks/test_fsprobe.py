"""The filesystem helper's parent side: deadlines, abandoning a blocked helper, cleanup."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.checks.fsprobe import FsHelper, argv
from exporter.checks.runner import CallStuck, CallTimeout
from exporter.helper import reap_released
from tests.helpers import wait_until

SILENT = [sys.executable, "-c", "import time; time.sleep(60)"]  # never answers


def test_a_real_helper_answers_statvfs_and_inspect(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"w")
    helper = FsHelper("t", timeout=10)
    try:
        found = helper.request({"op": "statvfs", "path": str(tmp_path)})
        assert found["ok"] and found["size"] > 0
        seen = helper.request({"op": "inspect", "path": str(tmp_path / "model.bin"),
                               "kind": "file", "min_size": 2, "readable": True,
                               "non_empty": False})  # fmt: skip
        assert seen == {"present": True, "problems": ["size 1 bytes is below 2"]}
    finally:
        helper.close()


def test_a_helper_past_its_deadline_is_killed_and_the_check_stuck_until_it_ends() -> None:
    helper = FsHelper("t", timeout=0.3, command=SILENT)
    with pytest.raises(CallTimeout, match="hung mount"):
        helper.request({"op": "statvfs", "path": "/"})
    # SIGKILL was sent; this one is killable, so it ends, and the next call starts anew.
    wait_until(lambda: not helper.stuck(), what="the killed helper to end")
    with pytest.raises(CallTimeout):
        helper.request({"op": "statvfs", "path": "/"})
    helper.close()
    with pytest.raises(CallStuck):
        helper.request({"op": "statvfs", "path": "/"})
    wait_until(lambda: reap_released() == 0, what="every helper reaped")


def test_a_helper_dropped_without_close_is_still_let_go() -> None:
    helper = FsHelper("t", timeout=0.3)
    helper.request({"op": "statvfs", "path": "/"})
    del helper
    gc.collect()
    wait_until(lambda: reap_released() == 0, what="the dropped helper reaped")


def test_a_helper_blocked_on_a_fifo_ends_when_medic_is_gone(tmp_path: Path) -> None:
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)  # opening it blocks (killably): stdin's end-of-file is never read
    request = {"op": "inspect", "path": str(fifo), "kind": "any", "min_size": 0,
               "readable": True, "non_empty": False}  # fmt: skip
    parent = (
        "import json, os, subprocess, sys\n"
        f"p = subprocess.Popen({argv()[:-1]!r} + [str(os.getpid())], stdin=subprocess.PIPE,"
        " stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        f"p.stdin.write(json.dumps({request!r}).encode() + b'\\n'); p.stdin.flush()\n"
        "print(p.pid, flush=True)\n"
    )  # a stand-in for medic that starts a helper and then dies
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         timeout=30, check=True)  # fmt: skip
    pid = int(out.stdout.split()[0])

    def alive() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    wait_until(lambda: not alive(), timeout=10, what="the orphaned helper to exit")


def _helper_pids() -> set[int]:
    import psutil

    found = set()
    for child in psutil.Process().children():
        try:
            if child.status() != "zombie" and "exporter.fsworker" in child.cmdline():
                found.add(child.pid)
        except psutil.Error:  # exited meanwhile
            continue
    return found


def test_the_checks_of_one_mount_share_one_helper(tmp_path: Path) -> None:
    from exporter.checks.disk import find_mount
    from exporter.checks.fsprobe import SharedHelpers

    mounts = [("/", "ext4"), (str(tmp_path / "nfs"), "nfs4")]
    (tmp_path / "nfs").mkdir()
    before = _helper_pids()
    pool = SharedHelpers(lambda path: find_mount(path, mounts)[0])
    root_a = pool.helper(str(tmp_path / "a"), timeout=10)
    root_b = pool.helper(str(tmp_path / "b"), timeout=10)
    nfs = pool.helper(str(tmp_path / "nfs" / "weights"), timeout=10)
    for handle in (root_a, root_b, nfs):
        assert handle.request({"op": "statvfs", "path": str(tmp_path)})["ok"]
    assert pool.mounts == sorted(["/", str(tmp_path / "nfs")])
    assert len(_helper_pids() - before) == 2  # a helper per mount, not per check
    root_a.close()
    assert root_b.request({"op": "statvfs", "path": str(tmp_path)})["ok"]  # still served
    root_b.close()
    nfs.close()
    assert pool.mounts == []
    wait_until(lambda: not _helper_pids() - before, what="every helper to exit")
