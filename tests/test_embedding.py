"""Embedding medic: config forms, context manager, background server, checks and actions."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import httpx
import pytest

from exporter import Medic
from exporter.checks import Observation
from exporter.gpu import fakenvml
from tests.helpers import wait_until

CONFIG = """
data_dir: {data}
checks:
  - {{name: queue_ok, type: in_process, interval: 1h}}
recovery:
  actions:
    drain: {{type: in_process}}
  failures:
    system_resource_error: {{verify: [queue_ok], settle_delay: 0s, ladder: [drain]}}
"""


def test_background_server_with_app_checks_and_actions(tmp_path: Path) -> None:
    queue = {"depth": 500}

    def queue_ok() -> Observation:
        depth = queue["depth"]
        return Observation(problems=(f"{depth} queued",) if depth > 100 else ())

    medic = Medic(CONFIG.format(data=tmp_path))  # YAML text
    medic.register_check("queue_ok", queue_ok)
    medic.register_action("drain", lambda: queue.update(depth=0) or True)
    server = medic.serve_in_background()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        wait_until(lambda: httpx.get(f"{server.url}/-/ready").status_code == 200, what="ready")
        assert (
            'medic_check_success{check="queue_ok"} 0.0' in httpx.get(f"{server.url}/metrics").text
        )
        assert medic.report_failure("system_resource_error").accepted
        assert medic.recovery.wait_idle(10)
        body = httpx.get(f"{server.url}/api/v1/recoveries").json()
        assert [(a["action"], a["outcome"]) for a in body["attempts"]] == [("drain", "succeeded")]
        assert body["attempts"][0]["detail"] == "verified by queue_ok"
    finally:
        server.stop()
    assert not medic.ready()


def test_config_as_mapping_or_path_and_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "medic.yml"
    path.write_text(f"data_dir: {tmp_path}\n")
    assert Medic(path).config.data_dir == tmp_path
    with Medic({"data_dir": str(tmp_path), "checks": []}) as medic:
        wait_until(medic.ready, what="ready")
        medic.register_check("late", lambda: True, interval=3600)  # after start: scheduled
        wait_until(lambda: "late" in medic.health.results(), what="the late check to run")
    assert not medic.ready()


QUIET = """
data_dir: {data}
checks:
  - {{name: gpu, type: gpu, expected: 1, interval: 100ms, nvml_module: exporter.gpu.fakenvml}}
  - {{name: fast, type: in_process, interval: 100ms}}
"""


def test_embedded_medic_keeps_the_apps_log_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app logs at INFO; APScheduler would add two lines per job run (24 in 30 s).
    (tmp_path / "nvml.json").write_text(json.dumps(fakenvml.make_state(1)))
    monkeypatch.setenv(fakenvml.ENV, str(tmp_path / "nvml.json"))
    runs: list[int] = []

    def fast() -> bool:
        runs.append(1)
        return True

    caplog.set_level(logging.INFO)
    with Medic(QUIET.format(data=tmp_path / "data")) as medic:
        medic.register_check("fast", fast)
        wait_until(lambda: len(runs) >= 5, timeout=15, what="five runs of the check")
    chatty = [r for r in caplog.records
              if r.levelno < logging.WARNING and ("apscheduler" in r.name or "Running job" in
                                                  r.getMessage())]  # fmt: skip
    assert chatty == [], [f"{r.name}: {r.getMessage()}" for r in chatty[:5]]


def test_stop_right_after_start_prints_no_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GPU helpers are child processes writing to pipes medic closes on stop; their
    # stderr is this process's fd 2 (capfd sees it).
    (tmp_path / "nvml.json").write_text(json.dumps(fakenvml.make_state(1)))
    monkeypatch.setenv(fakenvml.ENV, str(tmp_path / "nvml.json"))
    for round_ in range(8):
        medic = Medic(QUIET.format(data=tmp_path / f"data{round_}"))
        medic.register_check("fast", lambda: True)
        medic.start()
        medic.stop()
    # Helpers exit on their own once their pipe closes; give them that time, bounded.
    wait_until(lambda: not helper_processes(), timeout=10, what="the helpers to exit")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-3000:]


def helper_processes() -> list[int]:
    """Our child processes that are GPU helpers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"exporter.gpu.worker" in cmdline and stat[0] != "Z":
            found.append(int(entry.name))
    return found
