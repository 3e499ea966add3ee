"""Scrape benchmark: /metrics latency and throughput, RSS and time to ready.

Starts a real `medic run` process with ~400 series (the default checks plus 50 path and 20
disk checks), then drives it with wrk on 127.0.0.1: concurrency 1 for latency, 16 for
throughput. Also times one rendering of the same payload, which is what a scrape would cost
if /metrics rendered on the request path. Prints a Markdown table for BENCHMARKS.md.

    make bench            (or: .venv/bin/python -m bench.scrape [--duration 5])
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psutil

PATH_CHECKS = 50
DISK_CHECKS = 20
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def write_config(root: Path) -> Path:
    models = root / "models"
    models.mkdir()
    lines = [f"data_dir: {root / 'data'}", "log_level: warning", "checks:"]
    lines.append("  - {name: host_memory, type: host_memory, min_available_ratio: 0}")
    for i in range(PATH_CHECKS):
        path = models / f"model-{i}.safetensors"
        path.write_bytes(b"w" * 64)
        lines.append(f"  - {{name: model_{i}, type: path, path: {path}, kind: file}}")
    for i in range(DISK_CHECKS):
        (root / f"vol{i}").mkdir()
        lines.append(
            f"  - {{name: disk_{i}, type: disk, path: {root / f'vol{i}'}, min_avail_ratio: 0}}"
        )
    config = root / "medic.yml"
    config.write_text("\n".join(lines) + "\n")
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


def start_medic(
    config: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A `medic run` on a free 127.0.0.1 port, returned once /-/ready answers 200."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--config", str(config),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while get(f"{base}/-/ready")[0] != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"medic did not become ready (status {proc.poll()})")
        time.sleep(0.005)
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (bounded)."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def latency_ms(wrk_output: str) -> dict[str, float]:
    """wrk's latency percentiles from its --latency table, in ms: p50, p75, p90, p99."""
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    found = re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", wrk_output, re.M)
    if len(found) < 4:
        raise RuntimeError(f"no latency table in wrk output:\n{wrk_output}")
    return {f"p{pct}": float(value) * unit[u] for pct, value, u in found}


def wrk(
    url: str,
    connections: int,
    duration: int,
    headers: dict[str, str],
    prefix: Sequence[str] = (),
) -> dict[str, float]:
    """Drive url with wrk; prefix goes before the command (taskset, nice)."""
    args = [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
            "--timeout", "2s"]  # fmt: skip
    for key, value in headers.items():
        args += ["-H", f"{key}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    latency = latency_ms(out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return {
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "rps": rps,
        "errors": 0.0 if errors is None else 1.0,
    }


def render_cost(config_path: Path, rounds: int = 50) -> tuple[float, int]:
    from exporter.app import Medic
    from exporter.config import load_config

    medic = Medic(load_config(config_path))
    medic.health.run_all()
    medic.exposition.render()
    started = time.perf_counter()
    for _ in range(rounds):
        rendered = medic.exposition.render()
    per_render = (time.perf_counter() - started) / rounds
    series = sum(
        1 for line in rendered.text.decode().splitlines() if line and not line.startswith("#")
    )
    return per_render * 1e3, series


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_config(root)
        render_ms, series = render_cost(config)
        started = time.monotonic()
        proc, base = start_medic(config)
        try:
            ready_s = time.monotonic() - started
            rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
            _, body = get(f"{base}/metrics")
            _, body_gz = get(f"{base}/metrics", {"Accept-Encoding": "gzip"})
            prom = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
            get(f"{base}/metrics", prom)  # warm
            c1_plain = wrk(f"{base}/metrics", 1, args.duration, {})
            c1_prom = wrk(f"{base}/metrics", 1, args.duration, prom)
            c16_plain = wrk(f"{base}/metrics", 16, args.duration, {})
            c16_prom = wrk(f"{base}/metrics", 16, args.duration, prom)
            rss_after_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            stop(proc)

    print(f"payload: {series} series, {len(body)} bytes plain, {len(body_gz)} bytes gzip")
    print(f"render on the request path would cost: {render_ms:.2f} ms per scrape")
    print(f"start -> /-/ready: {ready_s:.3f} s; RSS after ready {rss_mb:.1f} MiB, "
          f"after load {rss_after_mb:.1f} MiB")  # fmt: skip
    print()
    print("| scrape | concurrency | p50 ms | p99 ms | scrapes/s |")
    print("|---|---|---|---|---|")
    for label, conc, res in (
        ("text, identity", 1, c1_plain),
        ("OpenMetrics, gzip (Prometheus' headers)", 1, c1_prom),
        ("text, identity", 16, c16_plain),
        ("OpenMetrics, gzip (Prometheus' headers)", 16, c16_prom),
    ):
        p50, p99, rps = res["p50_ms"], res["p99_ms"], res["rps"]
        print(f"| {label} | {conc} | {p50:.3f} | {p99:.3f} | {rps:.0f} |")


if __name__ == "__main__":
    main()
