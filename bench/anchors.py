"""Anchors: what the same machine does, in the same run, with software that is not medic.

Absolute times on shared machines drift by 2x and more between days; a figure next to an
anchor measured a minute earlier carries. Every benchmark that prints a time prints its
anchor's beside it (and BENCHMARKS.md quotes the ratio first):

- node_exporter (Debian's, unpacked by scripts/fetch-bench-stack.sh): another exporter's
  /metrics on the same cores;
- nginx serving a file of medic's exact bytes: the floor for answering a scrape at all;
- a bare Starlette endpoint under the same uvicorn/uvloop/httptools: the floor for a POST;
- SQLite's own commit rate on the same disk (WAL, synchronous=NORMAL, as medic runs it);
- the machine floor: a fixed pure-Python workload, timed.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).parents[1]
BENCH_STACK = ROOT / ".stack" / "bench"
NODE_EXPORTER = BENCH_STACK / "usr" / "bin" / "prometheus-node-exporter"
NGINX = BENCH_STACK / "usr" / "sbin" / "nginx"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_answering(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"anchor at {url} did not answer (exit {proc.poll()})") from None
            time.sleep(0.01)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def node_exporter() -> Iterator[tuple[str, int]]:
    """node_exporter on a free port: (its /metrics URL, its pid)."""
    if not NODE_EXPORTER.exists():
        raise SystemExit("bench: node_exporter missing; run scripts/fetch-bench-stack.sh")
    port = free_port()
    proc = subprocess.Popen(
        [str(NODE_EXPORTER), f"--web.listen-address=127.0.0.1:{port}",
         "--collector.textfile.directory=", "--no-collector.systemd"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        _wait_answering(url, proc)
        yield url, proc.pid
    finally:
        _stop(proc)


@contextmanager
def nginx(body: bytes) -> Iterator[str]:
    """nginx serving `body` (medic's exact bytes) as a static file: its URL."""
    if not NGINX.exists():
        raise SystemExit("bench: nginx missing; run scripts/fetch-bench-stack.sh")
    with tempfile.TemporaryDirectory(prefix="medic-nginx-") as tmp:
        root = Path(tmp)
        (root / "metrics").write_bytes(body)
        port = free_port()
        (root / "nginx.conf").write_text(
            textwrap.dedent(f"""
            daemon off;
            worker_processes 1;
            error_log {root}/error.log;
            pid {root}/nginx.pid;
            events {{ worker_connections 256; }}
            http {{
                access_log off;
                client_body_temp_path {root};
                proxy_temp_path {root};
                fastcgi_temp_path {root};
                uwsgi_temp_path {root};
                scgi_temp_path {root};
                default_type text/plain;
                server {{
                    listen 127.0.0.1:{port};
                    location / {{ root {root}; }}
                }}
            }}
        """)
        )
        proc = subprocess.Popen(
            [str(NGINX), "-p", str(root), "-c", str(root / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            _wait_answering(url, proc)
            yield url
        finally:
            _stop(proc)


BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def alerts(request):
    await request.body()
    return Response(b'{"status":"accepted"}', status_code=202, media_type="application/json")

async def metrics(request):
    return Response(b"up 1\\n", media_type="text/plain")

app = Starlette(routes=[Route("/api/v1/alerts", alerts, methods=["POST"]),
                        Route("/metrics", metrics)])
"""


@contextmanager
def bare_starlette() -> Iterator[str]:
    """A bare Starlette app under uvicorn (uvloop, httptools): its base URL. What a POST
    costs on this stack before medic does anything with it."""
    with tempfile.TemporaryDirectory(prefix="medic-bare-") as tmp:
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--loop", "uvloop", "--http", "httptools",
             "--log-level", "error", "--no-access-log"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_answering(f"{base}/metrics", proc)
            yield base
        finally:
            _stop(proc)


def sqlite_commits_per_second(directory: Path, seconds: float = 2.0) -> float:
    """Single-row transactions committed per second on this disk, as medic's journal
    commits (WAL, synchronous=NORMAL): the journal's ceiling without group commit."""
    path = directory / "anchor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (n INTEGER, body TEXT)")
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (?, 'an attempt row of about this size')", (count,))
        conn.execute("COMMIT")
        count += 1
    rate = count / (time.perf_counter() - began)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return rate


def machine_floor_ms(rounds: int = 5) -> float:
    """Median milliseconds of a fixed pure-Python workload (dict and string work, like a
    request's): how fast this machine is right now."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        table: dict[str, int] = {}
        for n in range(200_000):
            key = f"series_{n % 5000}"
            table[key] = table.get(key, 0) + n
        times.append((time.perf_counter() - began) * 1e3)
    times.sort()
    return times[len(times) // 2]


def rss_mib(pid: int, children: bool = True) -> float:
    """Resident memory of a process and (by default) all its descendants, in MiB."""
    import psutil

    proc = psutil.Process(pid)
    procs = [proc, *(proc.children(recursive=True) if children else [])]
    total = 0
    for each in procs:
        try:
            total += each.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(f"machine floor: {machine_floor_ms():.1f} ms")
        print(f"SQLite commits/s: {sqlite_commits_per_second(Path(tmp)):.0f}")
    with node_exporter() as (url, pid):
        print("node_exporter", url, f"{rss_mib(pid):.1f} MiB")
    with nginx(b"up 1\n") as url:
        print("nginx", url)
    with bare_starlette() as base:
        print("starlette", base)
