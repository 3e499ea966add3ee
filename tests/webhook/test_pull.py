"""Pull mode against real Alertmanager processes: identity and routes pushed down as filters,
alerts acted on once, episodes closed when their alert goes away (not when a poll fails),
failover between peers, the alertmanager_pull check, and auth and TLS on the way."""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.webhook.identity import Identity
from tests.e2e.stack import Alertmanager
from tests.helpers import wait_until

ALERTMANAGER = """
route: {receiver: nobody, group_wait: 1h}
receivers: [{name: nobody}]
"""
PASSWORD_HASH = "$2b$04$z36W27xYu7kdrj0JRRzOQOpe7.lRwTPrwb.g.Y6EpyLpBKP4HrAGy"  # "pull-secret"
MEDIC = """
data_dir: {data}
recovery:
  cooldown: {{base: 0s}}
  max_waiting_per_type: 100
  actions:
    note:
      type: command
      argv: [sh, -c, 'echo "$MEDIC_LABEL_JOB" >> {log}; [ -z "$MEDIC_LABEL_BLOCK" ] || cat {gate}']
  failures:
    generation_pipeline_error: {{ladder: [note]}}
webhook:
  routes: [{{matchers: ['alertname="Pulled"'], failure_type: generation_pipeline_error}}]
  pull:
    alertmanagers: {peers}
    interval: 100ms
    timeout: 100ms
    grace: 400ms
    fail_after: 2
{extra}
identity: {identity}
"""
MINE = "{matchers: ['instance=~\"host-a(:[0-9]+)?\"'], unlabeled: other_host}"


class Puller:
    """A started medic in pull mode and the file its action appends to."""

    def __init__(self, medic: Medic, log: Path, gate: Path) -> None:
        self.medic, self.log, self.gate = medic, log, gate

    def ran(self) -> Counter[str]:
        return Counter(self.log.read_text().split()) if self.log.exists() else Counter()

    def polls(self) -> int:
        assert self.medic.puller is not None
        return self.medic.puller.stats.durations.count

    def after_polls(self, n: int) -> None:
        """Wait until n more polls have finished (evidence that nothing else will come)."""
        target = self.polls() + n
        wait_until(lambda: self.polls() >= target, what=f"{n} more polls")

    def metric(self, name: str, absent: float | None = None, **labels: str) -> float:
        """A series' value from a fresh render; an absent series fails the test unless
        `absent` says what it counts as."""
        from tests.test_server import value

        found = value(self.medic.exposition.render().text.decode(), name, **labels)
        if found is None:
            assert absent is not None, f"no {name}{labels}"
            return absent
        return found


@pytest.fixture
def start_puller(tmp_path: Path) -> Iterator[Callable[..., Puller]]:
    started: list[Medic] = []
    os.mkfifo(tmp_path / "gate")

    def start(peers: list[str], identity: str = MINE, extra: str = "") -> Puller:
        log = tmp_path / "ran.log"
        text = MEDIC.format(data=tmp_path / "data", log=log, gate=tmp_path / "gate",
                            peers=peers, identity=identity, extra=extra)  # fmt: skip
        medic = Medic(parse_config(text, env={}))
        medic.start()
        started.append(medic)
        return Puller(medic, log, tmp_path / "gate")

    yield start
    for medic in started:
        medic.stop()


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Alertmanager]:
    manager = Alertmanager(ALERTMANAGER, tmp_path / "am")
    yield manager
    manager.stop()


def pulled(job: str, instance: str | None, **labels: str) -> dict[str, str]:
    alert = {"alertname": "Pulled", "job": job, **labels}
    if instance is not None:
        alert["instance"] = instance
    return alert


def test_pushdown_is_exact_or_absent(tmp_path: Path) -> None:
    identity = Identity.from_config(parse_config(f"identity: {MINE}", env={}).identity)
    assert identity.pushdown() == 'instance=~"host-a(:[0-9]+)?"'
    alike = parse_config(
        "identity: {matchers: ['node=\"a\"', 'node=~\"b.*\"'], unlabeled: other_host}", env={}
    ).identity
    assert Identity.from_config(alike).pushdown() == 'node=~"a|(?:b.*)"'
    # Unlabeled alerts are this host's, or two labels decide: no single filter keeps them all.
    assert Identity.from_config(parse_config(
        "identity: {matchers: ['node=\"a\"']}", env={}).identity).pushdown() is None  # fmt: skip
    assert Identity(names=["a"]).pushdown() is None

    def filters(webhook: str) -> list[str]:
        text = f"""
data_dir: {tmp_path}
recovery:
  actions: {{noop: {{type: in_process}}}}
  failures: {{vram_exhaustion: {{ladder: [noop]}}, model_loading_failure: {{ladder: [noop]}}}}
webhook: {webhook}
"""
        return Medic(parse_config(text, env={})).intake.filters()  # built-in identity: none

    routes = """
  routes:
    - {matchers: ['medic_failure_type="vram_exhaustion"'], failure_type: vram_exhaustion}
    - {matchers: ['medic_failure_type=~"model_.*"'], failure_type: model_loading_failure}"""
    assert filters("\n" + routes) == ['medic_failure_type=~"vram_exhaustion|(?:model_.*)"']
    # An annotation can route too: no filter would keep all it takes.
    assert filters("\n  failure_type_annotation: medic_failure_type" + routes) == []
    two = "\n  routes: [{matchers: ['a=\"1\"', 'b=\"2\"'], failure_type: vram_exhaustion}]"
    assert filters(two) == []


def test_pull_acts_once_on_this_hosts_alerts_only(
    am: Alertmanager, start_puller: Callable[..., Puller]
) -> None:
    am.post_alert(pulled("mine", "host-a:9100"))
    am.post_alert(pulled("theirs", "host-b:9100"))
    am.post_alert(pulled("cluster", None))  # no host label: not ours (unlabeled: other_host)
    am.post_alert({"alertname": "Unrouted", "instance": "host-a:9100", "job": "x"})
    puller = start_puller([am.url])
    wait_until(lambda: puller.ran()["mine"] == 1, what="this host's alert to run")
    puller.after_polls(5)
    assert puller.ran() == {"mine": 1}  # once, however many polls saw it
    assert puller.metric("medic_alertmanager_poll_alerts") == 1  # the filters were pushed down
    assert puller.metric("medic_alertmanager_poll_alerts_total", result="accepted") == 1
    assert puller.metric("medic_alertmanager_poll_requests_total", peer=am.url,
                         result="success") >= 6  # fmt: skip
    assert puller.metric("medic_check_success", check="alertmanager_pull") == 1


def test_without_pushdown_the_identity_is_checked_here(
    am: Alertmanager, start_puller: Callable[..., Puller]
) -> None:
    am.post_alert(pulled("mine", "host-a:9100"))
    am.post_alert(pulled("theirs", "host-b:9100"))
    am.post_alert(pulled("cluster", None))  # no host label: this host's (the default)
    puller = start_puller([am.url], identity="{matchers: ['instance=~\"host-a(:[0-9]+)?\"']}")
    wait_until(lambda: sum(puller.ran().values()) == 2, what="two alerts to run")
    puller.after_polls(3)
    assert puller.ran() == {"mine": 1, "cluster": 1}
    assert puller.metric("medic_alertmanager_poll_alerts") == 3
    assert puller.metric("medic_alertmanager_poll_alerts_total", result="ignored") == 1


def test_a_gone_alert_closes_its_episode_but_a_failed_poll_does_not(
    tmp_path: Path, start_puller: Callable[..., Puller]
) -> None:
    first = Alertmanager(ALERTMANAGER, tmp_path / "am1")
    second = Alertmanager(ALERTMANAGER, tmp_path / "am2")
    try:
        for manager in (first, second):
            manager.post_alert(pulled("blocker", "host-a:9100", block="1"))
            manager.post_alert(pulled("waiting", "host-a:9100"))
            manager.post_alert(pulled("silenced", "host-a:9100"))
        puller = start_puller([first.url, second.url])
        wait_until(lambda: puller.ran()["blocker"] == 1, what="the blocking run to start")
        puller.after_polls(2)  # both waiting episodes are claimed, behind the blocker
        assert puller.medic.recovery.queue_length() == 2
        # Silenced on the peer being polled: gone from its answers, so closed after the grace.
        first.silence({"job": "silenced"})
        wait_until(lambda: puller.metric("medic_recovery_events_total", absent=0,
                                         result="cancelled_resolved") == 1,
                   what="the silenced alert's episode to be cancelled")  # fmt: skip
        # Every peer down: polls fail, for longer than the grace; nothing is closed.
        first.stop()
        second.stop()
        wait_until(lambda: puller.metric("medic_alertmanager_poll_failing") >= 6,
                   what="six failed polls")  # fmt: skip
        assert puller.medic.recovery.queue_length() == 1
        assert puller.metric("medic_check_success", check="alertmanager_pull") == 0
        assert puller.medic.health.run("alertmanager_pull").reason.startswith(
            "no Alertmanager peer answered the last"
        )
        with open(puller.gate, "w") as gate:
            gate.write("go\n")
        assert puller.medic.recovery.wait_idle(10)
        assert puller.ran() == {"blocker": 1, "waiting": 1}
    finally:
        first.stop()
        second.stop()


def test_failover_to_the_next_peer(tmp_path: Path, start_puller: Callable[..., Puller]) -> None:
    first = Alertmanager(ALERTMANAGER, tmp_path / "am1")
    second = Alertmanager(ALERTMANAGER, tmp_path / "am2")
    try:
        began = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        for manager in (first, second):  # Prometheus sends every peer the same alert
            manager.post_alert(pulled("before", "host-a:9100"), startsAt=began)
        puller = start_puller([first.url, second.url])
        wait_until(lambda: puller.ran()["before"] == 1, what="the first alert to run")
        first.stop()
        second.post_alert(pulled("after", "host-a:9100"))
        wait_until(lambda: puller.ran()["after"] == 1, what="an alert on the second peer to run")
        puller.after_polls(3)
        assert puller.ran() == {"before": 1, "after": 1}  # "before" is not offered again
        assert puller.metric("medic_alertmanager_poll_failing") == 0
        assert puller.metric("medic_alertmanager_poll_requests_total", peer=first.url,
                             result="error") >= 1  # fmt: skip
    finally:
        first.stop()
        second.stop()


def test_basic_auth_tls_and_a_client_certificate(
    tmp_path: Path, start_puller: Callable[..., Puller]
) -> None:
    import trustme

    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("medic")
    files = {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_chain_pems[0],
        "server.key": server.private_key_pem,
        "client.pem": client.cert_chain_pems[0],
        "client.key": client.private_key_pem,
    }
    for name, item in files.items():
        item.write_to_path(str(tmp_path / name))
    (tmp_path / "password").write_text("pull-secret\n")
    web = f"""
tls_server_config:
  cert_file: {tmp_path / "server.pem"}
  key_file: {tmp_path / "server.key"}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {tmp_path / "ca.pem"}
basic_auth_users: {{medic: "{PASSWORD_HASH}"}}
"""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client.configure_cert(context)
    settings = {"verify": context, "auth": ("medic", "pull-secret")}
    manager = Alertmanager(ALERTMANAGER, tmp_path / "am", web_config=web, client=settings)
    try:
        manager.post_alert(pulled("secure", "host-a:9100"))
        tls = (f"    basic_auth: {{username: medic, password: {{file: {tmp_path / 'password'}}}}}\n"
               f"    tls: {{ca_file: {tmp_path / 'ca.pem'}, cert_file: {tmp_path / 'client.pem'},"
               f" key_file: {tmp_path / 'client.key'}}}")  # fmt: skip
        puller = start_puller([manager.url], extra=tls)
        wait_until(lambda: puller.ran()["secure"] == 1, what="the alert to be pulled over TLS")
        assert manager.http("GET", "/api/v2/alerts").status_code == 200
        refused = httpx.get(f"{manager.url}/api/v2/alerts", verify=context)  # no password
        assert refused.status_code == 401
    finally:
        manager.stop()


class BearerAlertmanager:
    """Alertmanager has no bearer tokens of its own (a proxy in front does that): a stand-in
    that answers GET /api/v2/alerts as API v2 does, only with the right bearer token."""

    def __init__(self, token: str, alerts: list[dict[str, Any]]) -> None:
        import http.server
        import json

        outer = self
        self.seen: list[str | None] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append(self.headers.get("Authorization"))
                ok = self.headers.get("Authorization") == f"Bearer {token}"
                payload = json.dumps(alerts if ok else {"error": "unauthorized"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_bearer_token_from_the_environment(
    start_puller: Callable[..., Puller], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AM_TOKEN", "t0ken")
    alert = {"labels": pulled("bearer", "host-a:9100"), "annotations": {},
             "startsAt": "2026-11-22T02:36:41.168123Z", "endsAt": "2026-11-22T03:36:41.168Z",
             "updatedAt": "2026-11-22T02:36:41.168Z", "generatorURL": "", "receivers": [],
             "fingerprint": "0123456789abcdef",
             "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}}  # fmt: skip
    stand_in = BearerAlertmanager("t0ken", [alert])
    try:
        puller = start_puller([stand_in.url], extra="    bearer_token: {env: AM_TOKEN}")
        wait_until(lambda: puller.ran()["bearer"] == 1, what="the alert to be pulled")
        assert set(stand_in.seen) == {"Bearer t0ken"}
    finally:
        stand_in.close()


def test_push_and_pull_at_once_are_one_episode(tmp_path: Path) -> None:
    # Alertmanager stamps an alert posted without startsAt to the nanosecond; the webhook
    # writes that, API v2 writes milliseconds. Both copies must be the same episode.
    from tests.e2e.stack import free_port
    from tests.helpers import serving

    os.mkfifo(tmp_path / "gate")
    log, port = tmp_path / "ran.log", free_port()
    text = MEDIC.format(data=tmp_path / "data", log=log, gate=tmp_path / "gate",
                        peers=[f"http://127.0.0.1:{port}"], identity=MINE, extra="")  # fmt: skip
    medic = Medic(parse_config(text, env={}))
    with serving(medic) as url:
        pushing = f"""
route: {{receiver: medic, group_wait: 0s, group_interval: 250ms, repeat_interval: 1h}}
receivers: [{{name: medic, webhook_configs: [{{url: "{url}/api/v1/alerts"}}]}}]
"""
        am = Alertmanager(pushing, tmp_path / "am", port=port)
        try:
            am.post_alert(pulled("both", "host-a:9100"))  # no startsAt: Alertmanager's now
            webhook = {"status": "firing", "result": "accepted"}
            seen = ("medic_webhook_alerts_total", "medic_alertmanager_poll_alerts_total")

            def both_heard() -> bool:
                text = medic.exposition.render().text.decode()
                from tests.test_server import value

                pushed = sum(value(text, seen[0], status="firing", result=r) or 0
                             for r in ("accepted", "duplicate"))  # fmt: skip
                pulled_ = sum(value(text, seen[1], result=r) or 0
                              for r in ("accepted", "duplicate"))  # fmt: skip
                return pushed >= 1 and pulled_ >= 1

            wait_until(both_heard, timeout=20, what="the alert pushed and pulled")
            assert medic.recovery.wait_idle(10)
            assert Counter(log.read_text().split()) == {"both": 1}
            from tests.test_server import value

            text = medic.exposition.render().text.decode()
            accepted = (value(text, seen[0], **webhook) or 0) + (
                value(text, seen[1], result="accepted") or 0)  # fmt: skip
            assert accepted == 1  # one way accepted it, the other found a duplicate
            found, _ = medic.journal.attempts()
            raw = {a.starts_at for a in found}
            assert len(raw) == 2, raw  # written two ways (nanoseconds, milliseconds) ...
            assert len({a.dedup_key for a in found}) == 1  # ... one episode
        finally:
            am.stop()
