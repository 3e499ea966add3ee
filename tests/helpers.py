"""Shared test helpers: bounded waiting, a fake clock, real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from exporter.app import Medic
from exporter.http.server import _Server, bind, bound_url, create_app, uvicorn_config
from exporter.storage.sqlite import Database


def fill_database(db: Database) -> None:
    """Make the database's disk full: no write that needs a new page will commit (rows that
    still fit in a page can) until max_page_count is raised again."""
    pages = db.query("PRAGMA page_count")[0][0]
    # On the writer's connection (script() runs there): max_page_count is per connection.
    db.script(f"PRAGMA max_page_count = {pages + 1}")
    db.script("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
    with contextlib.suppress(sqlite3.OperationalError):  # "database or disk is full"
        for _ in range(10):
            db.script("INSERT INTO filler VALUES (zeroblob(8192))")


def make_room(db: Database) -> None:
    """Space on the disk again."""
    db.script("PRAGMA max_page_count = 1000000")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll predicate until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@contextmanager
def serving(medic: Medic) -> Iterator[str]:
    """Run medic's real ASGI app under uvicorn on 127.0.0.1 (free port) in a thread."""
    sock = bind("127.0.0.1:0")
    config = uvicorn_config(create_app(medic), medic, timeout_graceful_shutdown=1)
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to start")
        yield bound_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"


class MedicProcess:
    """A real `medic run` subprocess; its log goes to a file the test can read."""

    LISTENING = re.compile(r"listening on (https?://\S+)")

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ):
        """nofile: the child's descriptor limit (soft and hard), like `ulimit -n`."""
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--listen", "127.0.0.1:0", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            preexec_fn=limit if nofile is not None else None,  # noqa: PLW1509 - no threads here
        )
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 15.0) -> str:
        def listening() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"medic exited {self.proc.returncode}:\n{self.log()}")
            match = self.LISTENING.search(self.log())
            return match.group(1) if match else None

        self.url = str(wait_until(listening, timeout, "medic to listen"))
        return self.url

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait at most `timeout` for the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()
