"""The process check: by pid file, by name and by systemd unit (a systemctl stand-in)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.checks.process import ProcessFact, ProcessProbe
from exporter.config.processcheck import ProcessCheckConfig


def probe(**options: Any) -> ProcessProbe:
    return ProcessProbe(ProcessCheckConfig.model_validate({"name": "server", "type": "process",
                                                           **options}))  # fmt: skip


def fact(observation: Any) -> ProcessFact:
    [found] = [f for f in observation.facts if isinstance(f, ProcessFact)]
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              "medic-test-model-server"])  # fmt: skip
    (tmp_path / "server.pid").write_text(f"{child.pid}\n")
    yield child
    child.kill()
    child.wait(10)


def test_by_pid_file_alive_then_gone(server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    check = probe(pidfile=str(tmp_path / "server.pid"))
    observation = check()
    found = fact(observation)
    assert observation.problems == () and found.pid == server.pid
    assert found.rss and found.rss > 0 and found.open_files and found.start_time
    server.kill()
    server.wait(10)
    assert check().problems == (f"pid {server.pid} is not running",)
    assert probe(pidfile=str(tmp_path / "none.pid"))().problems[0].startswith("cannot read")


def test_by_name_and_the_bounds(server: subprocess.Popen[bytes]) -> None:
    found = probe(process="medic-test-model-server")()
    assert found.problems == () and fact(found).pid == server.pid
    tight = probe(process="medic-test-model-server", max_rss=1024)()
    assert tight.problems and "above 1024" in tight.problems[0]
    assert probe(process="no-such-server-xyz")().problems == (
        "no process matches 'no-such-server-xyz'",
    )


def test_by_systemd_unit(server: subprocess.Popen[bytes], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # No systemd runs here: a systemctl that answers `show --property=MainPID --value` as
    # systemd does (the pid, or 0 for a unit without a running main process).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3" = "show --property=MainPID --value" ] || exit 2\n'
        f'case "$4" in vllm.service) echo {server.pid};; *) echo 0;; esac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert fact(probe(unit="vllm.service")()).pid == server.pid
    assert probe(unit="tgi.service")().problems == ("tgi.service has no main process",)
