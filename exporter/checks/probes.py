"""HTTP and TCP probes of the model server, as blackbox_exporter would make them.

Each run is bounded by the check's timeout as a whole (connect, headers and body together),
reads at most `body_size_limit` bytes, and reports why it failed in words. A probe's facts
become medic_probe_success, medic_probe_duration_seconds and medic_probe_http_status_code.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from exporter.checks.base import Observation, ProbeFact
from exporter.config.probes import (
    HttpCheckConfig,
    JsonFieldConfig,
    RequestCheckConfig,
    TcpCheckConfig,
)
from exporter.webhook.auth import SecretError, authorization
from exporter.webhook.pull import tls_context


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()


def _field(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path in parsed JSON; list items by index."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def json_problem(body: bytes, rule: JsonFieldConfig) -> str | None:
    """Why the JSON answer does not hold rule.field == rule.equals, or None."""
    try:
        document = json.loads(body)
    except ValueError:
        return "the answer is not JSON"
    found, value = _field(document, rule.field)
    if not found:
        return f"the answer has no field {rule.field!r}"
    if "equals" in rule.model_fields_set and value != rule.equals:
        return f"{rule.field} is {value!r}, expected {rule.equals!r}"
    return None


class HttpProbe:
    """One HTTP request per run; passes on a valid status and the body rules."""

    KIND = "http"

    def __init__(self, config: HttpCheckConfig) -> None:
        self._config = config
        self._setup_error = ""
        headers = dict(config.headers)
        try:
            headers.update(authorization(config.bearer_token, config.basic_auth))
        except SecretError as exc:
            self._setup_error = str(exc)  # each run fails with it; medic keeps serving
        verify = tls_context(config.tls)
        headers.setdefault("User-Agent", "medic-probe")
        self._client = httpx.Client(
            headers=headers, verify=verify, timeout=config.timeout,
            follow_redirects=config.follow_redirects,
        )  # fmt: skip
        self._match = [re.compile(p) for p in config.fail_if_body_matches_regexp]
        self._must = [re.compile(p) for p in config.fail_if_body_not_matches_regexp]

    def __call__(self) -> Observation:
        """One request: the status, the body rules, the duration."""
        config = self._config
        if self._setup_error:
            return Observation((ProbeFact("http", False, 0.0),), (self._setup_error,))
        deadline = _Deadline(config.timeout)
        started = time.monotonic()
        status, body, problem = None, b"", None
        method, url, content = self._target()
        try:
            with self._client.stream(method, url, content=content) as answer:
                status = answer.status_code
                chunks, size = [], 0
                for chunk in answer.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= config.body_size_limit:
                        break
                    if deadline.left() <= 0:
                        raise httpx.ReadTimeout("the body did not arrive in time")
                body = b"".join(chunks)[: config.body_size_limit]
        except httpx.TimeoutException as exc:
            problem = f"timeout after {config.timeout:g}s ({exc or type(exc).__name__})"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        duration = time.monotonic() - started
        if problem is None:
            problem = self._judge(status, body) or self._slow(duration)
        fact = ProbeFact(self.KIND, problem is None, duration, status)
        return Observation((fact,), (problem,) if problem else ())

    def _target(self) -> tuple[str, str, str | None]:
        return self._config.method, self._config.url, self._config.body

    def _slow(self, _duration: float) -> str | None:
        return None

    def _judge(self, status: int | None, body: bytes) -> str | None:
        config = self._config
        valid = config.valid_status_codes
        if status is None or (status not in valid if valid else not 200 <= status < 300):
            wanted = ", ".join(map(str, valid)) if valid else "2xx"
            return f"HTTP {status}, expected {wanted}"
        text = body.decode("utf-8", errors="replace")
        for pattern in self._match:
            if pattern.search(text):
                return f"the body matches {pattern.pattern!r}"
        for pattern in self._must:
            if not pattern.search(text):
                return f"the body does not match {pattern.pattern!r}"
        if config.body_json is not None:
            return json_problem(body, config.body_json)
        return None

    def stuck(self) -> bool:
        """Never: its own timeout bounds every run."""
        return False

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class TcpProbe:
    """A TCP connection per run; with `expect`, the answer's first bytes must match."""

    READ_LIMIT = 4096

    def __init__(self, config: TcpCheckConfig) -> None:
        self._config = config
        host, _, port = config.address.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._expect = re.compile(config.expect.encode()) if config.expect else None

    def __call__(self) -> Observation:
        """Connect, send, read until `expect` matches or the timeout."""
        config = self._config
        deadline = _Deadline(config.timeout)
        started = time.monotonic()
        problem = None
        try:
            with socket.create_connection((self._host, self._port), config.timeout) as sock:
                if config.send is not None:
                    sock.sendall(config.send.encode())
                if self._expect is not None:
                    problem = self._read_until_match(sock, deadline)
        except TimeoutError:
            problem = f"timeout after {config.timeout:g}s"
        except OSError as exc:
            problem = f"cannot connect to {config.address}: {exc.strerror or exc}"
        duration = time.monotonic() - started
        fact = ProbeFact("tcp", problem is None, duration)
        return Observation((fact,), (problem,) if problem else ())

    def _read_until_match(self, sock: socket.socket, deadline: _Deadline) -> str | None:
        assert self._expect is not None
        seen = b""
        while len(seen) < self.READ_LIMIT:
            left = deadline.left()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(self.READ_LIMIT - len(seen))
            if not chunk:
                break
            seen += chunk
            if self._expect.search(seen):
                return None
        return f"the answer does not match {self._expect.pattern.decode()!r}"

    def stuck(self) -> bool:
        """Never: its own timeout bounds every run."""
        return False

    def close(self) -> None:
        """Nothing is kept open between runs."""


class RequestProbe(HttpProbe):
    """A synthetic request: one tiny real generation. Never two at once (a second run while
    one is in flight is skipped), cancelled at the timeout (the connection closes, which
    aborts the request in vLLM and friends), and skipped while the server's own metrics
    show progress: a busy server is not probed into the ground."""

    KIND = "request"

    def __init__(self, config: RequestCheckConfig) -> None:
        super().__init__(config)
        self._request = config
        self._in_flight = threading.Lock()
        self.progressing: Callable[[float], bool] | None = None
        """Set by the composition root from the metrics check named in
        skip_while_progressing: whether progress counters grew within a window."""

    def __call__(self) -> Observation:
        """Skip while progressing or in flight; else one request."""
        config = self._request
        window = config.progress_window or 2 * config.interval
        if self.progressing is not None and self.progressing(window):
            return Observation(skipped="the server's progress counters are growing")
        if not self._in_flight.acquire(blocking=False):
            return Observation(skipped="the previous request is still in flight")
        try:
            return super().__call__()
        finally:
            self._in_flight.release()

    def _target(self) -> tuple[str, str, str | None]:
        return self._request.request()

    def _judge(self, status: int | None, body: bytes) -> str | None:
        problem = super()._judge(status, body)
        if problem is None and self._request.api != "custom" and self._request.body_json is None:
            problem = json_problem(body, JsonFieldConfig(field="choices"))
        return problem

    def _slow(self, duration: float) -> str | None:
        bound = self._request.max_latency
        if bound is not None and duration > bound:
            return f"answered in {duration:.2f}s, above max_latency {bound:g}s"
        return None
