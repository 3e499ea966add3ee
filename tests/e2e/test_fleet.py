"""A simulated fleet: 12 medic processes on 127.0.0.11-22 (each its own host, identity and
data dir, in two racks), a real Prometheus scraping them all with the shipped rules, a real
Alertmanager they pull from, and a real 3-member etcd cluster for the fleet's slots.

The fault is the shipped MedicModelFileMissing rule: a host's model file goes, Prometheus
fires, the host's medic pulls the alert and walks its ladder — a gentle rung that does not
help, then a disruptive restart (tests/fixtures/fleet_action.py) that restores the file.
The restart passes the fleet stage: the guard (hold above 50 % of the fleet affected) and
the semaphore (3 hosts at once in the fleet, 2 per rack).

Concurrency is counted from the journals' timestamps and from the actions' own effects
file, never from what medic says about itself.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.etcd import EtcdCluster
from tests.e2e.stack import Alertmanager, Prometheus, fast_rules, free_port
from tests.helpers import MedicProcess, wait_until
from tests.test_server import value

ROOT = Path(__file__).parents[2]
ACTION = ROOT / "tests" / "fixtures" / "fleet_action.py"
FLEET_SLOTS, RACK_SLOTS = 3, 2
NOBODY = """
route: {receiver: nobody, group_wait: 1h}
receivers: [{name: nobody}]
"""
MEDIC = """
data_dir: {root}/data
checks:
  - {{name: model, type: path, path: {root}/model.bin, interval: 250ms}}
recovery:
  prometheus_url: {prometheus}
  cooldown: {{base: 0s}}
  actions:
    gentle: {{type: command, disruptive: false, argv: ["true"]}}
    restart: {{type: command, argv: [{python}, {action}, {root}, {effects}]}}
  failures:
    model_loading_failure:
      verify: [model]
      settle_delay: 300ms
      verify_timeout: 1500ms
      ladder: [gentle, {{action: restart, timeout: 90s}}]
webhook:
  routes: [{{matchers: ['medic_failure_type="model_loading_failure"'],
            failure_type: model_loading_failure}}]
  pull: {{alertmanagers: ["{alertmanager}"], interval: 250ms, timeout: 250ms, grace: 1s,
          filters: ['instance="{instance}"']}}
identity:
  matchers: ['instance="{instance}"']
  unlabeled: other_host
fleet:
  host: {name}
  domains: {{rack: {rack}}}
  guard:
    budgets: [{{max_affected: 50%}}]
    recheck: 500ms
    timeout: 1s
    on_error: {on_error}
  semaphore:
    endpoints: {etcd}
    slots: {{fleet: {fleet_slots}, rack: {rack_slots}}}
    ttl: 3
    poll: 200ms
    timeout: 1s
"""


@dataclass
class Host:
    """One simulated host: its medic, its model file, its journal."""

    name: str
    root: Path
    config: Path
    instance: str
    rack: str
    proc: MedicProcess

    @property
    def url(self) -> str:
        return f"http://{self.instance}"

    def fault(self, *, hold: bool = False) -> None:
        """The model file goes; with hold, its restart waits for `finish()`."""
        for name in ("hold", "go"):
            (self.root / name).unlink(missing_ok=True)
        if hold:
            (self.root / "hold").touch()
        (self.root / "model.bin").unlink()

    def finish(self) -> None:
        (self.root / "go").touch()

    def metric(self, name: str, **labels: str) -> float:
        return value(httpx.get(f"{self.url}/metrics", timeout=5).text, name, **labels) or 0.0

    def fleet(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{self.url}/api/v1/fleet", timeout=5).json()
        return answer

    def attempts(self, action: str = "restart") -> list[sqlite3.Row]:
        with sqlite3.connect(f"file:{self.root / 'data' / 'medic.db'}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            return db.execute(
                "SELECT * FROM recovery_attempts WHERE action = ? ORDER BY id", (action,)
            ).fetchall()

    def outcomes(self, action: str = "restart") -> list[str]:
        return [row["outcome"] for row in self.attempts(action)]


class Fleet:
    """The hosts, the stack, and the effects file every action writes to."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.effects = workdir / "effects.log"
        self.hosts: dict[str, Host] = {}
        self.killed: dict[str, float] = {}  # host -> when the test killed it
        self.etcd = EtcdCluster(workdir / "etcd")
        try:
            self.am = Alertmanager(NOBODY, workdir / "am")
        except BaseException:
            self.etcd.stop()
            raise
        try:
            self._start(workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, workdir: Path) -> None:
        addresses = {f"h{n}": f"127.0.0.{n}:{free_port()}" for n in range(11, 23)}
        racks = {name: "r1" if int(name[1:]) <= 16 else "r2" for name in addresses}
        prom_dir = workdir / "prometheus"
        prom_dir.mkdir()
        self.prometheus = Prometheus(
            prom_dir, fast_rules(ROOT / "alerts" / "medic.rules.yml"), medic="",
            alertmanager=self.am.url.removeprefix("http://"),
            targets={address: {"rack": racks[name]} for name, address in addresses.items()},
        )  # fmt: skip
        for name, instance in addresses.items():
            root = workdir / name
            root.mkdir()
            (root / "model.bin").write_bytes(b"weights")
            config = root / "medic.yml"
            config.write_text(MEDIC.format(
                root=root, prometheus=self.prometheus.url, python=sys.executable,
                action=ACTION, effects=self.effects, alertmanager=self.am.url,
                instance=instance, name=name, rack=racks[name], etcd=self.etcd.endpoints,
                fleet_slots=FLEET_SLOTS, rack_slots=RACK_SLOTS,
                # One host lets rungs through when Prometheus does not answer (fail open).
                on_error="proceed" if name == "h22" else "hold",
            ))  # fmt: skip
            proc = MedicProcess(["--config", str(config), "--listen", instance],
                                root / "medic.log")  # fmt: skip
            self.hosts[name] = Host(name, root, config, instance, racks[name], proc)
        for host in self.hosts.values():
            host.proc.wait_listening(timeout=60)
            wait_until(partial(ready, host), timeout=60, what=f"{host.name} ready")  # fmt: skip
        wait_until(self.all_scraped, timeout=60, what="Prometheus to scrape all 12 hosts")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def all_scraped(self) -> bool:
        try:
            up = self.prometheus.query('up{job="medic"} == 1')
            managers = self.prometheus.api("alertmanagers")["activeAlertmanagers"]
        except httpx.HTTPError:
            return False
        return len(up) == len(self.hosts) and bool(managers)

    def quiet(self) -> None:
        """No model-file alert fires and no host is in a ladder: the next scenario starts
        from a clean fleet (a new fault is then a new alert episode)."""

        def calm() -> bool:
            firing = self.prometheus.query('ALERTS{alertname="MedicModelFileMissing"}')
            busy = [h for h in self.live() if h.metric("medic_recovery_in_progress") > 0]
            return not firing and not busy

        wait_until(calm, timeout=60, what="the fleet to be quiet")

    def live(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.proc.proc.poll() is None]

    def effects_lines(self) -> list[tuple[str, str, float, int]]:
        if not self.effects.exists():
            return []
        out = []
        for line in self.effects.read_text().splitlines():
            what, host, at, pid = line.split()
            out.append((what, host, float(at), int(pid)))
        return out

    def started(self, host: str) -> list[float]:
        return [at for what, h, at, _pid in self.effects_lines() if what == "start" and h == host]

    def ended(self, host: str) -> list[float]:
        return [at for what, h, at, _pid in self.effects_lines() if what == "end" and h == host]

    def stop(self) -> None:
        for host in self.hosts.values():
            (host.root / "go").touch()  # let held actions end
            host.proc.stop()
        if hasattr(self, "prometheus"):
            self.prometheus.stop()
        self.am.stop()
        self.etcd.stop()


def peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    edges = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda e: (e[0], e[1]),
    )  # an end before a start at the same instant
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


RAN = ("succeeded", "failed", "timeout", "not_recovered", "running")


def check_concurrency(fleet: Fleet) -> None:
    """Never more than the slots in a disruptive action: from the journals' rung times and
    from the actions' own start/end lines, over the fleet and per rack. A killed host's
    restart ended when it was killed."""
    killed = fleet.killed
    journal: dict[str, list[tuple[float, float]]] = {}
    for host in fleet.hosts.values():
        journal[host.name] = [(r["started"], r["ended"] or killed.get(host.name, time.time()))
                              for r in host.attempts() if r["outcome"] in RAN]  # fmt: skip
    effects: dict[str, list[tuple[float, float]]] = {}
    for what, name, at, pid in fleet.effects_lines():
        if what == "start":
            ends = [a for w, h, a, p in fleet.effects_lines() if w == "end" and p == pid]
            end = ends[0] if ends else killed.get(name, time.time())
            effects.setdefault(name, []).append((at, end))
    for source in (journal, effects):
        everything = [i for each in source.values() for i in each]
        assert peak(everything) <= FLEET_SLOTS, source
        for rack in ("r1", "r2"):
            in_rack = [i for name, each in source.items() if fleet[name].rack == rack for i in each]
            assert peak(in_rack) <= RACK_SLOTS, (rack, source)


def ready(host: Host) -> bool:
    return httpx.get(f"{host.url}/-/ready").status_code == 200


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    started = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        yield started
    finally:
        started.stop()


def test_a_fault_on_two_hosts_both_remediate(fleet: Fleet) -> None:
    fleet.quiet()
    for name in ("h11", "h17"):
        fleet[name].fault()
    for name in ("h11", "h17"):
        wait_until(partial(lambda n: fleet[n].outcomes() == ["succeeded"], name), timeout=60,
                   what=f"{name} to restart once and recover")  # fmt: skip
        assert fleet[name].outcomes("gentle") == ["not_recovered"]  # the gentle rung first
        assert fleet[name].metric("medic_fleet_guard_answers_total", answer="ok") == 1
        # One lease and one revoke per remediation (a transaction lost to the other host's
        # race for the same slot is retried with the same lease).
        for op in ("grant", "revoke"):
            assert fleet[name].metric("medic_fleet_etcd_requests_total", op=op, result="ok") == 1
        assert fleet[name].metric("medic_fleet_held_rungs", reason="limit") == 0
        assert len(fleet.started(name)) == 1
    check_concurrency(fleet)


def test_a_storm_on_eight_hosts_is_held_alerted_and_released_three_at_a_time(
    fleet: Fleet,
) -> None:
    fleet.quiet()
    storm = ["h12", "h13", "h14", "h15", "h18", "h19", "h20", "h21"]
    for name in storm:
        fleet[name].fault()
    # 8 of 12 hosts (67 %) have the failure: over the 50 % guard, every restart is held.
    for name in storm:
        wait_until(partial(lambda n: fleet[n].metric("medic_fleet_held_rungs", reason="limit")
                           == 1, name),
                   timeout=60, what=f"{name}'s restart to be held")  # fmt: skip
    for name in storm:
        held = fleet[name].fleet()["held"]
        assert [h["outcome"] for h in held] == ["held_fleet_limit"]
        assert "8 of 12 hosts (67%) have model_loading_failure (budget 50%)" in held[0]["detail"]
        assert fleet[name].outcomes() == ["held_fleet_limit"]  # journaled; nothing ran
        assert fleet.started(name) == []

    def alerted() -> bool:
        alerts = fleet.am.http("GET", "/api/v2/alerts").json()
        return any(a["labels"]["alertname"] == "MedicFleetLimitReached"
                   and a["labels"].get("reason") == "limit" for a in alerts)  # fmt: skip

    wait_until(alerted, timeout=30, what="MedicFleetLimitReached to reach Alertmanager")
    status = subprocess.run(
        [sys.executable, "-m", "exporter", "fleet", "status", "--config", str(fleet["h12"].config),
         "--url", fleet["h12"].url],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "hosts holding rungs: 8" in status
    assert "model_loading_failure: over - the fleet: 8 of 12 hosts (67%)" in status
    assert "held on this host:" in status and "held_fleet_limit" in status
    # A person decides it is safe: one host through the CLI, the rest through the API.
    released = subprocess.run(
        [sys.executable, "-m", "exporter", "fleet", "release", "--config",
         str(fleet["h12"].config), "--url", fleet["h12"].url],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "released 1 held rung(s)" in released
    for name in storm[1:]:
        answer = httpx.post(f"{fleet[name].url}/api/v1/fleet/release", json={}, timeout=5)
        assert answer.status_code == 200 and len(answer.json()["released"]) == 1
    for name in storm:
        wait_until(partial(lambda n: fleet[n].outcomes() == ["held_fleet_limit", "succeeded"],
                           name),
                   timeout=90, what=f"{name} to restart once after the release")  # fmt: skip
        assert len(fleet.started(name)) == 1 and len(fleet.ended(name)) == 1
    check_concurrency(fleet)
    slot_waits = [fleet[n].metric("medic_fleet_wait_seconds_count") for n in storm]
    assert slot_waits == [1.0] * len(storm)


def test_a_killed_slot_holder_frees_its_slot_after_the_lease_ttl(fleet: Fleet) -> None:
    fleet.quiet()
    holders, waiting = ["h16", "h21", "h11"], fleet["h20"]
    before = {n: len(fleet.started(n)) for n in [*holders, "h20"]}
    ended = {n: len(fleet.ended(n)) for n in holders}
    for name in holders:
        fleet[name].fault(hold=True)  # their restarts run until told to finish
    for name in holders:
        wait_until(partial(lambda n: len(fleet.started(n)) == before[n] + 1, name), timeout=60,
                   what=f"{name}'s restart to start")  # fmt: skip
    waiting.fault()
    # It reaches its restart and waits: every fleet slot is taken.
    wait_until(lambda: waiting.outcomes("gentle")[-1:] == ["not_recovered"], timeout=60,
               what="h20's gentle rung to end")  # fmt: skip
    holders_now = fleet.etcd.members[0].post("kv/range", {
        "key": "L21lZGljL2ZsZWV0L3Nsb3RzL2ZsZWV0Lw==",  # /medic/fleet/slots/fleet/
        "range_end": "L21lZGljL2ZsZWV0L3Nsb3RzL2ZsZWV0MA==",
    })  # fmt: skip
    assert int(holders_now.get("count", 0)) == FLEET_SLOTS
    assert len(fleet.started("h20")) == before["h20"]
    dead = fleet["h16"]
    action_pid = [p for w, h, _a, p in fleet.effects_lines() if w == "start" and h == "h16"][-1]
    dead.proc.proc.send_signal(signal.SIGKILL)  # the host dies: medic and its restart
    dead.proc.proc.wait(10)
    os.kill(action_pid, signal.SIGKILL)
    killed_at = fleet.killed["h16"] = time.time()
    wait_until(lambda: len(fleet.started("h20")) == before["h20"] + 1, timeout=30,
               what="h20 to take the dead host's slot")  # fmt: skip
    took = fleet.started("h20")[-1]
    assert took >= killed_at + 1.0, "the slot was free before the dead holder's lease expired"
    assert [len(fleet.ended(n)) for n in ("h21", "h11")] == [ended["h21"], ended["h11"]]
    for name in ("h21", "h11"):
        fleet[name].finish()
    for host in (fleet["h21"], fleet["h11"], waiting):
        wait_until(partial(lambda h: h.outcomes()[-1:] == ["succeeded"], host), timeout=60,
                   what=f"{host.name} to recover")  # fmt: skip
    check_concurrency(fleet)


def test_the_etcd_leader_dies_mid_storm_and_no_slot_is_granted_twice(fleet: Fleet) -> None:
    fleet.quiet()
    storm = ["h12", "h13", "h14", "h18", "h19"]  # 5 of 12: within the guard's 50 %
    before = {name: len(fleet.started(name)) for name in storm}
    for name in storm:
        (fleet[name].root / "seconds").write_text("1.5")
        fleet[name].fault()
    wait_until(lambda: any(len(fleet.started(n)) > before[n] for n in storm), timeout=60,
               what="the storm's first restart")  # fmt: skip
    leader = fleet.etcd.leader()
    assert leader is not None
    leader.kill()
    for name in storm:
        wait_until(partial(lambda n: fleet[n].outcomes()[-1:] == ["succeeded"]
                           and len(fleet.started(n)) == before[n] + 1, name), timeout=90,
                   what=f"{name} to restart once despite the leader change")  # fmt: skip
    assert fleet.etcd.leader() not in (None, leader)
    check_concurrency(fleet)


def test_prometheus_down_holds_fail_closed_hosts_and_lets_fail_open_ones_run(
    fleet: Fleet,
) -> None:
    fleet.quiet()
    closed, opened = fleet["h15"], fleet["h22"]
    fleet.prometheus.stop()
    try:
        for host in (closed, opened):
            host.fault()
            # Prometheus is down, so the alert comes to Alertmanager the way it would from
            # another Prometheus replica: with the shipped rule's labels.
            fleet.am.post_alert({
                "alertname": "MedicModelFileMissing", "instance": host.instance, "job": "medic",
                "rack": host.rack, "severity": "critical",
                "medic_failure_type": "model_loading_failure",
            })  # fmt: skip
        wait_until(lambda: opened.outcomes()[-1:] == ["succeeded"], timeout=60,
                   what="the fail-open host to run its restart")  # fmt: skip
        wait_until(lambda: closed.metric("medic_fleet_held_rungs", reason="unknown") == 1,
                   timeout=60, what="the fail-closed host to hold its restart")  # fmt: skip
        held = closed.fleet()["held"]
        assert held[0]["outcome"] == "held_fleet_unknown"
        assert "cannot ask Prometheus" in held[0]["detail"]
        assert opened.metric("medic_fleet_guard_answers_total", answer="unknown") >= 1
    finally:
        fleet.prometheus.start_again()
    # The fleet's view is back: the held restart runs by itself.
    wait_until(lambda: closed.outcomes()[-1:] == ["succeeded"], timeout=90,
               what="the held restart to run once Prometheus answers")  # fmt: skip
    assert "held_fleet_unknown" in closed.outcomes()
    check_concurrency(fleet)
