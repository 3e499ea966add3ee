"""The Dockerfile and the Kubernetes manifests, checked as far as these machines allow.

No Docker engine runs here: the Dockerfile is linted with hadolint, and its entrypoint,
environment and HEALTHCHECK command are exercised against medic installed in a venv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.stack import require
from tests.helpers import MedicProcess

ROOT = Path(__file__).parents[1]
K8S = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    """The last occurrence of a Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile())
    found = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    assert found, name
    return found[-1][len(name) + 1 :].strip()


def test_hadolint_is_clean() -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_and_non_root() -> None:
    assert len(re.findall(r"^FROM ", dockerfile(), re.M)) == 2
    assert instruction("USER") == "10001:10001"
    assert json.loads(instruction("ENTRYPOINT")) == ["medic", "run"]
    assert json.loads(instruction("VOLUME")) == ["/var/lib/medic"]


def test_entrypoint_env_and_healthcheck_work_in_a_venv(
    tmp_path: Path, medic_process: Callable[..., MedicProcess]
) -> None:
    env = dict(re.findall(r"(\w+)=(\S+)", instruction("ENV")))
    assert env["MEDIC_CONFIG"] == "/etc/medic/medic.yml" and env["MEDIC_LISTEN"] == "0.0.0.0:9847"
    # The image's config and secret paths, moved under tmp_path; the rest as in the image.
    token = tmp_path / "run" / "secrets" / "medic" / "token"
    token.parent.mkdir(parents=True)
    token.write_text("image-token")
    config = tmp_path / "medic.yml"
    config.write_text((ROOT / "deploy" / "medic.yml").read_text()
                      .replace("/run/secrets/medic/token", str(token)))  # fmt: skip
    entry = json.loads(instruction("ENTRYPOINT"))
    assert entry[:2] == ["medic", "run"] and (BIN / "medic").exists()
    proc = medic_process([], env={
        "MEDIC_CONFIG": str(config), "MEDIC_DATA_DIR": str(tmp_path / "data"),
        "MEDIC_LISTEN": "0.0.0.0:0",  # all interfaces, as in the image: auth must be on
    })  # fmt: skip
    url = proc.wait_listening().replace("0.0.0.0", "127.0.0.1")
    port = url.rsplit(":", 1)[1]
    check = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
    check = [part.replace("9847", port) for part in check]
    check[0] = sys.executable  # the image's python
    assert subprocess.run(check, timeout=10, check=False).returncode == 0
    unauthorized = httpx.post(f"{url}/api/v1/alerts", json={})
    assert unauthorized.status_code == 401  # the token from the secret file guards it
    assert (tmp_path / "data" / "medic.db").exists()


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return document


@pytest.mark.parametrize("name", ["daemonset.yaml", "service.yaml", "secret.yaml",
                                  "configmap.yaml"])  # fmt: skip
def test_core_manifests_match_kubernetes_schemas(name: str) -> None:
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", str(K8S / name)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_manifests_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-kubernetes.py"),
                             "--check"], capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_prometheusrule_carries_the_shipped_rules(tmp_path: Path) -> None:
    rule = load("prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    shipped = yaml.safe_load((ROOT / "alerts" / "medic.rules.yml").read_text())
    assert rule["spec"] == shipped
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule["spec"]))
    promtool = subprocess.run([require("promtool"), "check", "rules", str(tmp_path / "rules.yml")],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr


def test_the_pieces_fit_together() -> None:
    daemonset, service = load("daemonset.yaml"), load("service.yaml")
    monitor = load("servicemonitor.yaml")
    pod = daemonset["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and "utility" in env["NVIDIA_DRIVER_CAPABILITIES"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["models"]["readOnly"] is True and "hostPath" in volumes["models"]
    assert mounts["data"]["mountPath"] == env["MEDIC_DATA_DIR"]
    config = yaml.safe_load(load("configmap.yaml")["data"]["medic.yml"])
    token_file = config["server"]["auth"]["bearer_token"]["file"]
    assert os.path.dirname(token_file) == mounts["token"]["mountPath"]
    assert volumes["token"]["secret"]["secretName"] == load("secret.yaml")["metadata"]["name"]
    assert shlex.join(container["args"]) == "--config /etc/medic/medic.yml"
    assert mounts["config"]["mountPath"] == "/etc/medic"
    probes = {container["livenessProbe"]["httpGet"]["path"],
              container["readinessProbe"]["httpGet"]["path"]}  # fmt: skip
    assert probes == {"/-/healthy", "/-/ready"}


def test_each_node_knows_itself_and_pulls_its_own_alerts(tmp_path: Path) -> None:
    pod = load("daemonset.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    relabel = load("servicemonitor.yaml")["spec"]["endpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"} in relabel
    text = load("configmap.yaml")["data"]["medic.yml"]
    path = tmp_path / "medic.yml"
    path.write_text(text)

    def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIC_", "NODE_"))}
        return subprocess.run(
            [sys.executable, "-m", "exporter", "check-config", "--schema-only", str(path)],
            capture_output=True, text=True, timeout=30, check=False,
            env={**clean, "MEDIC_DATA_DIR": str(tmp_path), **env},
        )  # fmt: skip

    ok = check({"NODE_NAME": "gpu-07"})
    assert ok.returncode == 0, ok.stderr
    assert 'identity: node="gpu-07" (alerts naming no host: other_host)' in ok.stdout
    assert "pull: http://alertmanager-main-0.alertmanager-operated" in ok.stdout
    missing = check({})
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "NODE_NAME" in t)
    assert missing.returncode == 1
    assert f"{path}:{line}: identity.matchers[0]: environment variable NODE_NAME is not set" in (
        missing.stderr
    )
