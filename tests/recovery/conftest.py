"""Start a Medic from config text (no HTTP server) and wait on its journal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from exporter.app import Medic
from exporter.recovery.actions import ActionContext
from exporter.recovery.types import RecoveryAttempt
from tests.helpers import wait_until


def attempts(medic: Medic, **filters: Any) -> list[RecoveryAttempt]:
    """Oldest first."""
    found, _ = medic.journal.attempts(limit=1000, **filters)
    return list(reversed(found))


def settled(medic: Medic, count: int, **filters: Any) -> list[RecoveryAttempt]:
    """Wait until `count` matching attempts exist and none of them is still running."""

    def done() -> list[RecoveryAttempt] | None:
        found = attempts(medic, **filters)
        if len(found) >= count and all(a.outcome.value != "running" for a in found):
            return found
        return None

    return wait_until(done, timeout=20, what=f"{count} finished attempts")  # type: ignore[return-value]


def recording(medic: Medic, name: str = "noop") -> list[str]:
    """Register an in-process action that records each episode it runs for; the list."""
    ran: list[str] = []

    def action(ctx: ActionContext) -> bool:
        ran.append(ctx.episode)
        return True

    medic.actions.register(name, action)
    return ran


def noop_medic(start_medic: Callable[[str], Medic]) -> Medic:
    """One failure type whose only rung is an in-process action that always succeeds."""
    medic = start_medic("""
recovery:
  actions:
    noop: {type: in_process}
  failures:
    network_error: {ladder: [noop]}
""")
    medic.actions.register("noop", lambda: True)
    return medic


# A server and its engine: the engine ignores SIGTERM, as a wedged one does in effect.
SERVER = """
import os, signal, subprocess, sys, time
engine = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open(sys.argv[1] + ".engine", "w").write(str(engine.pid))
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(600)
"""


def dead(pid: int) -> bool:
    """Gone, or a zombie not yet reaped by its new parent (it holds nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    pidfile = tmp_path / "server.pid"
    first = subprocess.Popen([sys.executable, str(script), str(pidfile)], start_new_session=True)

    def written(path: Path) -> bool:  # created first, written next: wait for the pid itself
        return path.exists() and path.read_text().strip().isdigit()

    wait_until(lambda: written(pidfile) and written(Path(f"{pidfile}.engine")),
               what="the server and its engine")  # fmt: skip
    yield pidfile
    for path in (pidfile, Path(f"{pidfile}.engine")):  # whichever instance runs now
        with contextlib.suppress(OSError, ValueError):
            os.killpg(os.getpgid(int(path.read_text())), signal.SIGKILL)
    with contextlib.suppress(OSError):
        first.kill()
    first.wait(10)


def ladder(action: str, timeout: str = "30s") -> str:
    return f"""
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart: {action}
  failures:
    generation_pipeline_error:
      {{ladder: [{{action: restart, timeout: {timeout}}}], settle_delay: 0s}}
"""


def run(start_medic: Callable[[str], Medic], action: str, timeout: str = "30s") -> tuple[str, str]:
    """One ladder run by a medic of its own (one after the other on the same journal):
    the outcome and detail of its restart rung."""
    medic = start_medic(ladder(action, timeout))
    before = len([a for a in attempts(medic) if a.action == "restart"])

    def rung() -> RecoveryAttempt | None:
        done = [
            a for a in attempts(medic) if a.action == "restart" and a.outcome.value != "running"
        ]
        return done[before] if len(done) > before else None

    assert medic.report_failure("generation_pipeline_error").accepted
    found: RecoveryAttempt = wait_until(rung, timeout=40, what="the restart rung")  # type: ignore[assignment]
    medic.stop()
    return found.outcome.value, found.detail
