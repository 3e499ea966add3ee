"""Every Grafana panel's query, run by a real Prometheus against a real medic (fake GPUs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.gpu import fakenvml
from tests.e2e.stack import Prometheus
from tests.helpers import MedicProcess, wait_until
from tests.webhook.conftest import FIRING

ROOT = Path(__file__).parents[2]
MEDIC = """
data_dir: {work}/data
checks:
  - {{name: host_memory, type: host_memory, interval: 1s, min_available_ratio: 0}}
  - {{name: gpu, type: gpu, expected: 2, interval: 1s, nvml_module: exporter.gpu.fakenvml}}
  - {{name: disk_root, type: disk, path: /, interval: 1s, min_avail_ratio: 0}}
  - {{name: model, type: path, path: {work}/model.bin, interval: 1s}}
breakers:
  - {{name: generate}}
recovery:
  actions:
    noop: {{type: command, argv: ["true"]}}
  failures:
    generation_pipeline_error: {{ladder: [noop]}}
webhook:
  routes:
    - {{matchers: ['alertname="LabFlagHigh"'], failure_type: generation_pipeline_error}}
"""


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "grafana" / "medic-dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("dash")
    (work / "model.bin").write_bytes(b"w")
    state = work / "nvml.json"
    nvml = fakenvml.make_state(2)
    state.write_text(json.dumps(nvml))
    (work / "medic.yml").write_text(MEDIC.format(work=work))
    medic = MedicProcess(["--config", str(work / "medic.yml")], work / "medic.log",
                         env={fakenvml.ENV: str(state)})  # fmt: skip
    prom = None
    try:
        url = medic.wait_listening()
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="medic ready")
        prom = Prometheus(work, "groups: []\n", url.removeprefix("http://"), "127.0.0.1:9")
        prom.wait_ready()
        # Give every panel something to show: an XID, a recovery, webhook traffic. The XID
        # watcher only counts events that come after it started listening.
        wait_until(lambda: "XID watcher listening" in medic.log(), what="the XID watcher")
        nvml["xid_events"] = [{"gpu": 1, "xid": 79}]
        state.write_text(json.dumps(nvml))
        httpx.post(f"{url}/api/v1/failures", json={"failure_type": "generation_pipeline_error"})
        httpx.post(f"{url}/api/v1/alerts", json=FIRING)
        yield prom
    finally:
        if prom is not None:
            prom.stop()
        medic.stop()


@pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=lambda v: str(v)[:60])
def test_panel_query_returns_series(prometheus: Prometheus, title: str, expr: str) -> None:
    query = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")

    def series() -> list[dict[str, Any]]:
        return prometheus.query(query)  # raises on a query Prometheus cannot parse

    wait_until(series, timeout=20, what=f"{title!r} to return a series for {query}")


def test_dashboard_is_generated_from_its_source() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "grafana" / "medic-dashboard.json").read_text() == module.render()


def test_dashboard_shape_for_grafana_10() -> None:
    dashboard = json.loads((ROOT / "grafana" / "medic-dashboard.json").read_text())
    assert dashboard["uid"] == "medic-overview" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["instance"]["query"]["query"] == "label_values(medic_up, instance)"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all('instance=~"$instance"' in t["expr"] for t in panel["targets"])
