"""A real Alertmanager delivering to a real medic process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Alertmanager
from tests.helpers import MedicProcess, wait_until
from tests.test_server import value

MEDIC = """
data_dir: {data}
checks:
  - {{name: host_memory, type: host_memory, interval: 1h, min_available_ratio: 0}}
server:
  auth: {{bearer_token: {{file: {token}}}}}
  public: [metrics, health]  # Prometheus scrapes without the token
recovery:
  cooldown: {{base: 0s}}
  actions:
    note: {{type: command, argv: [sh, -c, "echo $MEDIC_LABEL_INSTANCE >> {log}"]}}
  failures:
    generation_pipeline_error: {{ladder: [note]}}
webhook:
  routes:
    - matchers: ['alertname=~"Lab.*"']
      failure_type: generation_pipeline_error
identity:  # this medic stands for the test's hosts gpu-a ... gpu-z
  matchers: ['instance=~"gpu-[a-z]"']
"""
# Fast intervals from shared/notes; group_by instance so each instance is its own group.
ALERTMANAGER = """
route:
  receiver: medic
  group_by: [alertname]
  group_wait: 0s
  group_interval: 250ms
  repeat_interval: 1h
  routes:
    - matchers: ['target="wrong-token"']
      receiver: medic-wrong-token
receivers:
  - name: medic
    webhook_configs:
      - url: {url}/api/v1/alerts
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: {token}}}
  - name: medic-wrong-token
    webhook_configs:
      - url: {url}/api/v1/alerts
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: not-the-token}}
"""


class Stack:
    def __init__(self, medic_url: str, am: Alertmanager, actions_log: Path) -> None:
        self.medic_url, self.am, self.actions_log = medic_url, am, actions_log

    def attempts(self, **params: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.medic_url}/api/v1/recoveries", params=params,
                             headers={"authorization": "Bearer e2e-token"})  # fmt: skip
        found: list[dict[str, Any]] = response.json()["attempts"]
        return found

    def medic_metric(self, name: str, **labels: str) -> float:
        return value(httpx.get(f"{self.medic_url}/metrics").text, name, **labels) or 0.0

    def alerts(self, status: str, result: str) -> float:
        return self.medic_metric("medic_webhook_alerts_total", status=status, result=result)

    def ran_for(self) -> list[str]:
        if not self.actions_log.exists():
            return []
        return self.actions_log.read_text().split()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:

    work = tmp_path_factory.mktemp("am")
    token = work / "token"
    token.write_text("e2e-token\n")
    config = work / "medic.yml"
    log = work / "actions.log"
    config.write_text(MEDIC.format(data=work / "data", token=token, log=log))
    medic = MedicProcess(["--config", str(config)], work / "medic.log")
    am: Alertmanager | None = None
    try:
        url = medic.wait_listening()
        am = Alertmanager(ALERTMANAGER.format(url=url, token=token), work)
        yield Stack(url, am, log)
    finally:
        if am is not None:
            am.stop()
        medic.stop()


def test_firing_repeat_resolved_through_a_real_alertmanager(stack: Stack) -> None:
    first = {"alertname": "LabFlagHigh", "instance": "gpu-a", "severity": "critical"}
    stack.am.post_alert(first)
    wait_until(lambda: stack.ran_for() == ["gpu-a"], what="one recovery for gpu-a")
    attempt = stack.attempts()[0]
    assert (attempt["action"], attempt["outcome"], attempt["source"]) == ("note", "succeeded",
                                                                           "alert")  # fmt: skip
    assert attempt["fingerprint"] and attempt["starts_at"]

    # A new alert in the same group makes Alertmanager resend the group, gpu-a included.
    stack.am.post_alert({**first, "instance": "gpu-b"})
    wait_until(lambda: sorted(stack.ran_for()) == ["gpu-a", "gpu-b"], what="gpu-b's recovery")
    wait_until(lambda: stack.alerts("firing", "duplicate") >= 1, what="gpu-a as a duplicate")
    assert stack.ran_for().count("gpu-a") == 1  # no second attempt for the same episode

    stack.am.post_alert(first, resolved=True)
    wait_until(lambda: stack.alerts("resolved", "resolved") >= 1, what="the resolved alert")
    assert sorted(stack.ran_for()) == ["gpu-a", "gpu-b"]


def test_a_wrong_token_is_refused_and_nothing_runs(stack: Stack) -> None:
    failed_before = stack.am.metric(
        "alertmanager_notification_requests_failed_total", integration="webhook"
    )
    stack.am.post_alert({"alertname": "LabWrongToken", "instance": "gpu-z",
                         "target": "wrong-token"})  # fmt: skip
    wait_until(
        lambda: stack.am.metric("alertmanager_notification_requests_failed_total",
                                integration="webhook") > failed_before,
        timeout=15, what="Alertmanager to count the failed delivery",
    )  # fmt: skip
    wait_until(lambda: stack.medic_metric("medic_webhook_requests_total", code="401") >= 1,
               what="medic to count the 401")  # fmt: skip
    assert "gpu-z" not in stack.ran_for()
    assert all(a["dedup_key"] is None or "gpu-z" not in str(a) for a in stack.attempts())
