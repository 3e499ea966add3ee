"""The webhook with Alertmanager's real bodies, over real HTTP."""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.http import alerts as route
from exporter.storage.sqlite import DB_FILE
from exporter.webhook.matchers import matches_all, parse_matcher
from tests.helpers import fill_database, make_room, serving
from tests.test_server import value, wait_for_metric
from tests.webhook.conftest import FIRING, RESOLVED, ROUTES, body


def post(url: str, payload: Any, **headers: str) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers.setdefault("content-type", "application/json")
    return httpx.post(f"{url}/api/v1/alerts", content=content, headers=headers)


def attempts(medic: Medic) -> list[tuple[str, str]]:
    medic.recovery.wait_idle(10)
    found, _ = medic.journal.attempts()
    return [(a.action, a.outcome.value) for a in reversed(found)]


def test_firing_then_repeat_then_resolved(webhook_medic: tuple[Medic, str]) -> None:
    medic, url = webhook_medic
    first = post(url, FIRING)
    assert first.status_code == 202
    assert first.json()["accepted"] == 1
    assert first.json()["alerts"][0]["result"] == "accepted"
    assert attempts(medic) == [("restart", "succeeded")]
    (attempt,) = medic.journal.attempts()[0]
    assert attempt.fingerprint == "3fd52ad045646600"
    assert attempt.starts_at == "2026-11-22T02:36:41.168Z" and attempt.source == "alert"

    repeat = post(url, FIRING)  # repeat_interval, a group change or an HA peer
    assert repeat.status_code == 202 and repeat.json()["duplicate"] == 1
    assert post(url, RESOLVED).json()["resolved"] == 1
    late = post(url, FIRING)  # a firing for an episode that is already resolved
    assert late.json()["ignored"] == 1
    assert attempts(medic) == [("restart", "succeeded"), ("ladder", "skipped_duplicate")]

    again = post(url, body(FIRING, startsAt="2026-11-22T03:00:00.000Z"))  # a new episode
    assert again.json()["accepted"] == 1
    text = wait_for_metric(url, "medic_webhook_requests_total", 5, code="202")
    assert value(text, "medic_webhook_alerts_total", status="firing", result="accepted") == 2
    assert value(text, "medic_webhook_alerts_total", status="firing", result="duplicate") == 1
    assert value(text, "medic_webhook_alerts_total", status="firing", result="ignored") == 1
    assert value(text, "medic_webhook_alerts_total", status="resolved", result="resolved") == 1


def test_each_alert_has_its_own_status_and_route(webhook_medic: tuple[Medic, str]) -> None:
    medic, url = webhook_medic
    group = body(RESOLVED)  # group status says resolved …
    firing = dict(FIRING["alerts"][0], fingerprint="aaaa000000000001")  # … but one fires
    unrouted = dict(firing, fingerprint="aaaa000000000002",
                    labels={"alertname": "Other", "severity": "critical"})  # fmt: skip
    chosen = dict(firing, fingerprint="aaaa000000000003", labels={"alertname": "X"},
                  annotations={"medic_failure_type": "network_error"})  # fmt: skip
    forbidden = dict(
        firing,
        fingerprint="aaaa000000000004",
        labels={"alertname": "Y"},
        annotations={"medic_failure_type": "vram_exhaustion"},
    )  # no ladder for it
    group["alerts"] += [firing, unrouted, chosen, forbidden]
    summary = post(url, group).json()
    assert [a["result"] for a in summary["alerts"]] == [
        "resolved",
        "accepted",
        "ignored",
        "accepted",
        "ignored",
    ]
    medic.recovery.wait_idle(10)
    found, _ = medic.journal.attempts()
    assert sorted(a.failure_type for a in found) == ["generation_pipeline_error", "network_error"]


def test_newer_fields_are_tolerated_and_truncation_is_counted(
    webhook_medic: tuple[Medic, str],
) -> None:
    _, url = webhook_medic
    newer = body(FIRING)
    newer.update(truncatedAlerts=3, notification_reason="group_change",
                 routeLabels={"team": "ml"})  # fmt: skip
    newer["alerts"][0]["futureField"] = {"x": 1}
    assert post(url, newer).status_code == 202
    wait_for_metric(url, "medic_webhook_truncated_alerts_total", 3)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"{not json", "body: Invalid JSON"),
        ({**FIRING, "version": "3"}, "version: Input should be '4'"),
        (body(FIRING, status="pending"), "alerts[0].status: Input should be 'firing' or"),
        (body(FIRING, labels={"a": 1}), "alerts[0].labels.a: Input should be a valid string"),
        ({k: v for k, v in FIRING.items() if k != "alerts"}, "alerts: Field required"),
    ],
)
def test_malformed_payloads_get_400_with_the_field(
    webhook_medic: tuple[Medic, str], payload: Any, problem: str
) -> None:
    medic, url = webhook_medic
    response = post(url, payload)
    assert response.status_code == 400
    assert any(p.startswith(problem) for p in response.json()["problems"]), response.json()
    assert medic.recovery.queue_length() == 0 and attempts(medic) == []


def test_content_type_size_and_method(webhook_medic: tuple[Medic, str]) -> None:
    _, url = webhook_medic
    assert post(url, FIRING, **{"content-type": "text/plain"}).status_code == 415
    assert post(url, b"x" * (1024 * 1024 + 1)).status_code == 413
    # A declared size over the limit is refused before a byte of the body is read.
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    assert httpx.get(f"{url}/api/v1/alerts").status_code == 405
    assert httpx.put(f"{url}/api/v1/alerts", content=b"{}").status_code == 405
    # The webhook answers these itself (not the guard or the connection layer): counted.
    wait_for_metric(url, "medic_webhook_requests_total", 1, code="415")
    wait_for_metric(url, "medic_webhook_requests_total", 2, code="413")


def authed_medic(tmp_path: Path, auth: str) -> Medic:
    text = (f"data_dir: {tmp_path}\nserver:\n  auth: {auth}\n  public: [metrics, health]\n"
            + ROUTES.format(extra=""))  # fmt: skip
    medic = Medic(parse_config(text, env={}))
    medic.actions.register("restart", lambda: True)
    return medic


def test_bearer_token_from_a_file_guards_webhook_and_reset(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    medic = authed_medic(tmp_path, f"{{bearer_token: {{file: {secret}}}}}")
    with serving(medic) as url:
        assert post(url, FIRING).status_code == 401
        wrong = post(url, FIRING, authorization="Bearer nope")
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        assert post(url, FIRING, authorization="Bearer s3cret-token").status_code == 202
        reset = f"{url}/api/v1/recoveries/reset"
        assert httpx.post(reset, json={}).status_code == 401
        ok = httpx.post(reset, json={}, headers={"authorization": "bearer s3cret-token"})
        assert ok.status_code == 200
        wait_for_metric(url, "medic_webhook_requests_total", 2, code="401")
    assert attempts(medic) == [("restart", "succeeded")]  # the unauthenticated POSTs ran nothing


def test_basic_auth_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_PASSWORD", "pa:ss")
    medic = authed_medic(tmp_path, "{basic: {username: am, password: {env: AM_PASSWORD}}}")
    with serving(medic) as url:
        good = base64.b64encode(b"am:pa:ss").decode()
        bad = base64.b64encode(b"am:wrong").decode()
        assert post(url, FIRING, authorization=f"Basic {bad}").status_code == 401
        assert post(url, FIRING, authorization="Basic !!notbase64").status_code == 401
        assert post(url, FIRING, authorization=f"Basic {good}").status_code == 202


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="A"', {"alertname": "A"}, True),
        ('alertname="A"', {"alertname": "AB"}, False),
        ('severity!="info"', {}, True),
        ('severity=~"crit.*"', {"severity": "critical"}, True),
        ('severity=~"crit"', {"severity": "critical"}, False),  # anchored
        ('severity=~"crit"', {"severity": "xcrit"}, False),
        ('gpu!~"[0-3]"', {"gpu": "5"}, True),
        ('gpu!~"[0-3]"', {"gpu": "2"}, False),
        ('team=""', {}, True),  # a missing label matches ""
        ("job=lab", {"job": "lab"}, True),
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert matches_all([parse_matcher(text)], labels) is expected


@pytest.mark.parametrize("text", ["alertname", '="x"', 'a=~"("', 'a=="x"'])
def test_bad_matchers_are_config_errors(text: str, tmp_path: Path) -> None:
    from exporter.config import ConfigError

    config = ROUTES.format(extra="").replace("'alertname=\"LabFlagHigh\"'", repr(text))
    with pytest.raises(ConfigError, match=r"webhook\.routes\[0\]\.matchers\[0\]"):
        parse_config(f"data_dir: {tmp_path}\n" + config, env={})


def test_routes_need_a_ladder(tmp_path: Path) -> None:
    from exporter.config import ConfigError

    text = ROUTES.format(extra="    - matchers: ['x=\"1\"']\n      failure_type: vram_exhaustion")
    with pytest.raises(ConfigError, match=r"webhook\.routes\[1\]\.failure_type: 'vram_exhaustion'"):
        parse_config(f"data_dir: {tmp_path}\n" + text, env={})


def test_without_a_journal_alerts_are_refused_with_503(tmp_path: Path) -> None:
    # A 202 promises the alert survives a crash; with nowhere to keep it, medic says so and
    # Alertmanager keeps retrying. (The embedding app's own reports still run from memory.)
    (tmp_path / "data").write_text("no journal can live here")
    medic = Medic(
        parse_config(f"data_dir: {tmp_path / 'data'}\n" + ROUTES.format(extra=""), env={})
    )
    ran: list[str] = []

    def restart() -> bool:
        ran.append("restart")
        return True

    medic.actions.register("restart", restart)
    with serving(medic) as url:
        refused = post(url, FIRING)
        assert refused.status_code == 503 and refused.json()["refused"] == 1
        assert refused.headers["retry-after"] == "10"
        assert refused.json()["alerts"][0]["detail"] == "the recovery journal is unavailable"
        assert medic.report_failure("generation_pipeline_error").accepted
        assert medic.recovery.wait_idle(10)
    assert ran == ["restart"]  # the app's report, not the alert


def test_a_journal_that_cannot_commit_answers_503_and_the_retry_is_a_duplicate(
    webhook_medic: tuple[Medic, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    medic, url = webhook_medic
    monkeypatch.setattr(route, "COMMIT_WAIT", 0.3)
    holder = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database's write lock
    try:
        stuck = post(url, FIRING)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert stuck.status_code == 503 and stuck.headers["retry-after"] == "10"
    assert "not committing" in stuck.json()["error"]
    retry = post(url, FIRING)  # Alertmanager retries a 5xx
    assert retry.status_code == 202 and retry.json()["duplicate"] == 1
    # The claim did commit once the lock was gone: the action ran once, after it.
    assert sorted(attempts(medic)) == [("ladder", "skipped_duplicate"), ("restart", "succeeded")]


def test_a_claim_that_fails_to_commit_is_forgotten_and_the_retry_runs_once(
    tmp_path: Path,
) -> None:
    medic = Medic(parse_config(f"data_dir: {tmp_path}\n" + ROUTES.format(extra=""), env={}))
    ran: list[str] = []

    def restart() -> bool:
        ran.append("restart")
        return True

    medic.actions.register("restart", restart)
    # 40 KiB of labels: the claim's row needs new pages, which a full disk does not give.
    labels = {**FIRING["alerts"][0]["labels"], **{f"l{n}": "x" * 400 for n in range(100)}}
    heavy = body(FIRING, labels=labels)
    with serving(medic) as url:
        assert medic.db is not None
        fill_database(medic.db)
        refused = post(url, heavy)
        assert refused.status_code == 503 and "not committing" in refused.json()["error"]
        make_room(medic.db)
        retry = post(url, heavy)  # Alertmanager sends it again
        assert retry.status_code == 202 and retry.json()["accepted"] == 1  # claimed afresh
        assert medic.recovery.wait_idle(10)
        again = post(url, heavy)
        assert again.json()["duplicate"] == 1
    assert ran == ["restart"]
