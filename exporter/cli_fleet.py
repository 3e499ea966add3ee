"""`medic fleet status` and `medic fleet release`: the fleet for people.

status reads Prometheus (hosts in a disruptive action, held rungs by host and reason, the
failure types firing and the budgets left for this host's domains), etcd (who holds which
slot, since when) and this host's own medic (its held rungs and why); each source that
does not answer is said so and the others are still shown. release asks the running medic
to let its held rungs go past the guard.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import httpx

from exporter.config import Config
from exporter.config.fleet import FLEET
from exporter.fleet import host_name


class FleetError(Exception):
    """Nothing to show: no fleet section."""


def _prometheus(config: Config, expr: str) -> list[dict[str, Any]]:
    """An instant query to the guard's Prometheus, with its credentials and TLS."""
    from exporter.fleet.guard import client_settings  # noqa: PLC0415

    assert config.fleet is not None and config.fleet.guard is not None
    guard = config.fleet.guard
    url = guard.prometheus_url or config.recovery.prometheus_url
    assert url is not None
    with httpx.Client(**client_settings(guard)) as client:
        answer = client.get(f"{url.rstrip('/')}/api/v1/query", params={"query": expr})
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result


def gather(config: Config, local: dict[str, Any] | None) -> dict[str, Any]:
    """Everything status shows, as data (-o json prints it as is)."""
    fleet = config.fleet
    if fleet is None or (fleet.guard is None and fleet.semaphore is None):
        raise FleetError("this config has no fleet section (fleet.guard or fleet.semaphore)")
    out: dict[str, Any] = {"host": host_name(fleet), "domains": dict(fleet.domains)}
    label = fleet.host_label
    if fleet.guard is not None:
        try:
            acting = _prometheus(config, fleet.guard.in_action)
            held = _prometheus(config, "medic_fleet_held_rungs > 0")
            firing = _prometheus(
                config, 'count by (medic_failure_type) (ALERTS{alertstate="firing",'
                'medic_failure_type!=""})',
            )  # fmt: skip
            out["in_action"] = sorted(s["metric"].get(label, "?") for s in acting)
            out["held"] = sorted(
                (
                    s["metric"].get(label, "?"),
                    s["metric"].get("reason", "?"),
                    int(float(s["value"][1])),
                )
                for s in held
            )
            out["firing"] = {s["metric"].get("medic_failure_type", "?"): int(float(s["value"][1]))
                             for s in firing}  # fmt: skip
            out["budgets"] = asyncio.run(_budgets(config, sorted(config.recovery.failures)))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            out["prometheus_error"] = f"{type(exc).__name__}: {exc}"
    if fleet.semaphore is not None:
        from exporter.fleet.semaphore import EtcdSemaphore, EtcdUnavailable  # noqa: PLC0415

        semaphore = EtcdSemaphore(fleet, host_name(fleet))
        try:
            out["slots"] = [
                {"scope": scope, "key": h.key, "host": h.host, "failure_type": h.failure_type,
                 "action": h.action, "since": h.since}
                for scope, holders in semaphore.every_holder().items() for h in holders
            ]  # fmt: skip
            out["slot_limits"] = dict(fleet.semaphore.slots)
        except EtcdUnavailable as exc:
            out["etcd_error"] = str(exc)
    if local is not None:
        out["this_host"] = local
    return out


async def _budgets(config: Config, failure_types: list[str]) -> dict[str, Any]:
    from exporter.fleet.guard import BlastRadiusGuard  # noqa: PLC0415

    assert config.fleet is not None and config.fleet.guard is not None
    url = config.fleet.guard.prometheus_url or config.recovery.prometheus_url
    assert url is not None
    guard = BlastRadiusGuard(config.fleet, url)
    try:
        found = {}
        for failure_type in failure_types:
            answer = await guard.check(failure_type)
            found[failure_type] = {"answer": answer.kind, "detail": answer.detail,
                                   "budgets": [dataclasses.asdict(b)
                                               for b in answer.budgets]}  # fmt: skip
        return found
    finally:
        await guard.close()


def render(state: dict[str, Any]) -> str:
    """The status for a terminal."""
    lines = [
        f"host {state['host']}" + (f"  domains {state['domains']}" if state["domains"] else "")
    ]
    if "prometheus_error" in state:
        lines.append(f"Prometheus: not answering ({state['prometheus_error']})")
    if "in_action" in state:
        acting = state["in_action"]
        lines.append(
            f"hosts in a disruptive action: {len(acting)}"
            + (f" ({', '.join(acting)})" if acting else "")
        )
        held = state["held"]
        lines.append(f"hosts holding rungs: {len(held)}")
        lines += [f"  {host}: {n} held ({reason})" for host, reason, n in held]
        firing = ", ".join(f"{ft} on {n}" for ft, n in sorted(state["firing"].items())) or "none"
        lines.append(f"failure types firing: {firing}")
        lines.append("budgets for this host:")
        for failure_type, answer in state["budgets"].items():
            lines.append(f"  {failure_type}: {answer['answer']} - {answer['detail']}")
            for b in answer["budgets"]:
                where = "fleet" if b["scope"] == FLEET else f"{b['scope']}={b['domain']}"
                lines.append(
                    f"    {where}: {b['affected']}/{b['hosts']} affected "
                    f"(max {b['max_affected']}), {b['in_action']} in action "
                    f"(max {b['max_in_action']})"
                )
    if "etcd_error" in state:
        lines.append(f"etcd: not answering ({state['etcd_error']})")
    if "slots" in state:
        limits = ", ".join(f"{k} {v}" for k, v in state["slot_limits"].items())
        lines.append(f"fleet slots taken: {len(state['slots'])} (slots per scope: {limits})")
        for slot in state["slots"]:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(slot["since"]))
            what = f"{slot['failure_type']}/{slot['action']}"
            lines.append(f"  {slot['key']}: {slot['host']} {what} since {since}")
    local = state.get("this_host")
    if local and local.get("held"):
        lines.append("held on this host:")
        for h in local["held"]:
            what = f"{h['failure_type']}/{h['action']}"
            lines.append(f"  episode {h['episode']} {what} {h['outcome']}: {h['detail']}")
        lines.append("  release: medic fleet release [EPISODE]")
    return "\n".join(lines)


def status(config: Config, output: str, url: str | None, verify: bool | str) -> str:
    """`medic fleet status`."""
    from exporter import cli_remote  # noqa: PLC0415

    local = None
    try:
        target = (url or cli_remote.base_url(config)).rstrip("/") + "/api/v1/fleet"
        answer = httpx.get(
            target, headers=cli_remote.auth_headers(config), verify=verify, timeout=5
        )
        if answer.status_code == 200:
            local = answer.json()
    except (httpx.HTTPError, cli_remote.RemoteError, ValueError):
        local = {"error": "this host's medic did not answer"}
    state = gather(config, local)
    return json.dumps(state, indent=2, default=str) if output == "json" else render(state)
