"""The `kubernetes` action: restart this node's pods that match a selector, with lightkube
(typed, light, maintained): delete them (their controller recreates them), evict them (the
Eviction API, which honours PodDisruptionBudgets), or restart their workload (the rollout
restart annotation kubectl sets, merged into the template's annotations).

With restart hygiene's `tree` (the default), the action waits until the old pods are gone
(deleted, or replaced under the same name with a new uid) within the deadline; whether the
new pod serves is the rung's verification. Its RBAC: deploy/kubernetes/restarts/rbac.yaml.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from typing import Any

from exporter.config.recovery import KubernetesActionConfig
from exporter.recovery.actions import ActionContext, run_until_cut_off
from exporter.recovery.types import ActionResult

POLL = 0.2
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class KubeError(Exception):
    """A Kubernetes API answer or failure, said plainly."""


class KubernetesAction:
    """Delete, evict or rollout-restart the matching pods on this node."""

    def __init__(self, name: str, config: KubernetesActionConfig) -> None:
        self.name = name
        self._config = config

    def _client(self) -> Any:
        import httpx2  # noqa: PLC0415 - only configs with this action pay for the imports
        from lightkube import Client, KubeConfig  # noqa: PLC0415
        from lightkube.core.exceptions import ConfigError  # noqa: PLC0415

        config = self._config
        try:
            kube = (KubeConfig.from_file(config.kubeconfig) if config.kubeconfig
                    else KubeConfig.from_env())  # fmt: skip
            return Client(config=kube, namespace=config.namespace,
                          timeout=httpx2.Timeout(config.api_timeout), trust_env=False)  # fmt: skip
        except (ConfigError, OSError) as exc:
            raise KubeError(f"no Kubernetes configuration: {exc}") from exc

    def _said(self, exc: Exception, what: str) -> KubeError:
        import httpx2  # noqa: PLC0415
        from lightkube import ApiError  # noqa: PLC0415

        if isinstance(exc, ApiError):
            code, message = exc.status.code, exc.status.message or str(exc)
            if code == 404:
                return KubeError(f"{what}: not found ({message})")
            if code in (401, 403):
                return KubeError(f"{what}: permission denied ({message}); medic's service "
                                 "account needs deploy/kubernetes/restarts/rbac.yaml")  # fmt: skip
            if code == 429:
                return KubeError(f"{what}: blocked by a PodDisruptionBudget ({message})")
            return KubeError(f"{what}: {code} {message}")
        if isinstance(exc, httpx2.TimeoutException):
            return KubeError(f"{what}: the Kubernetes API did not answer within "
                             f"{self._config.api_timeout:g}s")  # fmt: skip
        return KubeError(f"{what}: cannot reach the Kubernetes API: {exc}")

    def _pods(self, client: Any) -> list[Any]:
        from lightkube.resources.core_v1 import Pod  # noqa: PLC0415

        config = self._config
        node = config.node or os.environ.get("NODE_NAME")
        fields = {"spec.nodeName": node} if node else None
        where = f" on node {node}" if node else ""
        selector = ",".join(f"{k}={v}" for k, v in sorted(config.selector.items()))
        try:
            pods = list(client.list(Pod, namespace=config.namespace, labels=config.selector,
                                    fields=fields))  # fmt: skip
        except Exception as exc:
            raise self._said(exc, f"list pods {selector}") from exc
        if not pods:
            raise KubeError(f"no pod in {config.namespace} matches {selector}{where}")
        return pods

    def _owner(self, client: Any, pod: Any) -> tuple[Any, str]:
        """The workload that owns a pod (a ReplicaSet's Deployment, a StatefulSet...)."""
        from lightkube.resources.apps_v1 import (  # noqa: PLC0415
            DaemonSet,
            Deployment,
            ReplicaSet,
            StatefulSet,
        )

        kinds = {"Deployment": Deployment, "StatefulSet": StatefulSet, "DaemonSet": DaemonSet}
        owners = [o for o in (pod.metadata.ownerReferences or []) if o.controller]
        if not owners:
            raise KubeError(f"pod {pod.metadata.name} has no controller to restart it")
        owner = owners[0]
        if owner.kind == "ReplicaSet":
            try:
                rs = client.get(ReplicaSet, owner.name, namespace=self._config.namespace)
            except Exception as exc:
                raise self._said(exc, f"get replicaset {owner.name}") from exc
            parents = [o for o in (rs.metadata.ownerReferences or []) if o.controller]
            if not parents or parents[0].kind != "Deployment":
                raise KubeError(f"replicaset {owner.name} has no Deployment to restart")
            owner = parents[0]
        if owner.kind not in kinds:
            raise KubeError(f"pod {pod.metadata.name} is owned by a {owner.kind}")
        return kinds[owner.kind], owner.name

    def _act(self, client: Any, pods: list[Any]) -> str:
        from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta  # noqa: PLC0415
        from lightkube.resources.core_v1 import Pod  # noqa: PLC0415

        config, ns = self._config, self._config.namespace
        names = [p.metadata.name for p in pods]
        if config.mode == "rollout":
            workloads = {self._owner(client, pod) for pod in pods}
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
            for kind, name in sorted(workloads, key=lambda w: w[1]):
                what = f"restart {kind.__name__.lower()} {name}"
                try:
                    workload = client.get(kind, name, namespace=ns)
                    if getattr(workload.spec, "paused", False):
                        raise KubeError(f"{what}: it is paused, a rollout restart would do "
                                        "nothing")  # fmt: skip
                    client.patch(kind, name, patch, namespace=ns)  # strategic merge: kept
                except KubeError:
                    raise
                except Exception as exc:
                    raise self._said(exc, what) from exc
            return "rollout restart of " + ", ".join(n for _, n in sorted(workloads))
        for name in names:
            try:
                if config.mode == "evict":
                    options = (DeleteOptions(gracePeriodSeconds=config.grace_period)
                               if config.grace_period is not None else None)  # fmt: skip
                    eviction = Pod.Eviction(metadata=ObjectMeta(name=name, namespace=ns),
                                            deleteOptions=options)  # fmt: skip
                    client.create(eviction, name=name, namespace=ns)
                else:
                    client.delete(Pod, name, namespace=ns, grace_period=config.grace_period)
            except Exception as exc:
                raise self._said(exc, f"{config.mode} pod {name}") from exc
        verb = "evicted" if config.mode == "evict" else "deleted"
        return f"{verb} pod {', '.join(names)}"

    def _gone(self, client: Any, pods: list[Any], cut_off: threading.Event) -> str:
        """Wait until every old pod is gone (404, or a new uid under its name)."""
        from lightkube import ApiError  # noqa: PLC0415
        from lightkube.resources.core_v1 import Pod  # noqa: PLC0415

        hygiene = self._config.hygiene
        started = time.monotonic()
        left = {p.metadata.name: p.metadata.uid for p in pods}
        while True:
            for name, uid in list(left.items()):
                try:
                    pod = client.get(Pod, name, namespace=self._config.namespace)
                except ApiError as exc:
                    if exc.status.code != 404:
                        raise self._said(exc, f"get pod {name}") from exc
                    pod = None
                except Exception as exc:
                    raise self._said(exc, f"get pod {name}") from exc
                if pod is None or pod.metadata.uid != uid:
                    del left[name]
            waited = time.monotonic() - started
            if not left:
                return f"old pods gone after {waited:.1f}s"
            if cut_off.is_set():
                raise KubeError("cut off while waiting for the old pods: the rung has ended")
            if waited >= hygiene.deadline:
                raise KubeError(f"old pod {', '.join(sorted(left))} not gone "
                                f"{hygiene.deadline:g}s after the restart")  # fmt: skip
            time.sleep(POLL)

    def _restart(self, cut_off: threading.Event) -> ActionResult:
        try:
            with self._client() as client:
                pods = self._pods(client)
                done = self._act(client, pods)
                if self._config.hygiene.tree:
                    done = f"{done}; {self._gone(client, pods, cut_off)}"
        except KubeError as exc:
            return ActionResult(False, str(exc))
        return ActionResult(True, done)

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Act on the matching pods; wait until the old ones are gone."""
        config = self._config
        if ctx.dry_run:
            return ActionResult(True, f"would {config.mode} the pods of {config.namespace} "
                                      f"matching {config.selector}")  # fmt: skip
        result: ActionResult = await run_until_cut_off(self._restart)
        return result
