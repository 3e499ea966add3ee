"""Out-of-process actions against real peers: a program, an HTTP server, a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.recovery.external import BASE_ENVIRONMENT, label_environment
from exporter.recovery.types import FailureEvent
from tests.recovery.conftest import noop_medic, recording, settled


def _env_dumper(out: Path) -> str:
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    return f'[{sys.executable}, -c, "{script}", {out}]'


def test_labels_reach_commands_only_as_sanitised_environment(start_medic, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    medic = start_medic(f"""
recovery:
  actions:
    dump:
      type: command
      argv: {_env_dumper(out)}
      env: {{MEDIC_LABEL_KEEP: from-the-operator}}
  failures:
    system_resource_error: {{ladder: [dump]}}
""")
    medic.report_failure(
        "system_resource_error",
        labels={"instance": "gpu-7", "bad-name; rm -rf /": "$(touch pwned)", "keep": "alert"},
    )
    (attempt,) = settled(medic, 1)
    assert attempt.outcome.value == "succeeded"
    env = json.loads(out.read_text())
    assert env["MEDIC_LABEL_INSTANCE"] == "gpu-7"
    assert env["MEDIC_LABEL_BAD_NAME__RM__RF__"] == "$(touch pwned)"  # data, never run
    assert env["MEDIC_LABEL_KEEP"] == "from-the-operator"  # the operator's variables win
    assert env["MEDIC_FAILURE_TYPE"] == "system_resource_error"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_command_never_sees_medics_secrets_only_what_its_action_lists(
    start_medic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env.json"
    monkeypatch.setenv("MEDIC_TEST_TOKEN", "s3cret-bearer")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("UNRELATED", "x")
    medic = start_medic(f"""
server:
  listen: 127.0.0.1:0
  auth: {{bearer_token: {{env: MEDIC_TEST_TOKEN}}}}
recovery:
  actions:
    dump:
      type: command
      argv: {_env_dumper(out)}
      env_passthrough: [HTTPS_PROXY, NOT_SET_ANYWHERE]
  failures:
    system_resource_error: {{ladder: [dump]}}
""")
    medic.report_failure("system_resource_error", labels={"instance": "gpu-7"})
    (attempt,) = settled(medic, 1)
    assert attempt.outcome.value == "succeeded"
    env = json.loads(out.read_text())
    assert "s3cret-bearer" not in json.dumps(env)
    assert "MEDIC_TEST_TOKEN" not in env and "UNRELATED" not in env
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert "NOT_SET_ANYWHERE" not in env
    assert env["PATH"]  # the fixed base: programs are still found
    assert set(env) <= {*BASE_ENVIRONMENT, "HTTPS_PROXY", "MEDIC_LABEL_INSTANCE",
                        "MEDIC_FAILURE_TYPE", "MEDIC_EPISODE", "MEDIC_ATTEMPT", "PWD",
                        "SHLVL", "_", "LC_CTYPE"}  # fmt: skip


def test_label_names_are_sanitised() -> None:
    altered: list[str] = []
    labels = {"a.b-c": "1", "x\0": "y", "ok": "bad\0value", "long": "v" * 5000}
    env = label_environment(labels, {"PATH": "/bin"}, altered.append)
    assert env == {"PATH": "/bin", "MEDIC_LABEL_A_B_C": "1", "MEDIC_LABEL_X_": "y",
                   "MEDIC_LABEL_LONG": "v" * 4096}  # fmt: skip
    assert altered == ["nul_dropped", "truncated"]


def test_an_action_start_is_logged_with_its_episode(start_medic, caplog) -> None:
    medic = noop_medic(start_medic)
    with caplog.at_level("INFO", logger="exporter.recovery"):
        medic.report_failure("network_error", dedup_key="fp9@t")
        settled(medic, 1)
    assert any("network_error: starting noop (episode fp9@t" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_altered_label_values_are_counted_from_zero(start_medic) -> None:
    medic = start_medic("recovery: {}\n")
    text = medic.exposition.render().text.decode()
    for how in ("nul_dropped", "truncated"):
        assert f'medic_recovery_command_labels_altered_total{{how="{how}"}} 0.0' in text


def test_a_command_past_its_timeout_is_killed_with_its_children(
    start_medic, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    medic = start_medic(f"""
recovery:
  actions:
    stuck: {{type: command, argv: [sh, -c, "sleep 60 & echo $! > {pidfile}; wait"]}}
  failures:
    system_resource_error: {{ladder: [{{action: stuck, timeout: 500ms}}]}}
""")
    medic.report_failure("system_resource_error")
    found = settled(medic, 2)
    assert [a.outcome.value for a in found] == ["timeout", "exhausted"]
    child = int(pidfile.read_text())
    from tests.helpers import wait_until

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"

    wait_until(gone, what="the command's child to be killed")


def test_a_failing_command_reports_its_status_and_output(start_medic) -> None:
    medic = start_medic("""
recovery:
  actions:
    fails: {type: command, argv: [sh, -c, "echo no GPU found >&2; exit 3"]}
    missing: {type: command, argv: [/nonexistent/restart-tts]}
  failures:
    system_resource_error: {ladder: [fails, missing]}
""")
    medic.report_failure("system_resource_error")
    found = settled(medic, 3)
    assert found[0].detail == "exit status 3: no GPU found"
    assert found[1].detail.startswith("cannot run /nonexistent/restart-tts: No such file")


class Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Recorder.requests.append((self.command, self.path, dict(self.headers), body))
        self.send_response(Recorder.status)
        self.end_headers()
        self.wfile.write(b"done")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def http_peer() -> Iterator[str]:
    Recorder.requests, Recorder.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_action_sends_only_the_configured_fields(start_medic, http_peer: str) -> None:
    medic = start_medic(f"""
recovery:
  actions:
    reduce: {{type: http, url: "{http_peer}/admin/reduce", headers: {{X-Token: abc}},
              body_fields: [failure_type, labels]}}
  failures:
    vram_exhaustion: {{ladder: [reduce]}}
""")
    medic.report_failure("vram_exhaustion", "secret detail", {"gpu": "1"}, "fp@t")
    (attempt,) = settled(medic, 1)
    assert attempt.outcome.value == "succeeded" and attempt.detail == "200 done"
    method, path, headers, body = Recorder.requests[0]
    assert (method, path, headers["X-Token"]) == ("POST", "/admin/reduce", "abc")
    assert json.loads(body) == {"failure_type": "vram_exhaustion", "labels": {"gpu": "1"}}


def test_http_action_fails_on_non_2xx_and_on_no_server(start_medic, http_peer: str) -> None:
    Recorder.status = 503
    medic = start_medic(f"""
recovery:
  actions:
    busy: {{type: http, url: "{http_peer}/x"}}
    nobody: {{type: http, url: "http://127.0.0.1:9/x"}}
  failures:
    network_error: {{ladder: [busy, nobody]}}
""")
    medic.report_failure("network_error")
    found = settled(medic, 3)
    assert found[0].detail == "HTTP 503: done"
    assert found[1].outcome.value == "failed" and found[1].detail.startswith("ConnectError")


def test_signal_action_signals_the_pidfiles_process(start_medic, tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pidfile = tmp_path / "tts.pid"
    pidfile.write_text(f"{child.pid}\n")
    try:
        medic = start_medic(f"""
recovery:
  actions:
    restart: {{type: signal, pidfile: {pidfile}, signal: SIGTERM}}
    bad: {{type: signal, pidfile: {tmp_path / "absent.pid"}}}
  failures:
    generation_pipeline_error: {{ladder: [bad, restart]}}
""")
        medic.report_failure("generation_pipeline_error")
        found = settled(medic, 2)
        assert found[0].outcome.value == "failed" and "cannot read a pid" in found[0].detail
        assert found[1].detail == f"sent SIGTERM to {child.pid}"
        assert child.wait(10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


def test_a_full_disk_holds_actions_until_the_journal_commits_again(
    start_medic, monkeypatch
) -> None:
    from exporter.recovery import ladder

    monkeypatch.setattr(ladder, "HOLD_BACKOFF", (0.05,))
    medic = start_medic("""
recovery:
  cooldown: {base: 0s}
  max_waiting_per_type: 100
  rate_limit: {actions: 1000}
  actions:
    noop: {type: in_process}
  failures:
    network_error: {ladder: [noop]}
""")
    ran = recording(medic)
    assert medic.recovery.journal_healthy
    from tests.helpers import fill_database, make_room, wait_until

    fill_database(medic.db)

    for n in range(50):  # the app's own reports: accepted, nobody would send them again
        assert medic.report_failure("network_error", dedup_key=f"e{n}").accepted
    wait_until(lambda: not medic.recovery.journal_healthy, what="the disk-full error")
    wait_until(lambda: medic.recovery.snapshot()["events"].get("held_journal_down"),
               what="an action held back")  # fmt: skip
    # What ran had its start committed (rows that still fit in existing pages commit);
    # the rest wait for space.
    started = medic.db.query("SELECT COUNT(*) FROM recovery_attempts WHERE action = 'noop'")
    assert len(ran) <= started[0][0] and len(ran) < 50
    text = medic.exposition.render().text.decode()
    assert "medic_recovery_journal_up 0.0" in text
    make_room(medic.db)
    wait_until(lambda: len(ran) == 50, timeout=30, what="the held actions to run")
    assert medic.recovery.wait_idle(10)
    assert sorted(ran) == sorted(f"e{n}" for n in range(50))  # each once

    def on_record(sql: str) -> int:
        return int(medic.db.query(sql)[0][0])

    # Every run is on record, final: an end that failed to commit is written again.
    ended = "SELECT COUNT(*) FROM recovery_attempts WHERE action = 'noop' AND outcome = 'succeeded'"
    wait_until(lambda: on_record(ended) == 50, timeout=30, what="every end recorded")
    final = "SELECT COUNT(*) FROM recovery_episodes WHERE state = 'succeeded'"
    wait_until(lambda: on_record(final) == 50, timeout=30, what="every episode final")
    # ...and the journal is back: up in /metrics and in the API's reads, accepting again.
    wait_until(lambda: medic.recovery.journal_healthy, timeout=30, what="journal_up back to 1")
    medic.exposition.render()
    assert "medic_recovery_journal_up 1.0" in medic.exposition.render().text.decode()
    assert medic.recovery.submit(FailureEvent("network_error", "api", {}, "after")).accepted
    assert medic.recovery.wait_idle(10)
    wait_until(lambda: on_record(final) == 51, timeout=30, what="a new episode, on record")
