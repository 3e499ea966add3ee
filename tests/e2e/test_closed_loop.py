"""metric → alert → webhook → recovery → verified → resolved, with the shipped rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Alertmanager, Prometheus, fast_rules
from tests.helpers import MedicProcess, wait_until
from tests.test_server import value

ROOT = Path(__file__).parents[2]
MEDIC = """
data_dir: {work}/data
server:
  auth: {{bearer_token: {{file: {work}/token}}}}
  public: [metrics, health]  # Prometheus scrapes without the token
checks:
  - {{name: model_a, type: path, path: {work}/models/a.bin, kind: file, interval: 250ms}}
  - {{name: model_b, type: path, path: {work}/models/b.bin, kind: file, interval: 250ms}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    restore_a: {{type: command, argv: [cp, {work}/store/a.bin, {work}/models/a.bin]}}
    restore_b: {{type: command, argv: [cp, {work}/store/b.bin, {work}/models/b.bin]}}
  failures:
    model_loading_failure:
      verify: [model_a, model_b]
      settle_delay: 100ms
      verify_timeout: 1s  # the second rung is the fix here: do not wait long for the first
      ladder: [restore_a, restore_b]
webhook:
  routes:
    - {{matchers: ['medic_failure_type="model_loading_failure"'],
       failure_type: model_loading_failure}}
"""
ALERTMANAGER = """
route:
  receiver: medic
  group_by: [alertname, check]
  group_wait: 0s
  group_interval: 250ms
  repeat_interval: 1h
receivers:
  - name: medic
    webhook_configs:
      - url: {medic}/api/v1/alerts
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: {work}/token}}
"""


class Loop:
    def __init__(self, work: Path, medic: str, prometheus: Prometheus) -> None:
        self.work, self.medic, self.prometheus = work, medic, prometheus

    def attempts(self) -> list[dict[str, Any]]:
        token = (self.work / "token").read_text()
        body = httpx.get(f"{self.medic}/api/v1/recoveries",
                         headers={"authorization": f"Bearer {token}"}).json()  # fmt: skip
        return list(reversed(body["attempts"]))

    def counted(self, action: str, outcome: str) -> float:
        text = httpx.get(f"{self.medic}/metrics").text
        labels = {"failure_type": "model_loading_failure", "action": action, "outcome": outcome}
        return value(text, "medic_recovery_attempts_total", **labels) or 0.0

    def firing(self, check: str) -> bool:
        found = self.prometheus.query(
            f'ALERTS{{alertname="MedicModelFileMissing",check="{check}"}}'
        )
        return any(r["metric"].get("alertstate") == "firing" for r in found)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    work = tmp_path_factory.mktemp("loop")
    (work / "token").write_text("loop-token")
    for folder in ("models", "store"):
        (work / folder).mkdir()
    for name in ("a.bin", "b.bin"):
        (work / "store" / name).write_bytes(b"weights " + name.encode())
        (work / "models" / name).write_bytes(b"weights " + name.encode())
    (work / "medic.yml").write_text(MEDIC.format(work=work))
    medic = MedicProcess(["--config", str(work / "medic.yml")], work / "medic.log")
    am = prometheus = None
    try:
        url = medic.wait_listening()
        am = Alertmanager(ALERTMANAGER.format(medic=url, work=work), work)
        rules = fast_rules(ROOT / "alerts" / "medic.rules.yml")
        prometheus = Prometheus(work, rules, url.removeprefix("http://"),
                                am.url.removeprefix("http://"))  # fmt: skip
        prometheus.wait_ready()
        yield Loop(work, url, prometheus)
    finally:
        for daemon in (prometheus, am):
            if daemon is not None:
                daemon.stop()
        medic.stop()


def test_a_removed_model_file_is_restored_by_the_first_rung(loop: Loop) -> None:
    (loop.work / "models" / "a.bin").unlink()
    wait_until(lambda: loop.counted("restore_a", "succeeded") == 1, timeout=20,
               what="the ladder to restore a.bin")  # fmt: skip
    assert (loop.work / "models" / "a.bin").read_bytes() == b"weights a.bin"
    wait_until(lambda: not loop.firing("model_a"), timeout=20, what="the alert to resolve")
    wait_until(lambda: value(httpx.get(f"{loop.medic}/metrics").text,
                             "medic_webhook_alerts_total", status="resolved",
                             result="resolved"), what="medic to hear it resolved")  # fmt: skip
    assert [(a["action"], a["outcome"]) for a in loop.attempts()] == [("restore_a", "succeeded")]
    assert loop.counted("restore_a", "succeeded") == 1  # exactly once, whatever was resent


def test_when_the_first_rung_does_not_fix_it_the_second_does(loop: Loop) -> None:
    (loop.work / "models" / "b.bin").unlink()
    wait_until(lambda: loop.counted("restore_b", "succeeded") == 1, timeout=20,
               what="the second rung to restore b.bin")  # fmt: skip
    latest = [(a["action"], a["outcome"]) for a in loop.attempts()][-2:]
    assert latest == [("restore_a", "not_recovered"), ("restore_b", "succeeded")]
    wait_until(lambda: not loop.firing("model_b"), timeout=20, what="the alert to resolve")
    assert loop.counted("restore_a", "succeeded") == 1
    assert loop.counted("restore_b", "succeeded") == 1


def test_make_demo_shows_an_alert_remediated() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--once"],
                            capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "medic ran retry_model_download: succeeded" in result.stdout
    assert "the alert is resolved" in result.stdout
