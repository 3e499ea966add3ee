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
                                  "configmap.yaml", "namespace.yaml", "serviceaccount.yaml",
                                  "restarts/rbac.yaml"])  # fmt: skip
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

    ok = check({"NODE_NAME": "gpu-07", "HOST_IP": "10.0.0.7"})
    assert ok.returncode == 0, ok.stderr
    assert 'identity: node="gpu-07" (alerts naming no host: other_host)' in ok.stdout
    assert "pull: http://alertmanager-main-0.alertmanager-operated" in ok.stdout
    missing = check({"HOST_IP": "10.0.0.7"})
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "NODE_NAME" in t)
    assert missing.returncode == 1
    assert f"{path}:{line}: identity.matchers[0]: environment variable NODE_NAME is not set" in (
        missing.stderr
    )


def test_the_pods_actions_reach_what_they_act_on() -> None:
    # 127.0.0.1 in a pod is the pod; the model files are mounted read-only.
    config = yaml.safe_load(load("configmap.yaml")["data"]["medic.yml"])
    pod = load("daemonset.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    read_only = [m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m.get("readOnly")]
    for name, action in config["recovery"]["actions"].items():
        if action["type"] == "http":
            assert action["url"].startswith("http://${HOST_IP}:"), name
        if action["type"] == "command":
            targets = [a for a in action["argv"] if a.startswith("/")]
            assert not any(t.startswith(tuple(read_only)) for t in targets[1:]), name
    gpu = next(c for c in config["checks"] if c["type"] == "gpu")
    assert gpu["expected"] == "auto"  # one ConfigMap for 4- and 8-GPU nodes alike


def test_namespace_and_the_selectors_kube_prometheus_stack_uses() -> None:
    namespace = load("namespace.yaml")
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "medic"
    # hostPath volumes need the privileged Pod Security level.
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for name in ("daemonset.yaml", "service.yaml", "servicemonitor.yaml", "secret.yaml",
                 "configmap.yaml", "prometheusrule.yaml"):  # fmt: skip
        assert load(name)["metadata"]["namespace"] == "medic", name
    for name in ("servicemonitor.yaml", "prometheusrule.yaml"):
        assert load(name)["metadata"]["labels"]["release"] == "kube-prometheus-stack", name


def test_the_journal_is_writable_by_the_pods_user_on_a_root_owned_host_path(
    tmp_path: Path,
) -> None:
    """As the kubelet would: a root-owned parent, the hostPath directory created root-owned
    (DirectoryOrCreate), the init container's command run as root, then medic as uid 10001.
    Without the init container the journal is down, as it was before."""
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to create root-owned directories and run as uid 10001")
    pod = load("daemonset.yaml")["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    container = pod["containers"][0]
    user = pod["securityContext"]["runAsUser"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    data = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    assert [m["mountPath"] for m in init["volumeMounts"] if m["name"] == "data"] == [data]
    # uid 10001 must reach the venv and this checkout; the node's root is a fresh 0755 dir.
    node = Path(tempfile.mkdtemp(prefix="medic-node-", dir="/tmp"))
    try:
        node.chmod(0o755)
        for with_init in (False, True):
            host = node / ("with" if with_init else "without") / "var" / "lib"
            host.mkdir(parents=True)  # root-owned parents
            hostpath = host / "medic"
            hostpath.mkdir(mode=0o755)  # what DirectoryOrCreate makes: root:root 0755
            for parent in (node / hostpath.relative_to(node).parts[0], host.parent, host):
                parent.chmod(0o755)
            if with_init:
                argv = [str(hostpath) if a == data else a for a in init["command"]]
                subprocess.run(argv, check=True, timeout=30)
            config = node / f"medic-{with_init}.yml"
            config.write_text(f"data_dir: {hostpath}\n")
            config.chmod(0o644)
            up = _journal_up_as(user, config, node / f"medic-{with_init}.log")
            assert up == (1.0 if with_init else 0.0), (with_init, up)
        owned = (node / "with" / "var" / "lib" / "medic").stat()
        assert (owned.st_uid, owned.st_gid, owned.st_mode & 0o777) == (user, user, 0o750)
        assert (node / "with" / "var" / "lib" / "medic" / "medic.db").exists()
    finally:
        subprocess.run(["rm", "-rf", str(node)], check=False, timeout=30)


def _journal_up_as(uid: int, config: Path, log: Path) -> float | None:
    """medic_recovery_journal_up of a medic run as uid (and gid) `uid`."""
    from tests.helpers import wait_until
    from tests.test_server import value

    python, env = _interpreter_for(uid)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [python, "-m", "exporter", "run", "--config", str(config), "--listen", "127.0.0.1:0"],
            stdout=out, stderr=subprocess.STDOUT, user=uid, group=uid, extra_groups=[],
            cwd="/", env=env,
        )  # fmt: skip
    try:

        def listening() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(log.read_text())
            found = re.search(r"listening on (http://\S+)", log.read_text())
            return found.group(1) if found else None

        url = str(wait_until(listening, timeout=20, what="medic to listen"))
        wait_until(lambda: httpx.get(f"{url}/-/healthy").status_code == 200, what="healthy")
        return value(httpx.get(f"{url}/metrics").text, "medic_recovery_journal_up")
    finally:
        proc.kill()
        proc.wait(10)


def _interpreter_for(uid: int) -> tuple[str, dict[str, str]]:
    """A Python that uid can run, with this checkout and the venv's packages importable.

    The venv's interpreter may live where uid cannot reach (pyenv under /root, 0700); the
    system's python3 of the same minor version loads the same packages.
    """
    site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    path = os.pathsep.join([str(ROOT), *site])
    env = {**os.environ, "HOME": "/nonexistent", "PYTHONPATH": path}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}"):
        try:
            probe = subprocess.run([python, "-c", "import exporter.cli"], user=uid, group=uid,
                                   extra_groups=[], cwd="/", env=env, capture_output=True,
                                   timeout=60, check=False)  # fmt: skip
        except OSError:  # not executable by uid
            continue
        if probe.returncode == 0:
            return python, env
    pytest.skip(f"no Python here that uid {uid} can run with medic's packages")
