"""Two hosts' medics and real Alertmanager: each medic acts only on its own host's alerts,
whether Alertmanager pushes every alert to both, or both pull from an HA pair."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import Alertmanager, free_port
from tests.helpers import MedicProcess, wait_until
from tests.test_server import value

MEDIC = """
data_dir: {data}
checks:
  - {{name: host_memory, type: host_memory, interval: 1h, min_available_ratio: 0}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    note: {{type: command, argv: [sh, -c, 'echo "$MEDIC_LABEL_JOB" >> {log}']}}
  failures:
    generation_pipeline_error: {{ladder: [note]}}
webhook:
  routes: [{{matchers: ['alertname="LabFlagHigh"'], failure_type: generation_pipeline_error}}]
{pull}
identity:  # this medic is host {host}: its alerts name it in `instance`
  matchers: ['instance=~"{host}(:[0-9]+)?"']
  unlabeled: other_host
"""
PUSH = """
route:
  receiver: both
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 250ms
  repeat_interval: 1h
receivers:
  - name: both
    webhook_configs:
      - {{url: "{a}/api/v1/alerts", send_resolved: true}}
      - {{url: "{b}/api/v1/alerts", send_resolved: true}}
"""
PULL = """  pull:
    alertmanagers: {peers}
    interval: 200ms
    timeout: 200ms
    grace: 1s"""
NOBODY = """
route: {receiver: nobody, group_wait: 1h}
receivers: [{name: nobody}]
"""


class Host:
    """One host's medic process and the file its action writes."""

    def __init__(self, name: str, proc: MedicProcess, url: str, log: Path) -> None:
        self.name, self.proc, self.url, self.log = name, proc, url, log

    def ran(self) -> Counter[str]:
        return Counter(self.log.read_text().split()) if self.log.exists() else Counter()

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready").status_code == 200

    def heard_both(self) -> bool:
        """It got both hosts' alerts: accepted its own, ignored the other's."""
        firing = {"status": "firing"}
        return (
            self.metric("medic_webhook_alerts_total", result="ignored_other_host", **firing)
            == 1
            == self.metric("medic_webhook_alerts_total", result="accepted", **firing)
        )

    def metric(self, name: str, **labels: str) -> float:
        return value(httpx.get(f"{self.url}/metrics").text, name, **labels) or 0.0

    def polls(self) -> float:
        """Successful polls, to any peer."""
        lines = httpx.get(f"{self.url}/metrics").text.splitlines()
        name = "medic_alertmanager_poll_requests_total"
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith(name) and 'result="success"' in line)  # fmt: skip

    def after_polls(self, n: int) -> None:
        target = self.polls() + n
        wait_until(lambda: self.polls() >= target, what=f"{self.name}: {n} more polls")


@pytest.fixture
def hosts(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> Iterator[Callable[..., dict[str, Host]]]:
    def start(pull: str = "", ports: tuple[int, int] | None = None) -> dict[str, Host]:
        started = {}
        for index, name in enumerate(("host-a", "host-b")):
            root = tmp_path / name
            root.mkdir()
            config = root / "medic.yml"
            log = root / "ran.log"
            config.write_text(MEDIC.format(data=root / "data", log=log, host=name, pull=pull))
            listen = ["--listen", f"127.0.0.1:{ports[index]}"] if ports else []
            proc = medic_process(["--config", str(config), *listen])
            host = Host(name, proc, proc.wait_listening(), log)
            wait_until(host.ready, what=f"{name} ready")
            started[name] = host
        return started

    yield start


def test_push_both_medics_get_every_alert_each_acts_on_its_own(
    hosts: Callable[..., dict[str, Host]], tmp_path: Path
) -> None:
    ports = (free_port(), free_port())
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    am = Alertmanager(PUSH.format(a=urls[0], b=urls[1]), tmp_path / "am")
    try:
        fleet = hosts(ports=ports)
        am.post_alert({"alertname": "LabFlagHigh", "instance": "host-a:9100", "job": "on-a"})
        am.post_alert({"alertname": "LabFlagHigh", "instance": "host-b:9100", "job": "on-b"})
        for host in fleet.values():  # both alerts reached both medics
            wait_until(host.heard_both, timeout=20, what=f"{host.name} to hear of both alerts")
        for host in fleet.values():
            assert host.proc.proc.poll() is None
            assert host.metric("medic_recovery_in_progress") == 0
        assert fleet["host-a"].ran() == {"on-a": 1}
        assert fleet["host-b"].ran() == {"on-b": 1}
    finally:
        am.stop()


def test_pull_from_an_ha_pair_silences_and_failover(
    hosts: Callable[..., dict[str, Host]], tmp_path: Path
) -> None:
    c1, c2 = free_port(), free_port()
    first = Alertmanager(NOBODY, tmp_path / "am1", cluster_port=c1, peers=(c2,), name="am1")
    second = Alertmanager(NOBODY, tmp_path / "am2", cluster_port=c2, peers=(c1,), name="am2")
    try:
        wait_until(lambda: len(first.http("GET", "/api/v2/status").json()["cluster"]["peers"])
                   == 2, timeout=20, what="the pair to see each other")  # fmt: skip
        # Maintenance on host-a, silenced before its alert exists: it must never act on it.
        first.silence({"job": "maintenance"})
        wait_until(lambda: second.active_silences() == 1, timeout=20,
                   what="the silence to gossip to the other peer")  # fmt: skip
        fleet = hosts(pull=PULL.format(peers=[first.url, second.url]))
        began = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        alerts = [("host-a:9100", "maintenance"), ("host-a:9100", "on-a"),
                  ("host-b:9100", "on-b")]  # fmt: skip
        for manager in (first, second):  # Prometheus sends every peer every alert
            for instance, job in alerts:
                labels = {"alertname": "LabFlagHigh", "instance": instance, "job": job}
                manager.post_alert(labels, startsAt=began)
        a, b = fleet["host-a"], fleet["host-b"]
        wait_until(lambda: a.ran()["on-a"] == 1 and b.ran()["on-b"] == 1, timeout=20,
                   what="each host's own alert to run")  # fmt: skip
        a.after_polls(3)
        assert a.ran() == {"on-a": 1}  # the silenced alert never ran, nor host-b's
        assert b.ran() == {"on-b": 1}
        # One peer dies: the pulls go on through the other.
        first.stop()
        second.post_alert({"alertname": "LabFlagHigh", "instance": "host-a:9100",
                           "job": "after-failover"}, startsAt=began)  # fmt: skip
        wait_until(lambda: a.ran()["after-failover"] == 1, timeout=20,
                   what="an alert on the surviving peer to run")  # fmt: skip
        b.after_polls(3)
        assert a.ran() == {"on-a": 1, "after-failover": 1}
        assert b.ran() == {"on-b": 1}
        for host in (a, b):
            assert host.metric("medic_alertmanager_poll_requests_total", peer=first.url,
                               result="error") >= 1  # fmt: skip
            assert host.metric("medic_check_success", check="alertmanager_pull") == 1
    finally:
        first.stop()
        second.stop()
