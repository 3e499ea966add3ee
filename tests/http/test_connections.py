"""Connection hygiene against a real server: head and body limits, slow clients, and the
connection cap that keeps room for scrapes (exporter/http/connections.py)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from tests.helpers import MedicProcess, serving, wait_until

LIMITS = """
server:
  limits:
    max_header_bytes: 4KiB
    max_url_bytes: 1KiB
    max_body_bytes: 8KiB
    header_timeout: 0.5s
    body_timeout: 0.5s
    max_connections: 24
    reserved_connections: 4
    max_subscribers: 30
"""


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    medic = Medic(parse_config(f"data_dir: {tmp_path}\n{LIMITS}", env={}))
    with serving(medic) as base:
        yield base


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's timeout)."""
    chunks = []
    with sock, contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def scrape(base: str) -> int:
    return httpx.get(f"{base}/metrics", timeout=5).status_code


def test_an_oversized_head_is_refused_with_431_without_buffering_it(url: str) -> None:
    sock = connect(url)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for _ in range(64):  # up to 4 MiB; the server closes after the first 4 KiB or so
            sock.sendall(b"a" * 65536)
    assert status(answer(sock)) == 431
    assert scrape(url) == 200


def test_many_small_headers_over_the_limit_get_431_and_a_long_url_414(url: str) -> None:
    many = "".join(f"X-H{n}: {'v' * 60}\r\n" for n in range(100))
    sock = connect(url)
    sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n".encode())
    assert status(answer(sock)) == 431
    sock = connect(url)
    sock.sendall(f"GET /metrics?{'q' * 2000} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert status(answer(sock)) == 414


def test_a_silent_or_trickling_client_is_answered_408_and_closed(url: str) -> None:
    silent = connect(url)
    trickle = connect(url)
    trickle.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(20):  # one header byte every 0.1 s: never a whole head
        try:
            trickle.sendall(b"X")
        except OSError:
            break
        time.sleep(0.1)
    assert status(answer(trickle)) == 408
    assert time.monotonic() - started < 5
    assert status(answer(silent)) == 408


def test_a_body_that_stops_arriving_gets_408_and_an_oversized_one_413(url: str) -> None:
    sock = connect(url)
    sock.sendall(b"POST /api/v1/failures HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")  # fmt: skip
    assert status(answer(sock)) == 408
    big = httpx.post(f"{url}/api/v1/failures", content=b"x" * 20000,
                     headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413
    sock = connect(url)  # chunked, so no Content-Length warns: counted as it arrives
    sock.sendall(b"POST /api/v1/failures HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    with contextlib.suppress(OSError):
        for _ in range(8):
            sock.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
    assert status(answer(sock)) == 413


def test_idle_sockets_at_the_cap_never_keep_a_scrape_out(url: str) -> None:
    idle = [connect(url) for _ in range(60)]  # far past max_connections: 24
    try:
        for _ in range(30):
            assert scrape(url) == 200
        # The oldest idle ones were closed to make room (the server's end: recv gives b"").
        seen: set[int] = set()

        def closed_by_medic() -> int:
            for n, sock in enumerate(idle):
                if n not in seen:
                    sock.settimeout(0.01)
                    with contextlib.suppress(TimeoutError, BlockingIOError):
                        if sock.recv(1) == b"":
                            seen.add(n)
            return len(seen)

        wait_until(lambda: closed_by_medic() >= 60 - 24, timeout=10, what="evictions seen")
    finally:
        for sock in idle:
            sock.close()


def test_busy_ordinary_requests_leave_the_reserve_to_metrics_and_health(url: str) -> None:
    streams = []
    try:
        for _ in range(20):  # 24 - 4 reserved: the event stream holds a request open
            sock = connect(url)
            sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            streams.append(sock)
        for sock in streams:
            assert status(sock.recv(4096)) == 200
        refused = httpx.get(f"{url}/api/v1/health", timeout=5)
        assert refused.status_code == 503 and "reserved" in refused.text
        for path in ("/metrics", "/-/healthy", "/-/ready"):
            assert httpx.get(f"{url}{path}", timeout=5).status_code in (200, 503)
        assert scrape(url) == 200
    finally:
        for sock in streams:
            sock.close()
    wait_until(lambda: httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200,
               what="the reserve given back")  # fmt: skip


def test_scrapes_succeed_under_a_low_descriptor_limit_with_idle_sockets(
    tmp_path: Path,
) -> None:
    config = tmp_path / "medic.yml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    medic = MedicProcess(["--config", str(config)], tmp_path / "medic.log", nofile=200)
    idle: list[socket.socket] = []
    try:
        base = medic.wait_listening()
        for _ in range(300):  # more than the process may hold open
            try:
                idle.append(connect(base))
            except OSError:
                break
        failures = sum(scrape(base) != 200 for _ in range(50))
        assert failures == 0
        assert "max_connections lowered" in medic.log()
    finally:
        for sock in idle:
            sock.close()
        medic.stop()
