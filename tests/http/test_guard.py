"""Browser protections, auth on reads and the event stream's caps, against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from exporter.app import Medic
from exporter.config import parse_config
from tests.helpers import serving, wait_until

TOKEN = "t0ken-for-reads"


def medic_with(tmp_path: Path, server: str = "") -> Medic:
    text = f"data_dir: {tmp_path / 'data'}\nserver:\n  limits: {{max_subscribers: 3}}\n{server}"
    return Medic(parse_config(text, env={}))


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_TOKEN", TOKEN)  # read when the server starts


@pytest.fixture
def open_url(tmp_path: Path) -> Iterator[str]:
    with serving(medic_with(tmp_path)) as url:
        yield url


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[tuple[Medic, str]]:
    medic = medic_with(tmp_path, "  auth: {bearer_token: {env: MEDIC_TOKEN}}\n")
    with serving(medic) as url:
        yield medic, url


def test_a_cross_site_form_cannot_drive_a_loopback_medic(open_url: str) -> None:
    reset = f"{open_url}/api/v1/recoveries/reset"
    forged = httpx.post(reset, content=b"x", headers={
        "origin": "http://evil.example", "content-type": "text/plain"})  # fmt: skip
    assert forged.status_code == 403
    fetched = httpx.post(reset, json={}, headers={"sec-fetch-site": "cross-site"})
    assert fetched.status_code == 403
    assert httpx.post(reset, content=b"", headers={"content-type": "text/plain"}).status_code == 415
    assert httpx.post(reset, json={}).json() == {"status": "reset"}  # curl and scripts: fine


def test_dns_rebinding_is_refused_by_the_host_allow_list(open_url: str) -> None:
    alert = {"version": "4", "status": "firing", "alerts": []}
    rebound = httpx.post(f"{open_url}/api/v1/alerts", json=alert, headers={"host": "evil.example"})
    assert rebound.status_code == 400 and "Host" in rebound.text
    for host in ("localhost:9847", "127.0.0.1", "[::1]:9847"):
        assert httpx.get(f"{open_url}/metrics", headers={"host": host}).status_code == 200


def test_an_allowed_origin_and_host_can_be_configured(tmp_path: Path) -> None:
    medic = medic_with(tmp_path, "  allowed_origins: ['https://ops.example']\n"
                                 "  allowed_hosts: [medic.internal]\n")  # fmt: skip
    with serving(medic) as url:
        headers = {"origin": "https://ops.example", "host": "medic.internal"}
        ok = httpx.post(f"{url}/api/v1/recoveries/reset", json={}, headers=headers)
        assert ok.status_code == 200


def test_with_auth_every_read_needs_the_token(authed: tuple[Medic, str]) -> None:
    _, url = authed
    reads = ["/api/v1/recoveries", "/api/v1/recoveries/stats", "/api/v1/health",
             "/api/v1/openapi.json", "/api/v1/events", "/metrics", "/-/healthy",
             "/-/ready"]  # fmt: skip
    for path in reads:
        refused = httpx.get(f"{url}{path}")
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Bearer")
    for path in reads[:4]:  # the scheme in any case (RFC 7235)
        assert httpx.get(f"{url}{path}", headers={"authorization": f"bEaReR {TOKEN}"}).is_success
    assert httpx.get(f"{url}/metrics", headers={"authorization": "Bearer nope"}).status_code == 401


def test_public_leaves_metrics_and_health_open_and_nothing_else(tmp_path: Path) -> None:
    medic = medic_with(
        tmp_path, "  auth: {bearer_token: {env: MEDIC_TOKEN}}\n  public: [metrics, health]\n"
    )
    with serving(medic) as url:
        for path in ("/metrics", "/-/healthy"):
            assert httpx.get(f"{url}{path}").status_code == 200
        assert httpx.get(f"{url}/api/v1/recoveries").status_code == 401


def test_the_event_stream_has_a_subscriber_cap(open_url: str) -> None:
    with httpx.Client(timeout=5) as client:
        streams = [client.stream("GET", f"{open_url}/api/v1/events") for _ in range(3)]
        opened = [s.__enter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            with httpx.Client(timeout=5) as other:
                refused = other.get(f"{open_url}/api/v1/events")
                assert refused.status_code == 503
                with pytest.raises(InvalidStatus):
                    ws_connect(open_url.replace("http", "ws") + "/api/v1/events").close()
        finally:
            for s in streams:
                s.__exit__(None, None, None)
    assert httpx.get(f"{open_url}/api/v1/events", params={}, headers={
        "last-event-id": "9" * 5000}).status_code in (400, 431)  # fmt: skip
    bad = httpx.get(f"{open_url}/api/v1/events", headers={"last-event-id": "9" * 40})
    assert bad.status_code == 400
    huge = httpx.get(f"{open_url}/api/v1/recoveries", params={"offset": "9" * 20})
    assert huge.status_code == 400


def test_events_over_a_websocket_resume_and_refuse_other_sites(
    authed: tuple[Medic, str],
) -> None:
    medic, url = authed
    ws_url = url.replace("http", "ws") + "/api/v1/events"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(InvalidStatus):
        ws_connect(ws_url).close()  # no token
    with pytest.raises(InvalidStatus):
        ws_connect(ws_url, additional_headers={**auth, "Origin": "http://evil.example"}).close()
    got: list[dict[str, object]] = []
    with ws_connect(ws_url, additional_headers=auth) as ws:
        wait_until(lambda: medic.events.subscribers == 1, what="the subscription")
        first = medic.events.publish("health", check="disk", ok=False)
        medic.events.publish("health", check="disk", ok=True)
        for _ in range(2):
            got.append(json.loads(ws.recv(timeout=5)))
    assert [(m["event"], m["data"]["ok"]) for m in got] == [("health", False), ("health", True)]  # type: ignore[index]
    # Resume after the first: only the second comes again.
    with ws_connect(f"{ws_url}?last_event_id={first.id}", additional_headers=auth) as ws:
        again = json.loads(ws.recv(timeout=5))
    assert again["id"] == first.id + 1


def test_off_loopback_any_host_is_accepted_unless_listed() -> None:
    from exporter.config.server import ServerConfig
    from exporter.http.guard import allowed_hosts

    assert allowed_hosts(ServerConfig()) == frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
    assert allowed_hosts(ServerConfig(listen="10.0.0.7:9847")) is None  # scraped by name
    assert allowed_hosts(ServerConfig(listen="0.0.0.0:9847")) is None
    listed = allowed_hosts(ServerConfig(listen="10.0.0.7:9847", allowed_hosts=["gpu-7"]))
    assert listed is not None and {"gpu-7", "10.0.0.7", "localhost"} <= listed
    assert allowed_hosts(ServerConfig(allowed_hosts=["*"])) is None
