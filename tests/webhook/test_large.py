"""A large notification is taken in slices: the same answers as the one-call path."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.webhook import slicing
from tests.helpers import serving, wait_until
from tests.webhook.conftest import FIRING, ROUTES


def many(count: int, **change: Any) -> dict[str, Any]:
    out = copy.deepcopy(FIRING)
    first = out["alerts"][0]
    out["alerts"] = [
        dict(first, fingerprint=f"{n:016x}", labels=dict(first["labels"], n=str(n)), **change)
        for n in range(count)
    ]
    return out


def test_a_10000_alert_notification_is_decided_whole_while_scrapes_go_on(
    tmp_path: Path,
) -> None:
    routes = ROUTES.format(extra="").replace("webhook:\n", "webhook:\n  max_body_bytes: 8MiB\n", 1)
    routes = routes.replace(
        "recovery:\n", "recovery:\n  queue_size: 20000\n  max_waiting_per_type: 20000\n", 1
    )
    text = f"data_dir: {tmp_path}\n{routes}"
    medic = Medic(parse_config(text, env={}))
    medic.actions.register("restart", lambda: True)
    payload = json.dumps(many(10_000)).encode()
    assert len(payload) >= slicing.LARGE
    scrapes: list[int] = []
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        stop = threading.Event()

        def scrape() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    scrapes.append(client.get(f"{url}/metrics").status_code)

        scraper = threading.Thread(target=scrape)
        scraper.start()
        try:
            answer = httpx.post(f"{url}/api/v1/alerts", content=payload, timeout=60,
                                headers={"content-type": "application/json"})  # fmt: skip
        finally:
            stop.set()
            scraper.join(10)
    assert answer.status_code == 202, answer.text[:500]
    summary = answer.json()
    assert summary["accepted"] + summary["duplicate"] == 10_000
    assert len(summary["alerts"]) == 10_000
    assert scrapes and set(scrapes) == {200}


BROKEN: list[tuple[str, Any]] = [
    ("missing fingerprint", lambda b: b["alerts"][7].pop("fingerprint")),
    ("bad status", lambda b: b["alerts"][450].update(status="pending")),
    ("bad version", lambda b: b.update(version="3")),
    ("no alerts", lambda b: b.pop("alerts")),
    ("labels not strings", lambda b: b["alerts"][399].update(labels={"a": 1})),
]


@pytest.mark.parametrize(("name", "breaks"), BROKEN, ids=[n for n, _ in BROKEN])
def test_a_large_invalid_body_gets_the_same_400_as_a_small_one(
    webhook_medic: tuple[Medic, str], name: str, breaks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = webhook_medic
    payload = many(500)
    breaks(payload)

    def problems() -> list[str]:
        answer = httpx.post(f"{url}/api/v1/alerts", json=payload)
        assert answer.status_code == 400, answer.text
        return sorted(answer.json()["problems"])

    whole = problems()
    monkeypatch.setattr(slicing, "LARGE", 0)  # now every body goes through the slices
    assert problems() == whole


@pytest.mark.parametrize("raw", [b"{", b'{"alerts": [1,', b'{"a": 1} x', b"[]", b"\xff"])
def test_malformed_json_in_slices_is_a_clear_400(
    webhook_medic: tuple[Medic, str], raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = webhook_medic
    monkeypatch.setattr(slicing, "LARGE", 0)
    answer = httpx.post(f"{url}/api/v1/alerts", content=raw,
                        headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 400 and answer.json()["problems"]
    assert httpx.get(f"{url}/metrics").status_code == 200
