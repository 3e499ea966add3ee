"""Helper processes end quietly when medic lets go of their pipes (a quick stop, a timeout)
or a Ctrl-C reaches medic's process group: no traceback in medic's log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import wait_until

HELPERS = {
    "gpu events": ["exporter.gpu.worker", "--events", "--nvml-module", "exporter.gpu.fakenvml"],
    "gpu collect": ["exporter.gpu.worker", "--nvml-module", "exporter.gpu.fakenvml"],
    "filesystem": ["exporter.fsworker", "--parent", str(os.getpid())],
}


def start(module_args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *module_args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.parametrize("name", HELPERS)
def test_a_closed_pipe_ends_the_helper_without_a_traceback(name: str) -> None:
    with start(HELPERS[name]) as helper:
        assert helper.stdin and helper.stdout and helper.stderr
        helper.stdout.close()  # medic let go of the answers
        # Requests make collect-mode helpers answer into the closed pipe; the events
        # helper writes its "up" line on its own. Then stdin closes, as on medic's stop.
        helper.stdin.write(b'{"op": "collect"}\n{"op": "statvfs", "path": "/"}\n')
        helper.stdin.flush()
        wait_until(lambda: helper.poll() is not None or _ignores_sigint(helper.pid),
                   timeout=15, what="the helper's main")  # fmt: skip
        helper.stdin.close()
        err = helper.stderr.read().decode()
        assert helper.wait(15) == 0, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("name", HELPERS)
def test_ctrl_c_to_medics_group_is_medics_alone(name: str) -> None:
    with start(HELPERS[name]) as helper:
        assert helper.stdin and helper.stderr
        wait_until(lambda: _ignores_sigint(helper.pid), timeout=15, what="the helper's main")
        helper.send_signal(signal.SIGINT)
        helper.stdin.close()
        err = helper.stderr.read().decode()
        assert helper.wait(15) == 0, err
    assert "KeyboardInterrupt" not in err and "Traceback" not in err, err


def _ignores_sigint(pid: int) -> bool:
    """SIGINT is ignored once the helper's main runs: its signal disposition says so."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        return True  # exited
    return False
