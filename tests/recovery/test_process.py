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
import pytest

from tests.helpers import MedicProcess, wait_until

CONFIG = """
data_dir: {data}
checks:
  - {{name: host_memory, type: host_memory, interval: 1h, min_available_ratio: 0}}
recovery:
  workers: 1
  cooldown: {{base: 1h}}
  interrupted: {policy}
  actions:
    note: {{type: command, argv: [sh, -c, "echo ran >> {log}"]}}
    # Blocks on a FIFO until the test writes to it; says when it starts and ends.
    slow: {{type: command, argv: [sh, -c, "echo $$ > {slow_pid}; echo start >> {slow_log};
                                         cat {gate} > /dev/null; echo end >> {slow_log}"]}}
    hang: {{type: http, url: "{hang_url}"}}
  failures:
    network_error: {{ladder: [note]}}
    vram_exhaustion: {{ladder: [{{action: slow, timeout: 2m}}]}}
    generation_pipeline_error: {{ladder: [{{action: hang, timeout: 2m}}, note]}}
"""


def write_config(tmp_path: Path, policy: str = "retry_once", hang_url: str = "http://x") -> Path:
    path = tmp_path / "medic.yml"
    gate = tmp_path / "gate"
    if not gate.exists():
        os.mkfifo(gate)
    path.write_text(
        CONFIG.format(
            data=tmp_path / "data", log=tmp_path / "actions.log", slow_pid=tmp_path / "slow.pid",
            slow_log=tmp_path / "slow.log", gate=gate, policy=policy, hang_url=hang_url,
        )
    )  # fmt: skip
    return path


def open_gate(tmp_path: Path) -> None:
    """Let the slow command finish (it reads the FIFO until a writer closes it)."""
    with open(tmp_path / "gate", "w") as fifo:
        fifo.write("go\n")


def release_gate(tmp_path: Path) -> None:
    """End a `cat` still reading the FIFO (a killed command's orphan): open it for writing
    without blocking (ENXIO: no reader left) and close it, which gives the reader EOF."""
    try:
        fd = os.open(tmp_path / "gate", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def metric(url: str, name: str, **labels: str) -> float | None:
    from tests.test_server import value

    return value(httpx.get(f"{url}/metrics").text, name, **labels)


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


def kill_9(proc: MedicProcess) -> None:
    proc.proc.kill()  # SIGKILL: no shutdown code runs
    proc.proc.wait(5)


def test_kill_9_during_a_command_adopts_it_and_never_runs_it_twice(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    first, url = start(medic_process, config)
    assert report(url, "vram_exhaustion", "slow@1").json()["result"] == "accepted"
    wait_until((tmp_path / "slow.log").exists, what="the slow command to start")
    assert report(url, "network_error", "queued@1").json()["result"] == "accepted"  # waits
    kill_9(first)
    assert (tmp_path / "slow.log").read_text() == "start\n"  # it outlived medic

    _, url = start(medic_process, config)
    # A new episode of the busy type waits for the adopted ladder instead of running beside it.
    assert report(url, "vram_exhaustion", "slow@2").json()["result"] == "accepted"
    assert report(url, "vram_exhaustion", "slow@1").json()["result"] == "duplicate"
    assert metric(url, "medic_recovery_resumed_episodes_total", how="adopted") == 1
    assert metric(url, "medic_recovery_resumed_episodes_total", how="requeued") == 1
    assert metric(url, "medic_recovery_in_progress") == 1  # the adopted one holds the slot
    open_gate(tmp_path)
    attempts = finished(url, 4)  # newest first
    assert (tmp_path / "slow.log").read_text() == "start\nend\n"  # one run, adopted
    by_key = {(a["dedup_key"], a["action"]): a for a in attempts}
    adopted = by_key[("slow@1", "slow")]
    assert adopted["outcome"] == "succeeded" and adopted["detail"].startswith("adopted")
    assert by_key[("slow@2", "ladder")]["outcome"] == "skipped_cooldown"  # the cooldown held
    assert by_key[("queued@1", "note")]["outcome"] == "succeeded"  # replayed, ran once
    assert (tmp_path / "actions.log").read_text() == "ran\n"


def test_a_command_that_ends_while_medic_is_down_is_taken_as_finished(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    first, url = start(medic_process, config)
    report(url, "vram_exhaustion", "slow@1")
    wait_until((tmp_path / "slow.log").exists, what="the slow command to start")
    kill_9(first)
    os.kill(int((tmp_path / "slow.pid").read_text()), signal.SIGKILL)  # dies while medic is down
    release_gate(tmp_path)  # its `cat` on the FIFO outlives it: let that one go too
    _, url = start(medic_process, config)
    attempts = finished(url, 2)
    assert [(a["action"], a["outcome"]) for a in attempts] == [
        ("ladder", "exhausted"),
        ("slow", "failed"),
    ]
    assert attempts[1]["detail"] == "adopted after a restart: exit status 137: Killed"
    assert metric(url, "medic_recovery_resumed_episodes_total", how="finished_while_down") == 1


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
    reset = f"{url}/api/v1/recoveries/reset"
    assert httpx.post(reset, json={}, headers=proxied).status_code == 403
    assert httpx.post(reset, json={}).json() == {"status": "reset"}
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


class HangingServer:
    """An HTTP server on 127.0.0.1 whose every request waits until released."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.arrived = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.arrived.set()
                outer.release.wait(30)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hang"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("policy", ["retry_once", "give_up"])
def test_kill_9_during_an_http_action_follows_the_interrupted_policy(
    medic_process: Callable[..., MedicProcess], tmp_path: Path, policy: str
) -> None:
    hanging = HangingServer()
    try:
        config = write_config(tmp_path, policy, hanging.url)
        first, url = start(medic_process, config)
        report(url, "generation_pipeline_error", "gpe@1")
        assert hanging.arrived.wait(10)  # the request is in flight: it may take effect
        kill_9(first)
        _, url = start(medic_process, config)
        assert metric(url, "medic_recovery_resumed_episodes_total", how="interrupted") == 1
        if policy == "retry_once":  # hang is not started again; the next rung runs
            attempts = finished(url, 2)
            assert [(a["action"], a["outcome"]) for a in attempts] == [
                ("note", "succeeded"),
                ("hang", "interrupted"),
            ]
            assert (tmp_path / "actions.log").read_text() == "ran\n"
        else:  # the episode ends for a person, the type cools down
            attempts = finished(url, 2)
            assert [(a["action"], a["outcome"]) for a in attempts] == [
                ("ladder", "interrupted"),
                ("hang", "interrupted"),
            ]
            assert "a person is needed" in attempts[0]["detail"]
            assert not (tmp_path / "actions.log").exists()
            labels = {"failure_type": "generation_pipeline_error", "action": "ladder",
                      "outcome": "interrupted"}  # fmt: skip
            # /metrics is re-rendered when the render loop sees the change (polled).
            wait_until(lambda: metric(url, "medic_recovery_attempts_total", **labels) == 1,
                       what="the interrupted ladder in /metrics")  # fmt: skip
            stats = httpx.get(f"{url}/api/v1/recoveries/stats").json()
            assert stats["cooldowns"]["generation_pipeline_error"] > 0
        assert report(url, "generation_pipeline_error", "gpe@1").json()["result"] == "duplicate"
    finally:
        hanging.close()
