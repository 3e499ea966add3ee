"""Fleet limits on disruptive rungs: Prometheus as the fleet's view, etcd for strict slots."""

from __future__ import annotations

import socket
from collections.abc import Callable

from exporter.config.fleet import FleetConfig
from exporter.fleet.gate import FleetGate

__all__ = ["FleetGate", "build", "host_name"]


def host_name(fleet: FleetConfig) -> str:
    """This host's name in the semaphore: `fleet.host`, or the hostname."""
    return fleet.host or socket.gethostname()


def build(fleet: FleetConfig | None, prometheus_url: str | None,
          changed: Callable[[], None]) -> FleetGate | None:  # fmt: skip
    """The fleet stage for the config (None without a fleet section); imports the etcd
    client only when a semaphore is configured."""
    if fleet is None or (fleet.guard is None and fleet.semaphore is None):
        return None
    guard = semaphore = None
    if fleet.guard is not None:
        from exporter.fleet.guard import BlastRadiusGuard  # noqa: PLC0415

        url = fleet.guard.prometheus_url or prometheus_url
        assert url is not None, "the config validates that the guard has a Prometheus"
        guard = BlastRadiusGuard(fleet, url)
    if fleet.semaphore is not None:
        from exporter.fleet.semaphore import EtcdSemaphore  # noqa: PLC0415

        semaphore = EtcdSemaphore(fleet, host_name(fleet))
    return FleetGate(fleet, guard=guard, semaphore=semaphore, changed=changed)
