"""Every Grafana panel's query, run by a real Prometheus against a real medic (fake GPUs)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.gpu import fakenvml
from tests.e2e.stack import Prometheus
from tests.gpu.conftest import FakeNvml
from tests.helpers import MedicProcess, wait_until
from tests.webhook.conftest import FIRING

ROOT = Path(__file__).parents[2]
MEDIC = """
data_dir: {work}/data
checks:
  - {{name: host_memory, type: host_memory, interval: 1s, min_available_ratio: 0}}
  - {{name: gpu, type: gpu, expected: 3, interval: 1s, nvml_module: exporter.gpu.fakenvml}}
  - {{name: disk_root, type: disk, path: /, interval: 1s, min_avail_ratio: 0}}
  - {{name: model, type: path, path: {work}/model.bin, interval: 1s}}
  - {{name: voices, type: path, path: {work}/voices, kind: dir, interval: 1s}}
breakers:
  - {{name: generate}}
recovery:
  action_breaker_failures: 1
  cooldown: {{base: 0s}}
  actions:
    broken: {{type: command, argv: ["false"]}}
    fine: {{type: command, argv: ["true"]}}
  failures:
    generation_pipeline_error: {{ladder: [broken], settle_delay: 0s}}
    network_error: {{ladder: [fine], settle_delay: 0s}}
webhook:
  routes:
    - {{matchers: ['alertname="LabFlagHigh"'], failure_type: generation_pipeline_error}}
"""
# The scenario: 2 fake GPUs of 3 expected, a watched directory missing, an XID, a ladder
# whose only action fails (exhausted; its breaker opens after one failure), and, every few
# seconds while the tests run, webhook traffic and a ladder whose action succeeds (panels
# over $__rate_interval then have something in their window however long the tests take).
# These panels must show a value above 0 in it, not merely a series.
NON_ZERO = {
    "Checks failing", "GPUs missing", "Ladders exhausted (24h)", "Breakers open",
    "Journal up", "GPU memory used vs total", "XID errors counted since medic started",
    "GPUs visible vs expected, NVML up", "Host memory available", "Disk used",
    "Model files present", "Checks passing", "Seconds since each check last passed",
    "Circuit breakers now", "Recovery attempts by outcome", "Webhook requests by status code",
    "Webhook alerts by result", "GPU verdict: what each GPU needs now",
}  # fmt: skip
# Healthy in the scenario: these read 0 (and must exist).
ZERO = {"Checks stuck", "Fleet: disruptive actions, held rungs, slots"}


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
    gpus = FakeNvml(work / "nvml.json", 2)
    (work / "medic.yml").write_text(MEDIC.format(work=work))
    medic = MedicProcess(["--config", str(work / "medic.yml")], work / "medic.log",
                         env={fakenvml.ENV: str(gpus.path)})  # fmt: skip
    prom = None
    stop, feeder = threading.Event(), None
    try:
        url = medic.wait_listening()
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="medic ready")
        prom = Prometheus(work, "groups: []\n", url.removeprefix("http://"), "127.0.0.1:9")
        prom.wait_ready()
        # Give every panel something to show: an XID, a recovery, webhook traffic. The XID
        # watcher only counts events that come after it started listening.
        wait_until(lambda: "XID watcher listening" in medic.log(), what="the XID watcher")
        gpus.state["xid_events"] = [{"gpu": 1, "xid": 79}]
        gpus.write()
        httpx.post(f"{url}/api/v1/failures", json={"failure_type": "generation_pipeline_error"})

        def traffic() -> None:
            while True:
                httpx.post(f"{url}/api/v1/alerts", json=FIRING)
                httpx.post(f"{url}/api/v1/failures", json={"failure_type": "network_error"})
                if stop.wait(5):
                    return

        feeder = threading.Thread(target=traffic, daemon=True)
        feeder.start()
        yield prom
    finally:
        stop.set()
        if feeder is not None:
            feeder.join(10)
        if prom is not None:
            prom.stop()
        medic.stop()


def grafana_vars(expr: str) -> str:
    return expr.replace("$instance", ".*").replace("$__rate_interval", "1m")


@pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=lambda v: str(v)[:60])
def test_panel_query_returns_series(prometheus: Prometheus, title: str, expr: str) -> None:
    query = grafana_vars(expr)

    def series() -> list[dict[str, Any]]:
        return prometheus.query(query)  # raises on a query Prometheus cannot parse

    wait_until(series, timeout=20, what=f"{title!r} to return a series for {query}")


def test_every_panel_is_expected_zero_or_not() -> None:
    titles = {title for title, _ in panel_queries()}
    assert titles == NON_ZERO | ZERO | {"GPU utilization", "GPU temperature", "GPU power",
                                        "Recoveries in progress and cooling down"}  # fmt: skip


@pytest.mark.parametrize(("title", "expr"),
                         [(t, e) for t, e in panel_queries() if t in NON_ZERO | ZERO],
                         ids=lambda v: str(v)[:60])  # fmt: skip
def test_panels_show_what_the_scenario_did(prometheus: Prometheus, title: str, expr: str) -> None:
    query = grafana_vars(expr)

    def values() -> list[float]:
        return [float(r["value"][1]) for r in prometheus.query(query)]

    if title in ZERO:
        wait_until(values, timeout=20, what=f"{title!r}: a series")
        assert all(v == 0 for v in values()), (title, values())
    else:
        wait_until(lambda: any(v > 0 for v in values()), timeout=30,
                   what=f"{title!r} to show a value above 0 for {query}")  # fmt: skip


def test_the_recovery_annotation_marks_the_action(prometheus: Prometheus) -> None:
    dashboard = json.loads((ROOT / "grafana" / "medic-dashboard.json").read_text())
    [annotation] = dashboard["annotations"]["list"]
    found = wait_until(lambda: prometheus.query(grafana_vars(annotation["expr"])), timeout=30,
                       what="the annotation query to mark the failed action")  # fmt: skip
    marks = {(r["metric"]["action"], r["metric"]["outcome"]) for r in found}  # type: ignore[attr-defined]
    assert marks <= {("fine", "succeeded"), ("broken", "failed")} and marks, marks
    for mark in found:  # type: ignore[attr-defined]
        assert set(annotation["tagKeys"].split(",")) <= set(mark["metric"])


def test_a_never_passed_check_is_left_out_of_the_staleness_axis(prometheus: Prometheus) -> None:
    [expr] = [e for t, e in panel_queries() if t == "Seconds since each check last passed"]
    wait_until(lambda: prometheus.query(grafana_vars(expr)), timeout=20, what="staleness")
    checks = {r["metric"]["check"]: float(r["value"][1])
              for r in prometheus.query(grafana_vars(expr))}  # fmt: skip
    assert "voices" not in checks  # never passed: its 0 would read as 56 years
    assert checks and max(checks.values()) < 3600


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
    top = [p for p in dashboard["panels"] if p["gridPos"]["y"] == 1]
    assert [p["type"] for p in top] == ["stat"] * 6
    assert sum(p["gridPos"]["w"] for p in top) == 24
    tables = [p for p in dashboard["panels"] if p["type"] == "table"]
    assert [t["title"] for t in tables] == ["GPU verdict: what each GPU needs now",
                                            "Circuit breakers now"]  # fmt: skip
    for table in tables:
        assert table["targets"][0]["format"] == "table" and table["transformations"]
    for annotation in dashboard["annotations"]["list"]:
        assert 'instance=~"$instance"' in annotation["expr"]
