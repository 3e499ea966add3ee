"""Real Alertmanager bodies and a medic that routes them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from tests.helpers import serving, wait_until

SHARED = Path(__file__).parents[1] / "fixtures" / "alertmanager"
FIRING: dict[str, Any] = json.loads((SHARED / "alertmanager-firing.json").read_text())
RESOLVED: dict[str, Any] = json.loads((SHARED / "alertmanager-resolved.json").read_text())

ROUTES = """
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart: {{type: in_process}}
  failures:
    generation_pipeline_error: {{ladder: [restart]}}
    network_error: {{ladder: [restart]}}
webhook:
  failure_type_annotation: medic_failure_type
  routes:
    - matchers: ['alertname="LabFlagHigh"', 'severity=~"critical|page"']
      failure_type: generation_pipeline_error
{extra}
"""


def body(template: dict[str, Any], **alert: Any) -> dict[str, Any]:
    """A copy of a real body with the first alert's fields changed."""
    out = copy.deepcopy(template)
    out["alerts"][0].update(alert)
    return out


@pytest.fixture
def webhook_medic(tmp_path: Path) -> Iterator[tuple[Medic, str]]:
    medic = Medic(parse_config(f"data_dir: {tmp_path}\n" + ROUTES.format(extra=""), env={}))
    medic.actions.register("restart", lambda: True)
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        yield medic, url
