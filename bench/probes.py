"""Watching the model server: how fast a hang is found and fixed, and what the checks cost.

    .venv/bin/python -m bench.probes [--only detect,cpu,parse,logs] [--probes 50]
        [--cpu-seconds 20] [--series 5000] [--lines 1000000] [--rounds 5]

- detect: a stand-in server hangs (accepts, never answers); a request probe at 1 s with a
  1 s timeout and failure_threshold 3 finds it, a local trigger restarts it (an HTTP
  action), verification polls until it answers. Times from the hang to the restart's
  start and to verified service, median of `rounds`, beside the same figures computed for
  a Kubernetes liveness probe with its defaults and for vLLM's own engine timeout.
- cpu: medic's CPU for `probes` HTTP probes at 1 s against a stand-in in another process.
- parse: scrape-side cost of a `series`-series vLLM-shaped exposition with the vLLM preset:
  medic's filtered parse + rule evaluation, beside prometheus_client parsing it whole.
- logs: log check throughput over `lines` lines with the CUDA, vLLM and NCCL presets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

STAND_IN = """
import sys, threading
sys.path.insert(0, {root!r})
from tests.fixtures.standin import StandIn
s = StandIn()
print(s.url, flush=True)
threading.Event().wait()
"""


def spawn_stand_in() -> tuple[subprocess.Popen[str], str]:
    """A stand-in model server in its own process (its CPU is not medic's)."""
    root = str(Path(__file__).parents[1])
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN.format(root=root)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def detect(rounds: int, timeout: str) -> None:
    from exporter.app import Medic
    from exporter.config import parse_config
    from tests.fixtures.standin import StandIn

    hang_to_start, hang_to_verified = [], []
    for _ in range(rounds):
        server = StandIn()
        data = tempfile.mkdtemp()
        config = parse_config(f"""
data_dir: {data}
checks:
  - {{name: gen, type: request, api: openai_completions, model: tiny, url: {server.url},
     body_json: {{field: status}}, interval: 1s, timeout: {timeout}, failure_threshold: 3,
     trigger: model_server_hung}}
recovery:
  cooldown: {{base: 0s}}
  actions: {{restart: {{type: http, url: "{server.url}/admin/restart"}}}}
  failures:
    model_server_hung: {{verify: [gen], settle_delay: 0s, verify_interval: 200ms,
                         ladder: [restart]}}
""", env={})  # fmt: skip
        medic = Medic(config)
        medic.start()
        try:
            deadline = time.time() + 10
            while not medic.health.results().get("gen") and time.time() < deadline:
                time.sleep(0.05)
            hung_at = time.time()
            server.state = "hung"
            while time.time() < hung_at + 60:
                found, _ = medic.journal.attempts(limit=5)
                done = [a for a in found if a.outcome.value == "succeeded"]
                if done:
                    hang_to_start.append(done[0].started - hung_at)
                    hang_to_verified.append((done[0].ended or 0) - hung_at)
                    break
                time.sleep(0.05)
        finally:
            medic.stop()
            server.stop()
    print(
        f"detect: hang -> restart starts: median {statistics.median(hang_to_start):.2f} s "
        f"(min {min(hang_to_start):.2f}, max {max(hang_to_start):.2f}); hang -> verified "
        f"service: median {statistics.median(hang_to_verified):.2f} s over {rounds} rounds "
        f"(probe every 1 s, timeout {timeout})"
    )
    if timeout != "1s":
        return
    # The same figures computed for others: a probe fails `threshold` times `period` apart,
    # each failure known `timeout` after it starts; the hang falls anywhere in a period.
    # A failing run lasts its timeout: with the timeout equal to the period, the next tick
    # finds the run still going and is skipped (one instance at a time): the period doubles.
    for name, period, bound, threshold in (
        ("medic request probe, timeout 0.8 s", 1, 0.8, 3),
        ("medic request probe, timeout = period (ticks skipped)", 2, 1, 3),
        ("Kubernetes liveness defaults", 10, 1, 3),
    ):
        best = (threshold - 1) * period + bound
        worst = threshold * period + bound
        print(
            f"detect (computed): {name} ({period} s x {threshold}, timeout {bound} s): "
            f"{best:g}-{worst:g} s, mean {(best + worst) / 2:g} s"
        )
    print(
        "detect (computed): vLLM's own engine timeout (VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS, "
        "about 300 s, unconfirmed upstream): about 300 s, and only where it is set; a hang "
        "without such a timer stays a hang"
    )


def cpu(probes: int, seconds: float) -> None:
    from exporter.app import Medic
    from exporter.config import parse_config

    proc, url = spawn_stand_in()
    data = tempfile.mkdtemp()
    checks = "".join(f"  - {{name: p{i}, type: http, url: {url}/health, interval: 1s, "
                     f"timeout: 1s}}\n" for i in range(probes))  # fmt: skip
    medic = Medic(parse_config(f"data_dir: {data}\nchecks:\n{checks}", env={}))
    me = psutil.Process()
    try:
        medic.start()
        time.sleep(3)  # past the first round's start-up
        before, started = me.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, elapsed = me.cpu_times(), time.monotonic() - started
        runs = sum(1 for _ in medic.health.results())
    finally:
        medic.stop()
        proc.kill()
        proc.wait(10)
    used = (after.user - before.user) + (after.system - before.system)
    print(
        f"cpu: {probes} HTTP probes at 1 s for {elapsed:.0f} s: {used / elapsed:.1%} of one "
        f"core ({used / elapsed / probes * 1000:.2f} ms CPU per probe run; {runs} checks)"
    )


def exposition(series: int) -> str:
    """A vLLM-shaped exposition: the preset's metrics plus many other series."""
    lines = []
    models = max(1, series // 500)
    for m in range(models):
        label = f'model_name="m{m}"'
        lines += [f"vllm:num_requests_running{{{label}}} 3",
                  f"vllm:num_requests_waiting{{{label}}} 1",
                  f"vllm:generation_tokens_total{{{label}}} 1234567",
                  f"vllm:prompt_tokens_total{{{label}}} 7654321",
                  f"vllm:kv_cache_usage_perc{{{label}}} 0.5"]  # fmt: skip
        for le in ("0.001", "0.01", "0.1", "1.0", "10.0", "+Inf"):
            lines.append(f'vllm:time_to_first_token_seconds_bucket{{{label},le="{le}"}} 100')
    i = 0
    while len(lines) < series:
        lines.append(f'vllm:request_params_n_bucket{{model_name="m{i % models}",le="{i}"}} {i}')
        i += 1
    return "\n".join(lines) + "\n"


def parse(series: int, repeat: int = 30) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.checks.metricrules import RuleEvaluator
    from exporter.checks.scrape import snapshot
    from exporter.config.metricscheck import merged_rules

    text = exposition(series)
    evaluator = RuleEvaluator(merged_rules(["vllm"], []))
    wanted = evaluator.wanted()
    ours, whole = [], []
    for i in range(repeat):
        started = time.perf_counter()
        evaluator.observe(float(i), snapshot(text, wanted))
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        for family in text_string_to_metric_families(text):
            list(family.samples)
        whole.append(time.perf_counter() - started)
    mine, theirs = statistics.median(ours) * 1000, statistics.median(whole) * 1000
    print(
        f"parse: {series}-series vLLM exposition, vLLM preset: medic {mine:.2f} ms median "
        f"(filtered parse + evaluation), prometheus_client parsing all of it "
        f"{theirs:.2f} ms; ratio {theirs / mine:.1f}x"
    )


def logs(lines: int) -> None:
    from exporter.checks.logs import LogProbe
    from exporter.config.logcheck import LogCheckConfig

    path = Path(tempfile.mkdtemp()) / "server.log"
    path.touch()
    probe = LogProbe(LogCheckConfig.model_validate(
        {"name": "l", "type": "log", "path": str(path), "presets": ["cuda", "vllm", "nccl"],
         "max_bytes_per_run": 1 << 30}))  # fmt: skip
    sample = ("INFO 12-01 10:00:00 [loggers.py:123] Engine 000: Avg prompt throughput: 0.0 "
              "tokens/s, Avg generation throughput: 41.2 tokens/s, Running: 3 reqs, Waiting: "
              "0 reqs, GPU KV cache usage: 12.1%\n")  # fmt: skip
    with open(path, "a", encoding="utf-8") as out:
        for i in range(lines):
            out.write("RuntimeError: CUDA out of memory\n" if i % 10_000 == 0 else sample)
    started = time.perf_counter()
    observation = probe()
    elapsed = time.perf_counter() - started
    probe.close()
    os.unlink(path)
    print(
        f"logs: {lines} lines ({len(sample)} bytes each) in {elapsed:.2f} s: "
        f"{lines / elapsed:,.0f} lines/s; problems: {len(observation.problems)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="detect,cpu,parse,logs")
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--cpu-seconds", type=float, default=20)
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--timeouts",
        default="1s,800ms",
        help="probe timeouts to measure detection with (interval 1 s)",
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    only = set(args.only.split(","))
    if "parse" in only:
        parse(args.series)
    if "logs" in only:
        logs(args.lines)
    if "cpu" in only:
        cpu(args.probes, args.cpu_seconds)
    if "detect" in only:
        for timeout in args.timeouts.split(","):
            detect(args.rounds, timeout)


if __name__ == "__main__":
    main()
