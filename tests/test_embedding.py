"""Embedding medic: config forms, context manager, background server, checks and actions."""

from __future__ import annotations

from pathlib import Path

import httpx

from exporter import Medic
from exporter.checks import Observation
from tests.helpers import wait_until

CONFIG = """
data_dir: {data}
checks:
  - {{name: queue_ok, type: in_process, interval: 1h}}
recovery:
  actions:
    drain: {{type: in_process}}
  failures:
    system_resource_error: {{verify: [queue_ok], settle_delay: 0s, ladder: [drain]}}
"""


def test_background_server_with_app_checks_and_actions(tmp_path: Path) -> None:
    queue = {"depth": 500}

    def queue_ok() -> Observation:
        depth = queue["depth"]
        return Observation(problems=(f"{depth} queued",) if depth > 100 else ())

    medic = Medic(CONFIG.format(data=tmp_path))  # YAML text
    medic.register_check("queue_ok", queue_ok)
    medic.register_action("drain", lambda: queue.update(depth=0) or True)
    server = medic.serve_in_background()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        wait_until(lambda: httpx.get(f"{server.url}/-/ready").status_code == 200, what="ready")
        assert (
            'medic_check_success{check="queue_ok"} 0.0' in httpx.get(f"{server.url}/metrics").text
        )
        assert medic.report_failure("system_resource_error").accepted
        assert medic.recovery.wait_idle(10)
        body = httpx.get(f"{server.url}/api/v1/recoveries").json()
        assert [(a["action"], a["outcome"]) for a in body["attempts"]] == [("drain", "succeeded")]
        assert body["attempts"][0]["detail"] == "verified by queue_ok"
    finally:
        server.stop()
    assert not medic.ready()


def test_config_as_mapping_or_path_and_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "medic.yml"
    path.write_text(f"data_dir: {tmp_path}\n")
    assert Medic(path).config.data_dir == tmp_path
    with Medic({"data_dir": str(tmp_path), "checks": []}) as medic:
        wait_until(medic.ready, what="ready")
        medic.register_check("late", lambda: True, interval=3600)  # after start: scheduled
        wait_until(lambda: "late" in medic.health.results(), what="the late check to run")
    assert not medic.ready()
