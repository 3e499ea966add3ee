"""The kubernetes action (lightkube) against a stand-in API server with the Kubernetes API's
paths and JSON (tests/fixtures/kubeapi.py): delete or evict this node's pods, or restart
their Deployment, and wait until the old pods are gone; RBAC refusals, a PDB, a missing
pod, a paused Deployment and an API that does not answer, each a clear `failed` detail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from exporter.app import Medic
from tests.fixtures.kubeapi import KubeStandIn
from tests.recovery.conftest import run

RBAC = Path(__file__).parents[2] / "deploy" / "kubernetes" / "restarts" / "rbac.yaml"


def rbac_allows(api: KubeStandIn) -> None:
    """Every call the action made is one the shipped ClusterRole grants."""
    [role] = [d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole"]
    granted = {f"{verb} {resource}" for rule in role["rules"] for verb in rule["verbs"]
               for resource in rule["resources"]}  # fmt: skip
    verbs = {"GET": "get", "DELETE": "delete", "POST": "create", "PATCH": "patch"}
    for request in api.requests:
        method, path = request.split(" ", 1)
        needed, _ = api.route(verbs[method], path.strip("/").split("/"))
        assert needed in granted, f"{request} needs {needed!r}, not in {RBAC.name}"


@pytest.fixture
def api() -> Iterator[KubeStandIn]:
    stand_in = KubeStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def kubeconfig(api: KubeStandIn, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": api.url}}],
        "users": [{"name": "medic", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "medic"}}],
    }))  # fmt: skip
    return path


def action(kubeconfig: Path, mode: str = "delete", extra: str = "", node: str = "gpu-1") -> str:
    return (f"{{type: kubernetes, namespace: inference, selector: {{app: vllm}}, node: {node}, "
            f"mode: {mode}, kubeconfig: {kubeconfig}{extra}}}")  # fmt: skip


@pytest.mark.parametrize("mode", ["delete", "evict"])
def test_this_nodes_pod_is_restarted_and_the_old_one_waited_out(
    api: KubeStandIn, kubeconfig: Path, start_medic: Callable[[str], Medic], mode: str
) -> None:
    [old] = api.on("gpu-1")
    other = api.on("gpu-2")
    outcome, detail = run(start_medic, action(kubeconfig, mode))
    assert outcome == "succeeded", detail
    verb = "evicted" if mode == "evict" else "deleted"
    assert detail.startswith(f"{verb} pod {old}; old pods gone after ")
    assert api.deleted == [old]  # the real effect: this node's pod, no other
    [new] = api.on("gpu-1")
    assert new != old and api.on("gpu-2") == other
    path = f"/api/v1/namespaces/inference/pods/{old}" + ("/eviction" if mode == "evict" else "")
    assert f"{'POST' if mode == 'evict' else 'DELETE'} {path}" in api.requests
    rbac_allows(api)


def test_a_rollout_restart_merges_its_annotation_into_the_template(
    api: KubeStandIn, kubeconfig: Path, start_medic: Callable[[str], Medic]
) -> None:
    outcome, detail = run(start_medic, action(kubeconfig, "rollout"))
    assert outcome == "succeeded", detail
    assert detail.startswith("rollout restart of vllm; old pods gone after ")
    [patch] = api.patches
    assert list(patch["spec"]["template"]["metadata"]["annotations"]) == [
        "kubectl.kubernetes.io/restartedAt"]  # fmt: skip
    assert api.annotations["team"] == "ml-platform"  # merged, not replaced
    rbac_allows(api)
    api.paused = True
    outcome, detail = run(start_medic, action(kubeconfig, "rollout"))
    assert (outcome, detail) == ("failed", "restart deployment vllm: it is paused, a rollout "
                                 "restart would do nothing")  # fmt: skip
    assert len(api.patches) == 1


def test_api_errors_are_clear_failures(
    api: KubeStandIn, kubeconfig: Path, start_medic: Callable[[str], Medic]
) -> None:
    api.forbidden.add("delete pods")
    outcome, detail = run(start_medic, action(kubeconfig))
    assert outcome == "failed"
    assert detail.startswith(f'delete pod {api.on("gpu-1")[0]}: permission denied (pods "')
    assert detail.endswith("medic's service account needs deploy/kubernetes/restarts/rbac.yaml")
    api.blocked = True
    outcome, detail = run(start_medic, action(kubeconfig, "evict"))
    assert outcome == "failed" and detail.endswith(
        ": blocked by a PodDisruptionBudget (Cannot evict pod as it would violate the pod's "
        "disruption budget.)")  # fmt: skip
    outcome, detail = run(start_medic, action(kubeconfig, node="gpu-9"))
    assert (outcome, detail) == ("failed", "no pod in inference matches app=vllm on node gpu-9")
    assert api.deleted == []
    api.hang = True
    outcome, detail = run(start_medic, action(kubeconfig, extra=", api_timeout: 1s"))
    assert (outcome, detail) == ("failed", "list pods app=vllm: the Kubernetes API did not "
                                 "answer within 1s")  # fmt: skip


def test_a_pod_that_is_gone_before_the_delete_is_a_404_failure(
    api: KubeStandIn, kubeconfig: Path, start_medic: Callable[[str], Medic]
) -> None:
    [name] = api.on("gpu-1")
    original = api.handle

    def vanish(verb: str, parts: list[str], *rest: object) -> tuple[int, object]:
        if verb == "delete":
            api.pods.pop(name, None)  # another actor deleted it between list and delete
        return original(verb, parts, *rest)  # type: ignore[arg-type]

    api.handle = vanish  # type: ignore[method-assign,assignment]
    outcome, detail = run(start_medic, action(kubeconfig))
    assert (outcome, detail) == ("failed", f'delete pod {name}: not found (pods "{name}" not '
                                 'found)')  # fmt: skip


def test_a_pod_stuck_terminating_past_the_deadline_fails_the_rung(
    api: KubeStandIn, kubeconfig: Path, start_medic: Callable[[str], Medic]
) -> None:
    api.terminating = 30.0  # a finalizer, or a kubelet that cannot kill the container
    [old] = api.on("gpu-1")
    outcome, detail = run(start_medic, action(kubeconfig, extra=", hygiene: {deadline: 1s}"))
    assert (outcome, detail) == ("failed", f"old pod {old} not gone 1s after the restart")
