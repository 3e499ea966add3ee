"""What the typed restarts, drain and presets refuse at load time, with the path and why;
and a restart's start-up deadline is the window its rung's verification waits in."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import Medic
from exporter.config import ConfigError, parse_config
from tests.e2e.stack import free_port
from tests.recovery.conftest import settled


@pytest.mark.parametrize(("action", "problem"), [
    ("{type: http, preset: triton_reload, url: 'http://h'}", "preset triton_reload needs model"),
    ("{type: http, preset: sglang_flush_cache, url: 'http://h', method: GET}",
     "a preset makes its own requests"),
    ("{type: kubernetes, namespace: inference, selector: {app: vllm}, "
     "hygiene: {gpu_memory: true}}", "cannot tell which host processes were the pod's"),
    ("{type: kubernetes, namespace: inference, selector: {}}", "at least 1 item"),
    ("{type: systemd, unit: 'vllm'}", "must match the pattern"),
    ("{type: docker, container: 'a b'}", "must match the pattern"),
    ("{type: supervisor, url: 'unix:///s', program: p, drain: {idle: {url: 'http://h'}}}",
     "give metrics or a preset"),
])  # fmt: skip
def test_bad_restart_configs_say_what_and_where(action: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"recovery:\n  actions:\n    restart: {action}\n", env={})
    assert "recovery.actions.restart" in str(info.value)
    assert problem in str(info.value)


def test_presets_say_whether_they_disrupt() -> None:
    config = parse_config("""
recovery:
  actions:
    sleep: {type: http, preset: vllm_sleep_wake, url: 'http://h'}
    flush: {type: http, preset: sglang_flush_cache, url: 'http://h'}
    unit: {type: systemd, unit: vllm.service}
""", env={})  # fmt: skip
    actions = config.recovery.actions
    assert actions["sleep"].is_disruptive() and actions["unit"].is_disruptive()
    assert not actions["flush"].is_disruptive()


def test_explain_says_what_a_typed_restart_does() -> None:
    actions = parse_config("""
recovery:
  actions:
    unit: {type: systemd, unit: vllm.service, target: vllm, hygiene: {gpu_memory: true},
           drain: {call: {url: 'http://lb/drain'}}}
    pod: {type: kubernetes, namespace: inference, selector: {app: vllm}, mode: evict}
""", env={}).recovery.actions  # fmt: skip
    assert actions["unit"].describe() == (
        "drain, then systemd restart of vllm.service over D-Bus (system bus), then undo "
        "(target vllm); before the start: the old tree gone and its GPU memory released"
    )
    assert actions["pod"].describe() == (
        "kubernetes evict of this node's pods in inference "
        "(app=vllm); then waits for the old pods to be gone"
    )


SLOW_START = """
import http.server, sys, time
time.sleep(1.5)  # loading the model
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_the_start_deadline_is_the_verification_window(
    start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "slow.py").write_text(SLOW_START)
    (tmp_path / "server.pid").write_text("999999999")  # not running: only the start
    medic = start_medic(f"""
checks:
  - {{name: up, type: tcp, address: '127.0.0.1:{port}', interval: 1h, failure_threshold: 1}}
recovery:
  actions:
    start_server:
      type: process
      pidfile: {tmp_path}/server.pid
      start: [sh, -c, 'echo $$ > {tmp_path}/server.pid; exec {sys.executable} {tmp_path}/slow.py {port}']
      hygiene: {{start_deadline: 20s}}
  failures:
    generation_pipeline_error:
      ladder: [start_server]
      verify: [up]
      settle_delay: 0s
      verify_timeout: 0s
      verify_interval: 100ms
""")  # noqa: E501 - one argv line
    try:
        assert medic.report_failure("generation_pipeline_error").accepted
        [found] = settled(medic, 1)
        # One look (verify_timeout 0s) would have failed: the server takes 1.5 s to listen.
        assert found.outcome.value == "succeeded", found.detail
        assert "verified by up after " in found.detail
    finally:
        import os
        import signal

        pid = int((tmp_path / "server.pid").read_text())
        if pid != 999999999:
            os.kill(pid, signal.SIGKILL)
