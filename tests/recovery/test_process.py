"""A real medic process: the recovery API, restarts, kill -9, and the history CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import MedicProcess, wait_until

CONFIG = """
data_dir: {data}
checks:
  - {{name: host_memory, type: host_memory, interval: 1h, min_available_ratio: 0}}
recovery:
  workers: 1
  cooldown: {{base: 1h}}
  actions:
    note: {{type: command, argv: [sh, -c, "echo ran >> {log}"]}}
    slow: {{type: command, argv: [sh, -c, "echo $$ > {slow_pid}; exec sleep 60"]}}
  failures:
    network_error: {{ladder: [note]}}
    vram_exhaustion: {{ladder: [{{action: slow, timeout: 2m}}]}}
"""


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "medic.yml"
    path.write_text(
        CONFIG.format(
            data=tmp_path / "data", log=tmp_path / "actions.log", slow_pid=tmp_path / "slow.pid"
        )
    )
    return path


def start(medic_process: Callable[..., MedicProcess], config: Path) -> tuple[MedicProcess, str]:
    proc = medic_process(["--config", str(config)])
    url = proc.wait_listening()
    wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
    return proc, url


def report(url: str, failure_type: str, key: str | None = None) -> httpx.Response:
    body = {"failure_type": failure_type, "dedup_key": key, "labels": {"instance": "a"}}
    return httpx.post(f"{url}/api/v1/failures", json=body)


def history(url: str, **params: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/api/v1/recoveries", params=params).json()
    return body


def finished(url: str, count: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        attempts = history(url)["attempts"]
        ok = len(attempts) >= count and all(a["outcome"] != "running" for a in attempts)
        return attempts if ok else None

    return wait_until(done, timeout=20, what=f"{count} finished attempts")  # type: ignore[return-value]


def test_cooldown_and_dedup_hold_across_a_restart(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    proc, url = start(medic_process, config)
    assert report(url, "network_error", "fp1@t1").json()["result"] == "accepted"
    (first,) = finished(url, 1)
    assert (first["action"], first["outcome"], first["source"]) == ("note", "succeeded", "api")
    assert proc.terminate() == 0  # a real restart of the process

    _, url = start(medic_process, config)
    assert report(url, "network_error", "fp1@t1").json()["result"] == "duplicate"
    assert report(url, "network_error", "fp2@t1").json()["result"] == "accepted"
    attempts = finished(url, 3)
    assert [(a["action"], a["outcome"]) for a in attempts[:2]] == [
        ("ladder", "skipped_cooldown"),
        ("ladder", "skipped_duplicate"),
    ]  # newest first
    assert (tmp_path / "actions.log").read_text() == "ran\n"  # the action ran exactly once
    stats = httpx.get(f"{url}/api/v1/recoveries/stats").json()
    row = next(s for s in stats["stats"] if s["action"] == "note")
    assert (row["attempts"], row["successes"], row["failures"]) == (1, 1, 0)
    assert stats["cooldowns"]["network_error"] > 0


def test_kill_9_during_an_action_leaves_it_interrupted_after_restart(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    first = medic_process(["--config", str(config)])
    url = first.wait_listening()
    wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
    report(url, "vram_exhaustion")
    wait_until(
        lambda: any(a["outcome"] == "running" for a in history(url)["attempts"]),
        what="the slow action to be running and journaled",
    )
    assert report(url, "network_error", "queued@1").json()["result"] == "accepted"
    first.proc.kill()  # SIGKILL: no shutdown code runs
    first.proc.wait(5)
    os.kill(int((tmp_path / "slow.pid").read_text()), signal.SIGKILL)  # the orphaned action
    _, url = start(medic_process, config)
    attempts = finished(url, 2)  # newest first
    assert [(a["action"], a["outcome"]) for a in attempts] == [
        ("note", "succeeded"),  # accepted before the kill, replayed from the journal's inbox
        ("slow", "interrupted"),
    ]
    assert attempts[0]["dedup_key"] == "queued@1" and attempts[1]["ended"] is not None
    text = httpx.get(f"{url}/metrics").text
    interrupted = 'action="ladder",failure_type="*",outcome="interrupted"} 1.0'
    assert f"medic_recovery_attempts_total{{{interrupted}" in text


def test_api_filters_paginates_and_guards_reset(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    _, url = start(medic_process, write_config(tmp_path))
    report(url, "network_error", "a")
    finished(url, 1)
    for key in ("b", "c", "d"):
        report(url, "network_error", key)
    finished(url, 4)
    page = history(url, limit="2")
    assert page["total"] == 4 and len(page["attempts"]) == 2 and page["next_offset"] == 2
    last = history(url, limit="2", offset="2")
    assert last["next_offset"] is None and last["attempts"][-1]["outcome"] == "succeeded"
    assert history(url, outcome="skipped_cooldown")["total"] == 3
    assert history(url, failure_type="vram_exhaustion")["total"] == 0
    assert history(url, since="1h")["total"] == 4
    assert httpx.get(f"{url}/api/v1/recoveries", params={"outcome": "bogus"}).status_code == 400
    assert httpx.get(f"{url}/api/v1/recoveries", params={"since": "soon"}).status_code == 400
    assert report(url, "cosmic_rays").status_code == 400
    bad = httpx.post(f"{url}/api/v1/failures", json={"failure_type": "network_error", "x": 1})
    assert bad.status_code == 422
    # A local reverse proxy forwarding a remote client: the loopback-only guard sees that
    # client (uvicorn trusts X-Forwarded-For from 127.0.0.1 only), not the proxy.
    proxied = {"X-Forwarded-For": "203.0.113.9"}
    assert httpx.post(f"{url}/api/v1/recoveries/reset", headers=proxied).status_code == 403
    assert httpx.post(f"{url}/api/v1/recoveries/reset").json() == {"status": "reset"}
    assert report(url, "network_error", "e").json()["result"] == "accepted"
    assert finished(url, 5)[0]["outcome"] == "succeeded"  # cooldown forgotten


def test_history_and_stats_commands(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    _, url = start(medic_process, config)
    report(url, "network_error")
    finished(url, 1)

    def medic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exporter", *args, "--config", str(config)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    out = medic("history", "--since", "1h", "--failure-type", "network_error")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "STARTED", "FAILURE", "ACTION", "OUTCOME", "TOOK", "DETAIL"]
    assert "network_error" in lines[1] and "note" in lines[1] and "succeeded" in lines[1]
    assert lines[-1] == "(1 of 1 attempts)"
    out = medic("stats")
    assert out.returncode == 0 and "network_error" in out.stdout and "note" in out.stdout
    empty = tmp_path / "empty.yml"
    empty.write_text(f"data_dir: {tmp_path / 'nowhere'}\n")
    missing = subprocess.run(
        [sys.executable, "-m", "exporter", "history", "--config", str(empty)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and "no journal at" in missing.stderr
