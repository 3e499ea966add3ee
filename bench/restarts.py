"""Restart-to-verified through a real supervisord: from the failure report to the rung's
`succeeded`, for the supervisor action without hygiene, with it (the old tree gone), and
with the GPU-memory wait (the fake NVML, nothing held); then the drained process restart
under load beside the plain one: the time it adds and the requests each fails.

    .venv/bin/python -m bench.restarts [--runs 7]

The program is a Python HTTP server that takes 0.5 s to "load" before it listens;
supervisord's startsecs is 1 s. Variants alternate run by run, so drift hits all alike;
medians and ranges of `runs` restarts each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from exporter.app import Medic
from exporter.config import parse_config
from exporter.gpu import fakenvml
from tests.e2e.stack import MODEL_SERVER_VENV, free_port
from tests.helpers import wait_until
from tests.recovery.test_drain import Load

SUPERVISORD = MODEL_SERVER_VENV / "bin" / "supervisord"
ROOT = Path(__file__).parents[1]
SERVER = """
import http.server, sys, time
time.sleep(0.5)  # loading the model
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                http.server.SimpleHTTPRequestHandler).serve_forever()
"""
CONF = """
[unix_http_server]
file={work}/s.sock
[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
childlogdir={work}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:model]
command={python} {work}/server.py {port}
directory={work}
startsecs=1
stopasgroup=true
killasgroup=true
"""


def medic_for(config: str, data: Path) -> Medic:
    medic = Medic(parse_config(f"data_dir: {data}\n" + config, env={}))
    medic.start()
    return medic


def timed(medic: Medic, failure: str = "generation_pipeline_error") -> tuple[float, str]:
    started = time.perf_counter()
    assert medic.report_failure(failure).accepted

    def done() -> object:
        found, _ = medic.journal.attempts(limit=10)
        return found[0] if found and found[0].outcome.value != "running" else None

    attempt = wait_until(done, timeout=60, what="the rung")
    took = time.perf_counter() - started
    assert attempt.outcome.value == "succeeded", attempt.detail  # type: ignore[attr-defined]
    return took, attempt.detail  # type: ignore[attr-defined]


def supervisor_variants(work: Path, runs: int) -> dict[str, list[float]]:
    port = free_port()
    (work / "server.py").write_text(SERVER)
    (work / "supervisord.conf").write_text(CONF.format(work=work, port=port,
                                                       python=sys.executable))  # fmt: skip
    (work / "nvml.json").write_text(json.dumps(fakenvml.make_state(1)))
    os.environ[fakenvml.ENV] = str(work / "nvml.json")
    subprocess.run([str(SUPERVISORD), "-c", str(work / "supervisord.conf")], check=True)
    hygiene = {
        "no hygiene": "{tree: false}",
        "tree gone": "{tree: true}",
        "tree gone + GPU memory released": "{tree: true, gpu_memory: true}",
    }
    found: dict[str, list[float]] = {name: [] for name in hygiene}
    try:
        for run in range(runs):
            for name, setting in hygiene.items():
                medic = medic_for(f"""
checks:
  - {{name: gpu, type: gpu, enabled: false, nvml_module: exporter.gpu.fakenvml}}
  - {{name: ready, type: http, url: 'http://127.0.0.1:{port}/', interval: 1h,
     failure_threshold: 1}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart: {{type: supervisor, url: 'unix://{work}/s.sock', program: model,
              hygiene: {setting}}}
  failures:
    generation_pipeline_error:
      ladder: [restart]
      verify: [ready]
      settle_delay: 0s
      verify_interval: 50ms
""", work / f"data-{run}-{len(found[name])}-{name[:4]}")  # fmt: skip
                try:
                    took, _ = timed(medic)
                finally:
                    medic.stop()
                found[name].append(took)
    finally:
        os.kill(int((work / "supervisord.pid").read_text()), signal.SIGTERM)
        del os.environ[fakenvml.ENV]
    return found


def drained_variants(work: Path, runs: int) -> dict[str, tuple[list[float], list[int]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "tests.fixtures.drainable", str(port), str(work)]
    subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    wait_until((work / "server.pid").exists, what="the server")
    drain = (f"\n      drain: {{call: {{url: {base}/drain}}, idle: {{url: {base}/metrics, "
             f"metrics: [inflight_requests]}}, undo: {{url: {base}/undrain}}}}")  # fmt: skip
    found: dict[str, tuple[list[float], list[int]]] = {"plain": ([], []), "drained": ([], [])}
    try:
        for run in range(runs):
            for name in found:
                medic = medic_for(f"""
checks:
  - {{name: ready, type: http, url: {base}/ready, interval: 1h, failure_threshold: 1}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart:
      type: process
      pidfile: {work}/server.pid
      start: [{sys.executable}, -m, tests.fixtures.drainable, '{port}', {work}]
      cwd: {ROOT}{drain if name == "drained" else ""}
  failures:
    generation_pipeline_error:
      ladder: [restart]
      verify: [ready]
      settle_delay: 0s
      verify_interval: 50ms
""", work / f"data-d{run}-{name}")  # fmt: skip
                load = Load(f"{base}/work")
                try:
                    wait_until(partial(steady, load), what="steady load")
                    asked = time.time()
                    took, detail = timed(medic)
                    if os.environ.get("BENCH_VERBOSE"):
                        print(f"{name}: {took:.2f} s: {detail}")
                finally:
                    load.stop()
                    medic.stop()
                found[name][0].append(took)
                found[name][1].append(len(load.failed_before(asked)))
                (work / "drained_at").unlink(missing_ok=True)
    finally:
        os.killpg(int((work / "server.pid").read_text()), signal.SIGKILL)
    return found


def steady(load: Load) -> bool:
    """Eight requests served: the load is on."""
    return sum(r.status == 200 for r in load.requests) >= 8


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, "
            f"max {max(values):.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not SUPERVISORD.exists():
        sys.exit("bench.restarts needs supervisord in .stack/pytriton (make stack)")
    scratch: Callable[[], tempfile.TemporaryDirectory[str]] = tempfile.TemporaryDirectory
    with scratch() as one, scratch() as two:
        for name, took in supervisor_variants(Path(one), args.runs).items():
            print(f"supervisor restart to verified, {name}: {spread(took)}")
        drained = drained_variants(Path(two), args.runs)
    for name, (took, failed) in drained.items():
        print(
            f"process restart under load, {name}: {spread(took)}; requests begun before "
            f"it that failed: {sum(failed)} in {len(failed)} restarts"
        )
    added = statistics.median(drained["drained"][0]) - statistics.median(drained["plain"][0])
    print(f"the drain adds {added:.2f} s at the median (in-flight requests take 0.4 s)")


if __name__ == "__main__":
    main()
