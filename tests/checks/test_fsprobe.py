"""The filesystem helper's parent side: deadlines, abandoning a blocked helper, cleanup."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from exporter.checks.fsprobe import ARGV, FsHelper
from exporter.checks.runner import CallStuck, CallTimeout
from exporter.helper import reap_released
from tests.helpers import wait_until

SILENT = [sys.executable, "-c", "import time; time.sleep(60)"]  # never answers


def test_a_real_helper_answers_statvfs_and_inspect(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"w")
    helper = FsHelper("t", timeout=10, argv=ARGV)
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
    helper = FsHelper("t", timeout=0.3, argv=SILENT)
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
    helper = FsHelper("t", timeout=0.3, argv=ARGV)
    helper.request({"op": "statvfs", "path": "/"})
    del helper
    gc.collect()
    wait_until(lambda: reap_released() == 0, what="the dropped helper reaped")
