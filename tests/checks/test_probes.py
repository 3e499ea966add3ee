"""HTTP and TCP probes against real servers on 127.0.0.1: every option, and the bounds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.checks.base import ProbeFact
from exporter.checks.probes import HttpProbe, TcpProbe
from exporter.config.probes import HttpCheckConfig, TcpCheckConfig
from tests.fixtures.standin import StandIn
from tests.helpers import FakeClock, wait_until


@pytest.fixture
def server() -> Iterator[StandIn]:
    stand_in = StandIn()
    yield stand_in
    stand_in.stop()


OPEN: list[HttpProbe] = []


@pytest.fixture(autouse=True)
def _close_probes() -> Iterator[None]:
    """Each probe keeps a connection pool: closed after the test, as medic's stop does."""
    yield
    while OPEN:
        OPEN.pop().close()


def http(url: str, **options: Any) -> HttpProbe:
    options.setdefault("timeout", "1s")
    probe = HttpProbe(HttpCheckConfig.model_validate({"name": "api", "type": "http", "url": url,
                                                      **options}))  # fmt: skip
    OPEN.append(probe)
    return probe


def fact(observation: Any) -> ProbeFact:
    [found] = [f for f in observation.facts if isinstance(f, ProbeFact)]
    return found


def test_a_2xx_passes_and_reports_status_and_duration(server: StandIn) -> None:
    observation = http(f"{server.url}/health")()
    assert observation.problems == ()
    found = fact(observation)
    assert found.success and found.status_code == 200 and 0 <= found.duration < 1


def test_valid_status_codes(server: StandIn) -> None:
    server.status = 400  # Triton's not-ready answer
    assert http(f"{server.url}/v2/health/ready")().problems == ("HTTP 400, expected 2xx",)
    assert http(f"{server.url}/x", valid_status_codes=[200, 400])().problems == ()
    server.status = 503
    assert http(f"{server.url}/x", valid_status_codes=[200, 400])().problems == (
        "HTTP 503, expected 200, 400",
    )


def test_body_regexps_and_a_json_field(server: StandIn) -> None:
    url = f"{server.url}/health"
    assert http(url, fail_if_body_not_matches_regexp=['"status": "ok"'])().problems == ()
    assert http(url, fail_if_body_matches_regexp=["ok"])().problems == ("the body matches 'ok'",)
    assert http(url, fail_if_body_not_matches_regexp=["healthy"])().problems == (
        "the body does not match 'healthy'",
    )
    assert http(url, body_json={"field": "data.ready", "equals": True})().problems == ()
    assert http(url, body_json={"field": "status", "equals": "serving"})().problems == (
        "status is 'ok', expected 'serving'",
    )
    assert http(url, body_json={"field": "data.missing"})().problems == (
        "the answer has no field 'data.missing'",
    )
    server.json_body({"models": [{"id": "tiny"}]})
    assert http(url, body_json={"field": "models.0.id", "equals": "tiny"})().problems == ()
    server.body = b"not json"
    assert http(url, body_json={"field": "a"})().problems == ("the answer is not JSON",)


def test_method_body_headers_and_auth_from_files(server: StandIn, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    probe = http(f"{server.url}/v1/completions", method="POST", body='{"max_tokens": 1}',
                 headers={"X-Probe": "medic"}, bearer_token={"file": str(token)})  # fmt: skip
    assert probe().problems == ()
    sent = server.requests[-1]
    assert sent["method"] == "POST" and sent["body"] == b'{"max_tokens": 1}'
    assert sent["headers"]["Authorization"] == "Bearer s3cret"
    assert sent["headers"]["X-Probe"] == "medic"
    (tmp_path / "password").write_text("pw")
    password = {"file": str(tmp_path / "password")}
    basic = http(f"{server.url}/health", basic_auth={"username": "medic", "password": password})
    assert basic().problems == ()
    assert server.requests[-1]["headers"]["Authorization"].startswith("Basic ")


def test_an_unreadable_secret_fails_each_run_and_keeps_serving(server: StandIn) -> None:
    probe = http(f"{server.url}/health", bearer_token={"file": "/nonexistent/token"})
    problems = probe().problems
    assert len(problems) == 1 and "cannot read secret file /nonexistent/token" in problems[0]
    assert not server.requests  # nothing sent without the credentials


def test_redirects_are_followed_unless_told(server: StandIn) -> None:
    assert http(f"{server.url}/redirect")().problems == ()
    assert http(f"{server.url}/redirect", follow_redirects=False)().problems == (
        "HTTP 302, expected 2xx",
    )


def test_a_hung_server_fails_within_the_timeout(server: StandIn) -> None:
    server.state = "hung"  # accepts, never answers: vLLM's engine wedged behind its API
    started = time.monotonic()
    observation = http(f"{server.url}/v1/completions", timeout="500ms")()
    elapsed = time.monotonic() - started
    assert observation.problems[0].startswith("timeout after 0.5s")
    assert not fact(observation).success and elapsed < 2.0


def test_a_dripping_body_is_cut_off_at_the_timeout() -> None:
    # A server that sends its headers and then one byte a second: the timeout is for the
    # whole run, not for each read.
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        port = listener.getsockname()[1]
        observation = http(f"http://127.0.0.1:{port}/", timeout="1s")()
        assert observation.problems[0].startswith("timeout after 1s")
        assert time.monotonic() - started < 2.5
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_the_body_read_is_bounded(server: StandIn) -> None:
    server.body = b"a" * 100_000 + b"needle"
    probe = http(
        f"{server.url}/x", body_size_limit=1024, fail_if_body_not_matches_regexp=["needle"]
    )
    assert probe().problems == ("the body does not match 'needle'",)


def test_a_refused_connection_names_the_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens
    problems = http(f"http://127.0.0.1:{port}/health")().problems
    assert problems and problems[0].startswith("ConnectError")


def tcp(address: str, **options: Any) -> TcpProbe:
    options.setdefault("timeout", "1s")
    return TcpProbe(TcpCheckConfig.model_validate({"name": "port", "type": "tcp",
                                                   "address": address, **options}))  # fmt: skip


def test_tcp_connect_send_and_expect() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                if conn.recv(64) == b"PING\r\n":
                    conn.sendall(b"+PONG\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        assert tcp(f"127.0.0.1:{port}", send="PING\r\n", expect=r"^\+PONG")().problems == ()
        assert tcp(f"127.0.0.1:{port}", send="PING\r\n", expect="^-ERR")().problems == (
            "the answer does not match '^-ERR'",
        )
    finally:
        thread.join(5)
        listener.close()
    refused = tcp(f"127.0.0.1:{port}")().problems
    assert refused and refused[0].startswith(f"cannot connect to 127.0.0.1:{port}")


def test_tcp_expect_times_out_on_a_silent_server() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        problems = tcp(f"127.0.0.1:{listener.getsockname()[1]}", timeout="300ms",
                       expect="hello")().problems  # fmt: skip
        assert problems == ("timeout after 0.3s",) and time.monotonic() - started < 1.5
    finally:
        listener.close()


def test_bad_options_are_config_errors() -> None:
    from exporter.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as raised:
        parse_config("""
checks:
  - {name: a, type: http, url: "ftp://x", fail_if_body_matches_regexp: ["("]}
  - {name: b, type: tcp, address: "no-port"}
  - {name: c, type: http, url: "http://x", trigger: no_ladder}
""", env={})  # fmt: skip
    text = str(raised.value)
    assert "checks[0].url: must be an http:// or https:// URL" in text
    assert "checks[0].fail_if_body_matches_regexp: invalid regular expression '('" in text
    assert "checks[1].address" in text
    assert "checks[2].trigger: 'no_ladder' has no ladder under recovery.failures" in text


COMPLETION = {"id": "cmpl-1", "object": "text_completion", "model": "tiny",
              "choices": [{"index": 0, "text": " there", "finish_reason": "length"}]}  # fmt: skip


def request(url: str, **options: Any) -> Any:
    from exporter.checks.probes import RequestProbe
    from exporter.config.probes import RequestCheckConfig

    options.setdefault("timeout", "1s")
    options.setdefault("model", "tiny")
    made = RequestProbe(RequestCheckConfig.model_validate(
        {"name": "gen", "type": "request", "url": url, **options}))  # fmt: skip
    OPEN.append(made)
    return made


def test_a_synthetic_completion_asks_for_one_token(server: StandIn) -> None:
    import json

    server.json_body(COMPLETION)
    observation = request(server.url)()
    assert observation.problems == () and fact(observation).kind == "request"
    sent = server.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/v1/completions")
    body = json.loads(sent["body"])
    assert body["max_tokens"] == 1 and body["model"] == "tiny" and body["prompt"] == "Hi"
    request(server.url, api="openai_chat", prompt="ping")()
    chat = json.loads(server.requests[-1]["body"])
    assert server.requests[-1]["path"] == "/v1/chat/completions"
    assert chat["messages"] == [{"role": "user", "content": "ping"}] and chat["max_tokens"] == 1
    server.json_body({"status": "ok"})  # a 200 that is no completion
    assert request(server.url)().problems == ("the answer has no field 'choices'",)


def test_a_custom_request_and_a_latency_bound(server: StandIn) -> None:
    probe = request(f"{server.url}/v2/models/tts/infer", api="custom",
                    body='{"inputs": []}', max_latency=0.0001)  # fmt: skip
    problems = probe().problems
    assert (
        problems and problems[0].startswith("answered in ") and "above max_latency" in problems[0]
    )
    assert server.requests[-1]["body"] == b'{"inputs": []}'


def test_requests_never_overlap_and_a_skip_is_neither_pass_nor_failure(server: StandIn) -> None:
    from exporter.checks import HealthChecker
    from exporter.checks.base import CheckSpec

    server.state = "hung"
    probe = request(server.url, timeout="1s")
    health = HealthChecker()
    health.register(CheckSpec("gen", probe, interval=5, timeout=3, failure_threshold=1))
    first = threading.Thread(target=health.run, args=("gen",))
    first.start()
    wait_until(lambda: server.requests, what="the first request to reach the server")
    second = health.run("gen")  # while the first is in flight
    assert second.reason == "skipped: the previous request is still in flight"
    assert not second.ok  # no evidence: a verification looking now must look again
    assert len(server.requests) == 1
    first.join(5)
    assert health.results()["gen"].reason.startswith("timeout after 1s")
    [state] = health.states()
    assert state.skipped == 1 and state.streak.failures == 1  # the skip counted neither way


def test_no_request_while_the_servers_metrics_show_progress() -> None:
    from exporter.checks.scrape import MetricsProbe
    from exporter.config.metricscheck import MetricsCheckConfig
    from tests.fixtures.engines import EngineStandIn

    engine, clock = EngineStandIn("vllm"), FakeClock()
    metrics = MetricsProbe(MetricsCheckConfig.model_validate(
        {"name": "m", "type": "metrics", "url": f"{engine.url}/metrics", "presets": ["vllm"]}),
        clock)  # fmt: skip
    try:
        probe = request(engine.url, interval="10s", timeout="1s")
        probe.progressing = metrics.progressing
        for _ in range(2):
            metrics()
            clock.advance(10)
        assert probe().skipped == "the server's progress counters are growing"
        engine.mode = "hung"
        for _ in range(3):
            metrics()
            clock.advance(10)
        observation = probe()  # counters flat: now the request is made (and fails here)
        assert not observation.skipped and observation.problems
        engine.mode = "working"
        metrics()
        clock.advance(10)
        metrics()
        clock.advance(60)  # then /metrics stops being scraped: old progress says nothing
        assert not probe().skipped
    finally:
        metrics.close()
        engine.stop()


def test_a_requests_max_latency_is_a_duration_as_the_readme_writes_it() -> None:
    from exporter.config import parse_config

    config = parse_config("""
checks:
  - {name: g, type: request, url: "http://127.0.0.1:8000", model: m, max_latency: 5s}
""", env={})  # fmt: skip
    assert config.checks[0].max_latency == 5.0  # type: ignore[union-attr]
