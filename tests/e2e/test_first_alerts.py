"""The safety-net alerts fire on the *first* occurrence, in a real Prometheus with the shipped
rules: the first XID, a ladder exhausted before Prometheus ever scraped medic, the driver's
verdict on a GPU, and medic going down.

The rules are alerts/medic.rules.yml as shipped, except that this test's copy drops every
`for:` (fast_rules) so that it does not wait minutes; the expressions are the shipped ones.
Each of these failed on the rules before issue 14 (XID and exhausted read 0 in increase()
at a series' first sample; there was no rule for medic down).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter.gpu import fakenvml
from tests.e2e.stack import Prometheus, fast_rules
from tests.gpu.conftest import FakeNvml
from tests.helpers import MedicProcess, wait_until
from tests.test_server import value

ROOT = Path(__file__).parents[2]
MEDIC = """
data_dir: {work}/data
checks:
  - {{name: gpu, type: gpu, expected: 1, interval: 250ms, nvml_module: exporter.gpu.fakenvml}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    broken: {{type: command, argv: ["false"]}}
  failures:
    generation_pipeline_error: {{ladder: [broken], settle_delay: 0s}}
"""


class Scene:
    def __init__(self, medic: MedicProcess, gpus: FakeNvml, prometheus: Prometheus) -> None:
        self.medic, self.gpus, self.prometheus = medic, gpus, prometheus

    def firing(self, alertname: str, **labels: str) -> bool:
        found = self.prometheus.query(f'ALERTS{{alertname="{alertname}"}}')
        return any(
            r["metric"].get("alertstate") == "firing"
            and all(r["metric"].get(k) == v for k, v in labels.items())
            for r in found
        )


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("first")
    gpus = FakeNvml(work / "nvml.json", 1)
    (work / "medic.yml").write_text(MEDIC.format(work=work))
    medic = MedicProcess(["--config", str(work / "medic.yml")], work / "medic.log",
                         env={fakenvml.ENV: str(gpus.path)})  # fmt: skip
    prometheus = None
    try:
        url = medic.wait_listening()
        # A ladder exhausted before Prometheus's first scrape (a fault present at boot, a
        # 30 s scrape interval): Prometheus first sees its counter at 1.
        httpx.post(f"{url}/api/v1/failures", json={"failure_type": "generation_pipeline_error"})
        wait_until(lambda: value(httpx.get(f"{url}/metrics").text,
                                 "medic_recovery_attempts_total", action="ladder",
                                 failure_type="generation_pipeline_error",
                                 outcome="exhausted") == 1,
                   timeout=20, what="the ladder to be exhausted")  # fmt: skip
        rules = fast_rules(ROOT / "alerts" / "medic.rules.yml")
        prometheus = Prometheus(work, rules, url.removeprefix("http://"), "127.0.0.1:9")
        prometheus.wait_ready()
        yield Scene(medic, gpus, prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        medic.stop()


def test_a_ladder_exhausted_before_the_first_scrape_pages(scene: Scene) -> None:
    wait_until(lambda: scene.firing("MedicRecoveryExhausted", outcome="exhausted",
                                    failure_type="generation_pipeline_error"),
               timeout=20, what="MedicRecoveryExhausted to fire")  # fmt: skip


def test_the_first_xid_fires(scene: Scene) -> None:
    wait_until(lambda: "XID watcher listening" in scene.medic.log(), what="the XID watcher")
    # Prometheus has scraped medic already (wait_ready): the XID series is new to it.
    assert not scene.prometheus.query("medic_gpu_xid_errors_total")
    scene.gpus.state["xid_events"] = [{"gpu": 0, "xid": 31}]  # a page fault: RESTART_APP
    scene.gpus.write()
    wait_until(lambda: scene.prometheus.query("medic_gpu_xid_errors_total"), timeout=20,
               what="Prometheus to scrape the XID")  # fmt: skip
    wait_until(lambda: scene.firing("MedicGpuXidAppFault", xid="31", bucket="restart_app"),
               timeout=20, what="MedicGpuXidAppFault to fire on the first XID")  # fmt: skip


def test_the_drivers_verdict_pages_people(scene: Scene) -> None:
    assert not scene.firing("MedicGpuResetNeeded")
    scene.gpus.gpu(0)["recovery_action"] = 1  # NVML_GPU_RECOVERY_ACTION_GPU_RESET
    scene.gpus.write()
    wait_until(lambda: scene.firing("MedicGpuResetNeeded", gpu="0", action="reset_gpu",
                                    severity="critical"),
               timeout=20, what="MedicGpuResetNeeded on the driver's verdict")  # fmt: skip
    for alert in scene.prometheus.query('ALERTS{alertname="MedicGpuResetNeeded"}'):
        assert "medic_failure_type" not in alert["metric"]  # people reset GPUs, not medic


def test_medic_going_down_fires(scene: Scene) -> None:
    # Last in the module: it ends medic.
    assert not scene.firing("MedicDown")
    assert scene.medic.terminate() == 0
    wait_until(lambda: scene.firing("MedicDown", job="medic"), timeout=20,
               what="MedicDown to fire")  # fmt: skip
