"""kill -9 at random instants under a flood: zero accepted episodes lost, zero actions doubled.

A real `medic run` takes Alertmanager notifications (new episodes of three failure types,
duplicates, resolveds) from a client that behaves like Alertmanager: a notification that
gets no 2xx is sent again until one does. Meanwhile medic is killed with SIGKILL at random
moments (often while a command runs, and while ladders of the same type wait) and started
again on the same port, at least 20 times. At the end:

- every alert that was answered `accepted` in a 202 has exactly one episode, in a final
  state, with the final record its state implies;
- the commands' own file (one line per real execution, with its attempt id) and the
  journal's attempts that say the command ran are the same set: nothing ran twice, nothing
  ran unrecorded, no record claims a run that did not happen;
- no rung of any episode ran twice.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from exporter.recovery.types import RAN
from exporter.storage.sqlite import DB_FILE
from tests.e2e.stack import free_port
from tests.helpers import MedicProcess, wait_until
from tests.webhook.conftest import FIRING, body

KILLS = 22
STARTS_AT = "2026-11-22T02:36:41.168Z"
CONFIG = """
data_dir: {data}
log_level: warning
recovery:
  cooldown: {{base: 0s}}
  queue_size: 100000
  max_waiting_per_type: 100000
  rate_limit: {{actions: 1000000, per: 1s}}
  interrupted: retry_once
  action_breaker_failures: 1000000  # keep the failing first rung running, every time
  actions:
    quick: {{type: command, argv: [sh, -c, 'echo "$MEDIC_ATTEMPT $MEDIC_EPISODE" >> {log}']}}
    slow:
      type: command
      argv: [sh, -c, 'echo "$MEDIC_ATTEMPT $MEDIC_EPISODE" >> {log};
                      sleep $${{MEDIC_LABEL_NAP:-0.1}}']  # $${{ : a literal ${{ for the shell
    fails:
      type: command
      argv: [sh, -c, 'echo "$MEDIC_ATTEMPT $MEDIC_EPISODE" >> {log}; exit 3']
  failures:
    generation_pipeline_error: {{ladder: [quick]}}
    vram_exhaustion: {{ladder: [slow]}}
    network_error: {{ladder: [fails, quick]}}
    hardware_optimization_failure: {{ladder: [slow]}}  # aimed kills: idle, a 2 s command
webhook:
  routes:
    - {{matchers: ['kind="gpe"'], failure_type: generation_pipeline_error}}
    - {{matchers: ['kind="vram"'], failure_type: vram_exhaustion}}
    - {{matchers: ['kind="net"'], failure_type: network_error}}
    - {{matchers: ['kind="hw"'], failure_type: hardware_optimization_failure}}
"""
COMMANDS = ("quick", "slow", "fails")
FINAL_RECORD = {  # an episode's final state -> the record that says so (None: its last rung)
    "succeeded": None,
    "exhausted": "ladder",
    "cancelled": "ladder",
    "interrupted": "ladder",
}
LAST_RUNG = {"gpe": "quick", "vram": "slow", "net": "quick", "hw": "slow"}


def alert(n: int, kind: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        **body(FIRING)["alerts"][0],
        "status": status,
        "labels": {"alertname": "Crash", "instance": "127.0.0.1:9100", "kind": kind, **labels},
        "fingerprint": f"{n:016x}",
        "startsAt": STARTS_AT,
        "endsAt": STARTS_AT if status == "resolved" else "0001-01-01T00:00:00Z",
    }


class RetryingSender:
    """Sends notifications until each gets a 2xx, as Alertmanager does; records answers."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.random = random.Random(seed)
        self.accepted: set[str] = set()
        self.kinds: dict[str, str] = {}
        self.pending: list[dict[str, Any]] = []
        self.sent = self.answered = 0
        self.stop_new = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._next = 0

    def _notification(self) -> dict[str, Any]:
        alerts = []
        for _ in range(self.random.randint(1, 3)):
            roll = self.random.random()
            if roll < 0.65 or not self.kinds:  # a new episode
                self._next += 1
                # vram's ladder is slow and one runs at a time: a fifth of the flood keeps
                # that type busy (waiters behind it) without outgrowing what it can drain.
                kind = self.random.choices(("gpe", "vram", "net"), (2, 1, 2))[0]
                self.kinds[f"{self._next:016x}@{STARTS_AT}"] = kind
                alerts.append(alert(self._next, kind))
            else:  # a duplicate, or the resolve, of an episode seen before
                key = self.random.choice(list(self.kinds))
                n = int(key.split("@")[0], 16)
                status = "resolved" if roll > 0.85 else "firing"
                alerts.append(alert(n, self.kinds[key], status))
        return {**body(FIRING), "alerts": alerts}

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=5) as client:
                while not (self.stop_new.is_set() and not self.pending):
                    if not self.pending and not self.stop_new.is_set():
                        self.pending.append(self._notification())
                    if self.pending:
                        self._send(client, self.pending[0])
                    time.sleep(0.015)  # pacing of the load, not synchronisation
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.done.set()

    def _send(self, client: httpx.Client, notification: dict[str, Any]) -> None:
        self.sent += 1
        try:
            response = client.post("/api/v1/alerts", json=notification)
        except httpx.HTTPError:
            return  # medic is down or was killed mid-request: send it again
        if response.status_code >= 500:
            return
        assert response.status_code == 202, response.text
        self.answered += 1
        self.pending.pop(0)
        for sent, answer in zip(notification["alerts"], response.json()["alerts"], strict=True):
            if answer["result"] == "accepted":
                self.accepted.add(f"{sent['fingerprint']}@{STARTS_AT}")


def open_episodes(db_path: Path) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute(
            "SELECT COUNT(*) FROM recovery_episodes WHERE state IN ('queued', 'running')"
        ).fetchone()[0])  # fmt: skip
    finally:
        db.close()


def test_kill_9_at_random_instants_loses_nothing_and_doubles_nothing(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    log, data = tmp_path / "runs.log", tmp_path / "data"
    config = tmp_path / "medic.yml"
    config.write_text(CONFIG.format(data=data, log=log))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seed = int(os.environ.get("MEDIC_CRASH_SEED", "20261201"))  # vary it to explore
    chance = random.Random(seed)

    def start() -> MedicProcess:
        proc = medic_process(["--config", str(config), "--listen", f"127.0.0.1:{port}"])

        def serving() -> bool:
            if proc.proc.poll() is not None:
                raise AssertionError(f"medic exited {proc.proc.returncode}:\n{proc.log()}")
            try:
                return httpx.get(f"{url}/-/healthy", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(serving, timeout=20, what="medic to serve after a restart")
        return proc

    def aimed_kill(n: int) -> bool:
        """Start a 2 s command on an idle failure type and kill medic while it runs."""
        key = f"{n:016x}@{STARTS_AT}"
        try:
            notification = {**body(FIRING), "alerts": [alert(n, "hw", nap="2")]}
            answer = httpx.post(f"{url}/api/v1/alerts", json=notification, timeout=5)
        except httpx.HTTPError:
            return False
        if answer.status_code != 202 or answer.json()["accepted"] != 1:
            return False
        sender.accepted.add(key)
        sender.kinds[key] = "hw"
        try:
            wait_until(lambda: log.exists() and key in log.read_text(), timeout=10,
                       what="the aimed command to start")  # fmt: skip
        except AssertionError:
            return False
        return True

    proc = start()
    sender = RetryingSender(url, seed=seed + 1)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    kills = 0
    try:
        while kills < KILLS:
            # Random instants (some right after start-up, while episodes resume), and every
            # fifth kill aimed at a command that is running.
            if not (kills % 5 == 2 and aimed_kill(1_000_000 + kills)):
                time.sleep(chance.uniform(0.0, 0.2) if kills % 4 == 0 else chance.uniform(0.1, 0.7))
            proc.proc.kill()
            proc.proc.wait(5)
            kills += 1
            proc = start()
        sender.stop_new.set()
        assert sender.done.wait(60), "notifications still refused a minute after the last kill"
        assert sender.error is None, sender.error
        try:
            wait_until(lambda: open_episodes(data / DB_FILE) == 0, timeout=120,
                       what="every open episode to reach its final state")  # fmt: skip
        except AssertionError:
            metrics = httpx.get(f"{url}/metrics").text.splitlines()
            shown = [m for m in metrics if m.startswith("medic_recovery")]
            raise AssertionError("\n".join(["episodes stay open; medic says:", *shown])) from None
        assert proc.terminate() == 0
    finally:
        sender.stop_new.set()
        thread.join(10)

    db = sqlite3.connect(data / DB_FILE)
    states = dict(db.execute("SELECT dedup_key, state FROM recovery_episodes").fetchall())
    attempts = db.execute(
        "SELECT id, dedup_key, action, outcome, rung FROM recovery_attempts"
    ).fetchall()
    db.close()
    lines = [line.split() for line in log.read_text().splitlines()]

    # Nothing lost: every accepted episode is there, and final.
    assert len(sender.accepted) > 200, "the flood was too small to mean anything"
    lost = [key for key in sender.accepted if states.get(key) not in FINAL_RECORD]
    assert not lost, lost[:10]
    # Nothing doubled: real executions and the records that say "it ran" are the same set.
    executed = Counter(int(attempt_id) for attempt_id, _ in lines)
    assert max(executed.values()) == 1  # no attempt ran twice
    recorded = {a for a, _, action, outcome, _ in attempts if action in COMMANDS and outcome in RAN}
    assert set(executed) == recorded
    # No rung of an episode ran twice, and each final state has its one final record.
    per_rung = Counter((key, rung) for a, key, _, _, rung in attempts if a in recorded)
    assert max(per_rung.values()) == 1
    finals = Counter((key, action, outcome) for _, key, action, outcome, _ in attempts)
    for key in sender.accepted:
        state = states[key]
        action = FINAL_RECORD[state] or LAST_RUNG[sender.kinds[key]]
        assert finals[(key, action, state)] == 1, (key, state)
    resumed = Counter(
        line.rsplit(": ", 1)[1]
        for path in tmp_path.glob("medic-*.log")
        for line in path.read_text().splitlines()
        if "mid-rung when medic stopped" in line
    )
    assert resumed["adopted"] >= 1, resumed  # at least one aimed kill caught its command
    print(
        f"\n{kills} kills, {sender.sent} requests ({sender.answered} answered 202), "
        f"{len(sender.accepted)} accepted episodes, {len(executed)} executions, 0 lost, "
        f"0 doubled; final states {dict(Counter(states[k] for k in sender.accepted))}; "
        f"rungs in flight at a kill: {dict(resumed)}"
    )
