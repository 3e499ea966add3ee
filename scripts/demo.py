"""`make demo`: Prometheus, Alertmanager and medic on this machine, with the shipped rules.

Starts all three on 127.0.0.1 (fake GPUs, so the GPU series exist), prints their URLs,
then deletes the watched model file and narrates how the alert fires, reaches medic, is
remediated by the recovery ladder, verified and resolved. Ctrl-C stops everything.
`--once` exits after the first remediation (exit status 0 when it worked).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.gpu import fakenvml  # noqa: E402
from tests.e2e.stack import Alertmanager, Prometheus, fast_rules  # noqa: E402
from tests.helpers import MedicProcess, wait_until  # noqa: E402

MEDIC = """
data_dir: {work}/data
server:
  auth: {{bearer_token: {{file: {work}/token}}}}
  public: [metrics, health]  # Prometheus scrapes without the token
checks:
  - {{name: host_memory, type: host_memory, interval: 1s}}
  - {{name: gpu, type: gpu, expected: 2, interval: 1s, nvml_module: exporter.gpu.fakenvml}}
  - {{name: model_weights, type: path, path: {work}/models/tts.safetensors, kind: file,
     interval: 500ms}}
recovery:
  cooldown: {{base: 10s}}
  actions:
    retry_model_download:
      type: command
      argv: [cp, {work}/model-store/tts.safetensors, {work}/models/tts.safetensors]
  failures:
    model_loading_failure:
      verify: [model_weights]
      settle_delay: 200ms
      ladder: [retry_model_download]
webhook:
  routes:
    - {{matchers: ['medic_failure_type="model_loading_failure"'],
       failure_type: model_loading_failure}}
"""
ALERTMANAGER = """
route:
  receiver: medic
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: medic
    webhook_configs:
      - url: {medic}/api/v1/alerts
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: {work}/token}}
"""


def say(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.2f}s] {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--once", action="store_true", help="exit after one remediation")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medic-demo-"))
    (work / "token").write_text("demo-token")
    for folder in ("models", "model-store"):
        (work / folder).mkdir()
    for folder in ("models", "model-store"):
        (work / folder / "tts.safetensors").write_bytes(b"demo weights")
    (work / "nvml.json").write_text(json.dumps(fakenvml.make_state(2)))
    (work / "medic.yml").write_text(MEDIC.format(work=work))
    os.environ[fakenvml.ENV] = str(work / "nvml.json")
    medic = MedicProcess(["--config", str(work / "medic.yml")], work / "medic.log")
    am = prometheus = None
    try:
        url = medic.wait_listening()
        am = Alertmanager(ALERTMANAGER.format(medic=url, work=work), work)
        prometheus = Prometheus(
            work,
            fast_rules(ROOT / "alerts" / "medic.rules.yml"),
            url.removeprefix("http://"),
            am.url.removeprefix("http://"),
        )
        prometheus.wait_ready()
        print(f"medic        {url}/metrics  (history: {url}/api/v1/recoveries)")
        print(f"Prometheus   {prometheus.url}/alerts")
        print(f"Alertmanager {am.url}")
        print(f"files in     {work}\n")
        started = time.monotonic()
        say(started, "deleting the watched model file tts.safetensors")
        (work / "models" / "tts.safetensors").unlink()
        wait_until(
            lambda: prometheus.query('ALERTS{alertstate="firing"}'),
            timeout=30,
            what="the alert to fire",
        )
        say(started, "Prometheus fires MedicModelFileMissing; Alertmanager calls medic")

        def recovered() -> list[dict[str, object]]:
            body = httpx.get(f"{url}/api/v1/recoveries", timeout=5,
                             headers={"authorization": "Bearer demo-token"}).json()  # fmt: skip
            return [a for a in body["attempts"] if a["outcome"] == "succeeded"]

        attempt = wait_until(recovered, timeout=30, what="the recovery")[0]  # type: ignore[index]
        say(started, f"medic ran {attempt['action']}: {attempt['outcome']} ({attempt['detail']})")
        wait_until(
            lambda: not prometheus.query('ALERTS{alertstate="firing"}'),
            timeout=30,
            what="the alert to resolve",
        )
        say(started, "the file is back, the check passes, the alert is resolved")
        if args.once:
            return 0
        print("\nall three keep running; Ctrl-C stops them")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        for daemon in (prometheus, am):
            if daemon is not None:
                daemon.stop()
        medic.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
