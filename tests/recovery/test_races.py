"""Races at the door, over real HTTP with real commands: each accepted episode runs exactly
once, whatever arrives beside it, with its failure type idle or busy.

Executions are counted from the file the action appends to (one line per real run, with its
episode), not from medic's own records; the records are then checked against that count.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.storage.sqlite import DB_FILE
from tests.helpers import serving, wait_until
from tests.webhook.conftest import FIRING, RESOLVED, body

CONFIG = """
data_dir: {data}
recovery:
  cooldown: {{base: 0s}}
  workers: {workers}
  queue_size: 10000
  max_waiting_per_type: 10000
  rate_limit: {{actions: 1000000, per: 1s}}
  actions:
    # One line per real run. An episode labelled block=1 then waits on a FIFO: it keeps its
    # failure type (or the only worker) busy until the test opens the gate.
    note:
      type: command
      argv: [sh, -c, 'echo "$MEDIC_EPISODE" >> {log};
                      [ -z "$MEDIC_LABEL_BLOCK" ] || cat {gate} >/dev/null']
  failures:
    generation_pipeline_error: {{ladder: [note]}}
    network_error: {{ladder: [note]}}
webhook:
  routes:
    - {{matchers: ['alertname="Race"'], failure_type: generation_pipeline_error}}
    - {{matchers: ['alertname="Other"'], failure_type: network_error}}
"""


class Door:
    """A medic served on 127.0.0.1 and what its one action did."""

    def __init__(self, medic: Medic, url: str, root: Path) -> None:
        self.medic, self.url, self.root = medic, url, root
        self.log, self.gate = root / "runs.log", root / "gate"

    def runs(self) -> Counter[str]:
        """Real executions per episode key."""
        if not self.log.exists():
            return Counter()
        return Counter(self.log.read_text().split())

    def block(self, alertname: str = "Race") -> str:
        """Start an episode whose run waits at the gate; returns its key once it runs."""
        fp = f"block{alertname}"
        alert = alerting(fp, alertname, block="1")
        response = httpx.post(f"{self.url}/api/v1/alerts", json=alert, timeout=10)
        assert response.json()["accepted"] == 1, response.text
        key = f"{fp}@{alert['alerts'][0]['startsAt']}"
        wait_until(lambda: self.runs()[key] == 1, what="the blocking run to start")
        return key

    def open_gate(self) -> None:
        with open(self.gate, "w") as fifo:
            fifo.write("go\n")

    def episodes(self) -> dict[str, str]:
        """Final state per episode key, from the journal file itself."""
        assert self.medic.recovery.wait_idle(60)
        assert self.medic.db is not None and self.medic.db.flush(10)
        db = sqlite3.connect(self.root / "data" / DB_FILE)
        try:
            rows = db.execute("SELECT dedup_key, state FROM recovery_episodes").fetchall()
            ran = db.execute(
                "SELECT COUNT(*) FROM recovery_attempts WHERE action = 'note' "
                "AND outcome = 'succeeded'"
            ).fetchone()[0]
        finally:
            db.close()
        assert ran == sum(self.runs().values())  # the records say what really ran
        return dict(rows)


def alerting(fingerprint: str, alertname: str = "Race", **labels: str) -> dict[str, Any]:
    alert = {"alertname": alertname, "instance": "127.0.0.1:9100", **labels}
    return body(FIRING, fingerprint=fingerprint, labels=alert,
                startsAt="2026-11-22T02:36:41.168Z")  # fmt: skip


def resolving(fingerprint: str) -> dict[str, Any]:
    labels = {"alertname": "Race", "instance": "127.0.0.1:9100"}
    return body(RESOLVED, fingerprint=fingerprint, labels=labels,
                startsAt="2026-11-22T02:36:41.168Z")  # fmt: skip


@pytest.fixture
def door(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Door]:
    """A medic with `request.param` workers (indirect parametrization; 1 by default)."""
    os.mkfifo(tmp_path / "gate")
    workers = getattr(request, "param", 1)
    text = CONFIG.format(data=tmp_path / "data", log=tmp_path / "runs.log",
                         gate=tmp_path / "gate", workers=workers)  # fmt: skip
    medic = Medic(parse_config(text, env={}))
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        yield Door(medic, url, tmp_path)


async def post_all(url: str, payloads: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """POST each payload after its delay (seconds), all at once, from two clients (an
    Alertmanager HA pair); the per-alert answers in order."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as peer_a,
        httpx.AsyncClient(base_url=url, timeout=30) as peer_b,
    ):

        async def one(index: int, delay: float, payload: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(delay)
            client = peer_a if index % 2 == 0 else peer_b
            response = await client.post("/api/v1/alerts", json=payload)
            assert response.status_code == 202, response.text
            answer: dict[str, Any] = response.json()["alerts"][0]
            return answer

        return list(await asyncio.gather(*(one(i, d, p) for i, (d, p) in enumerate(payloads))))


WORKERS = pytest.mark.parametrize("door", [1, 4], ids=["1-worker", "4-workers"], indirect=True)
BUSY = pytest.mark.parametrize("busy", [False, True], ids=["type-idle", "type-busy"])


@WORKERS
@BUSY
def test_ha_pairs_one_ms_apart_run_each_episode_once(door: Door, busy: bool) -> None:
    blocker = door.block() if busy else None
    pairs = 300
    for start in range(0, pairs, 50):  # 50 pairs in flight at a time
        payloads = []
        for n in range(start, start + 50):
            alert = alerting(f"pair{n:04d}")
            payloads += [(0.0, alert), (0.001, alert)]
        answers = asyncio.run(post_all(door.url, payloads))
        for first, second in zip(answers[::2], answers[1::2], strict=True):
            assert sorted((first["result"], second["result"])) == ["accepted", "duplicate"]
    if busy:
        assert door.runs()[blocker or ""] == 1 and len(door.runs()) == 1  # all still wait
        door.open_gate()
    states = door.episodes()
    runs = door.runs()
    for n in range(pairs):
        key = f"pair{n:04d}@2026-11-22T02:36:41.168Z"
        assert runs[key] == 1, key
        assert states[key] == "succeeded"
    assert max(runs.values()) == 1


@WORKERS
@BUSY
def test_200_concurrent_copies_are_one_episode(door: Door, busy: bool) -> None:
    blocker = door.block() if busy else None
    alert = alerting("copies")
    answers = asyncio.run(post_all(door.url, [(0.0, alert)] * 200))
    assert Counter(a["result"] for a in answers) == {"accepted": 1, "duplicate": 199}
    if busy:
        assert "copies@2026-11-22T02:36:41.168Z" not in door.runs()
        door.open_gate()
    states = door.episodes()
    assert door.runs()["copies@2026-11-22T02:36:41.168Z"] == 1
    assert states["copies@2026-11-22T02:36:41.168Z"] == "succeeded"
    if blocker:
        assert states[blocker] == "succeeded"


@BUSY
def test_a_resolved_while_waiting_cancels_and_nothing_runs(door: Door, busy: bool) -> None:
    # One worker. Busy: the episode waits behind a ladder of its own type. Idle: its type is
    # free but the only worker runs a ladder of another type.
    door.block("Race" if busy else "Other")
    accepted = httpx.post(f"{door.url}/api/v1/alerts", json=alerting("waits")).json()
    assert accepted["accepted"] == 1
    resolved = httpx.post(f"{door.url}/api/v1/alerts", json=resolving("waits")).json()
    assert resolved["alerts"][0]["detail"] == "queued attempt cancelled"
    late = httpx.post(f"{door.url}/api/v1/alerts", json=alerting("waits")).json()
    assert late["alerts"][0]["result"] == "ignored"  # a firing after the resolve: ignored
    door.open_gate()
    states = door.episodes()
    assert "waits@2026-11-22T02:36:41.168Z" not in door.runs()
    assert states["waits@2026-11-22T02:36:41.168Z"] == "cancelled"


@WORKERS
def test_firing_and_resolved_racing_never_run_a_cancelled_episode(door: Door) -> None:
    # 200 episodes, each resolved 1 ms after it fired: a resolve that answered "cancelled"
    # must mean it never ran; otherwise it had started (or already ended) and ran once.
    payloads = []
    for n in range(200):
        payloads += [(0.0, alerting(f"fr{n:03d}")), (0.001, resolving(f"fr{n:03d}"))]
    answers = asyncio.run(post_all(door.url, payloads))
    states = door.episodes()
    runs = door.runs()
    for n in range(200):
        key = f"fr{n:03d}@2026-11-22T02:36:41.168Z"
        fired, resolved = answers[2 * n], answers[2 * n + 1]
        if fired["result"] == "ignored":  # the resolve was first: never accepted
            assert runs[key] == 0 and states[key] == "resolved"
        elif resolved["detail"] == "queued attempt cancelled":
            assert runs[key] == 0 and states[key] == "cancelled", key
        else:
            assert runs[key] == 1 and states[key] == "succeeded", (key, resolved)
