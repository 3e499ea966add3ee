"""A real model server nobody here wrote: NVIDIA's Triton Inference Server (the binary
PyTriton ships, serving a tiny CPU model) under a real supervisord, and medic recovering it
end to end: hung (SIGSTOP), killed, and with a fatal line in its log. Each time the
failure is found by medic's own checks (a synthetic inference request, the log), medic
restarts the server through supervisorctl, verification waits until a real inference
answers again, and the whole loop is journaled and counted once.

Why Triton: of the servers the notes list, it is the one whose real binary runs on these
CPU-only machines from PyPI alone (llama.cpp would have to be compiled: over 20 minutes on
2 cores; vLLM, TGI, SGLang need a GPU). scripts/fetch-model-server.sh installs it into
.stack/pytriton; without it these tests skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.recovery.types import RecoveryAttempt
from tests.e2e.stack import MODEL_SERVER_VENV, free_port, needs_supervisord
from tests.helpers import wait_until
from tests.recovery.conftest import attempts

VENV = MODEL_SERVER_VENV
SERVER = Path(__file__).parents[1] / "fixtures" / "triton" / "server.py"
HARD_RESTART = SERVER.parent / "hard_restart.py"
pytestmark = needs_supervisord

SUPERVISOR = """
[unix_http_server]
file={work}/supervisor.sock
chmod=0700
[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
childlogdir={work}
nodaemon=false
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{work}/supervisor.sock
[program:triton]
command={python} {server} {port} {grpc} {metrics} {work}/workspace
directory={work}
environment=HOME="{work}",PYTHONUNBUFFERED="1"
autostart=true
autorestart=false
startsecs=0
stopasgroup=true
killasgroup=true
stopwaitsecs=5
redirect_stderr=true
stdout_logfile={work}/triton.log
"""
INFER = json.dumps({"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES",
                                "data": ["ping"]}]})  # fmt: skip


class Supervised:
    """supervisord running Triton; the test's handle on both."""

    def __init__(self, work: Path) -> None:
        self.work, self.port = work, free_port()
        self.ports = (self.port, free_port(), free_port())  # http, grpc, metrics
        self.conf = work / "supervisord.conf"
        text = SUPERVISOR.format(
            work=work,
            python=VENV / "bin" / "python",
            server=SERVER,
            port=self.port,
            grpc=self.ports[1],
            metrics=self.ports[2],
        )
        self.conf.write_text(text)
        subprocess.run([str(VENV / "bin" / "supervisord"), "-c", str(self.conf)],
                       check=True, timeout=30)  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self.wait_serving()
        except BaseException:
            self.stop()  # no supervisord of ours outlives a failed start
            raise

    def ctl(self, *args: str) -> str:
        argv = [str(VENV / "bin" / "supervisorctl"), "-c", str(self.conf), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return result.stdout

    def infer(self, word: str = "ping", timeout: float = 2.0) -> httpx.Response:
        body = INFER.replace("ping", word)
        return httpx.post(f"{self.url}/v2/models/tiny/infer", content=body, timeout=timeout)

    def serving(self) -> bool:
        try:
            return self.infer().status_code == 200
        except httpx.HTTPError:
            return False

    def wait_serving(self) -> None:
        wait_until(self.serving, timeout=90, what="Triton to serve the tiny model")

    def tritonserver(self) -> psutil.Process:
        wrapper = int(self.ctl("pid", "triton").strip())
        found = [p for p in psutil.Process(wrapper).children(recursive=True)
                 if p.name() == "tritonserver"]  # fmt: skip
        assert found, "no tritonserver under the program"
        return found[0]

    def starts(self) -> int:
        """How often supervisord spawned the program (its log says so each time)."""
        return (self.work / "supervisord.log").read_text().count("spawned: 'triton'")

    def stop(self) -> None:
        pid_file = self.work / "supervisord.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            for process in psutil.Process(pid).children(recursive=True):
                if process.status() == psutil.STATUS_STOPPED:
                    process.send_signal(signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)  # supervisord stops its program (as a group)
            wait_until(lambda: gone(pid), timeout=30, what="supervisord to end")


def gone(pid: int) -> bool:
    """Exited (a daemon's zombie waits for PID 1 to reap it: that is gone too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervised]:
    supervised = Supervised(tmp_path_factory.mktemp("triton"))
    yield supervised
    supervised.stop()


def medic_for(supervised: Supervised, tmp_path: Path, trigger_on: str) -> Medic:
    """medic probing Triton with a real inference and following its log; `trigger_on`
    names the check whose failing streak runs the restart."""
    probe_trigger = "trigger: model_server_hung" if trigger_on == "infer" else ""
    log_trigger = "trigger: model_server_hung" if trigger_on == "log" else ""
    text = f"""
data_dir: {tmp_path / "data"}
checks:
  - name: infer
    type: request
    api: custom
    url: {supervised.url}/v2/models/tiny/infer
    body: '{INFER}'
    body_json: {{field: outputs.0.data.0, equals: "ping!"}}
    interval: 1s
    timeout: 1s
    failure_threshold: 3
    {probe_trigger}
  - name: triton_log
    type: log
    path: {supervised.work / "triton.log"}
    presets: [cuda, triton]
    interval: 500ms
    failure_threshold: 1
    hold: 5s
    {log_trigger}
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart_triton:
      type: command
      argv: [{VENV / "bin" / "supervisorctl"}, -c, {supervised.conf}, restart, triton]
    restart_triton_tree:
      type: command
      argv: [{sys.executable}, {HARD_RESTART}, {VENV / "bin" / "supervisorctl"},
             {supervised.conf}, triton, "{supervised.ports[0]}", "{supervised.ports[1]}",
             "{supervised.ports[2]}"]
  failures:
    model_server_hung:
      verify: [infer]
      settle_delay: 0s
      verify_timeout: 90s
      verify_interval: 500ms
      ladder:
        - {{action: restart_triton, timeout: 60s, verify_timeout: 25s}}
        - {{action: restart_triton_tree, timeout: 60s}}
"""
    medic = Medic(parse_config(text, env={}))
    medic.start()
    wait_until(lambda: medic.health.results().get("infer") is not None
               and medic.health.results()["infer"].ok, timeout=30,
               what="medic's first good inference")  # fmt: skip
    return medic


def finished(medic: Medic, supervised: Supervised, starts_before: int,
             rungs: list[tuple[str, str]]) -> None:  # fmt: skip
    """One episode, its rungs as expected, the last verified by a real inference; each
    counted once."""
    try:

        def done() -> list[RecoveryAttempt] | None:
            found = attempts(medic)
            ended = len(found) >= len(rungs) and all(a.outcome.value != "running" for a in found)
            return found if ended else None

        # A restart stops Triton, starts it again and waits for the model to load: tens of
        # seconds on 2 busy cores.
        found: list[RecoveryAttempt] = wait_until(done, timeout=150, what="the ladder to end")  # type: ignore[assignment]
        assert [(a.action, a.outcome.value) for a in found] == rungs
        assert {a.source for a in found} == {"check"} and len({a.episode_id for a in found}) == 1
        assert "verified by infer" in found[-1].detail
        assert supervised.serving()  # a real inference answers now
        assert supervised.starts() == starts_before + len(rungs)  # one spawn per restart
        counted = medic.recovery.snapshot()["attempts"]
        for action, outcome in rungs:
            assert counted[("model_server_hung", action, outcome)] == 1
        assert triggered_once(medic)
    finally:
        medic.stop()


def triggered_once(medic: Medic) -> bool:
    assert medic.triggers is not None
    return sum(n for (_, result), n in medic.triggers.counts.items() if result == "accepted") == 1


def test_a_hung_server_is_found_restarted_and_verified(triton: Supervised, tmp_path: Path) -> None:
    medic = medic_for(triton, tmp_path, trigger_on="infer")
    before = triton.starts()
    started = time.monotonic()
    triton.tritonserver().send_signal(signal.SIGSTOP)  # wedged with its process alive
    wait_until(lambda: medic.health.streak("infer").failing, timeout=15,
               what="the probe's failure threshold")  # fmt: skip
    detected = time.monotonic() - started
    assert detected < 8  # 3 failures of a 1 s probe every 1 s, and scheduling slack
    # supervisorctl restart counts the program stopped once its main process exits; the
    # SIGSTOPped tritonserver survives, keeps its ports, and the new one cannot start.
    # Verification sees it (not_recovered, never "done"); the next rung kills the tree.
    finished(medic, triton, before, [("restart_triton", "not_recovered"),
                                     ("restart_triton_tree", "succeeded")])  # fmt: skip


def test_a_killed_server_is_restarted(triton: Supervised, tmp_path: Path) -> None:
    medic = medic_for(triton, tmp_path, trigger_on="infer")
    before = triton.starts()
    triton.tritonserver().kill()
    finished(medic, triton, before, [("restart_triton", "succeeded")])


def test_a_fatal_line_in_its_log_restarts_it(triton: Supervised, tmp_path: Path) -> None:
    medic = medic_for(triton, tmp_path, trigger_on="log")
    before = triton.starts()
    assert triton.infer("fatal").status_code != 200  # the model prints the CUDA line
    # PyTriton's wrapper exits before its tritonserver has shut down, so the plain restart
    # starts a new one beside the old (still failing) one; verification says so, and the
    # tree restart fixes it. The log check's hold ending meanwhile does not cancel it.
    finished(medic, triton, before, [("restart_triton", "not_recovered"),
                                     ("restart_triton_tree", "succeeded")])  # fmt: skip
    assert triton.infer("ping").json()["outputs"][0]["data"] == ["ping!"]
