"""A real etcd cluster (Debian's etcd-server 3.4, from .stack/) on loopback addresses."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.stack import Daemon, free_port, require
from tests.helpers import wait_until


class Member(Daemon):
    """One etcd member; `url` is its client URL."""

    def __init__(self, name: str, workdir: Path, ports: tuple[int, int], cluster: str,
                 state: str = "new") -> None:  # fmt: skip
        client, peer = ports
        self.name, self.client_port, self.peer_port = name, client, peer
        self.url = f"http://127.0.0.1:{client}"
        self.workdir = workdir
        self.cluster, self.state = cluster, state
        super().__init__(self._argv(), workdir / f"{name}.log")

    def _argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            require("etcd"), f"--name={self.name}",
            f"--data-dir={self.workdir / (self.name + '.etcd')}",
            f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.cluster}", f"--initial-cluster-state={self.state}",
            "--initial-cluster-token=medic-tests",
            # Elections in about a second on a busy 2-core machine (defaults: 100 ms / 1 s).
            "--heartbeat-interval=100", "--election-timeout=1000",
            "--logger=zap", "--log-level=warn",
        ]  # fmt: skip

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call to its v3 JSON gateway."""
        response = httpx.post(f"{self.url}/v3/{path}", json=body or {}, timeout=2)
        response.raise_for_status()
        return response.json()

    def kill(self) -> None:
        """kill -9: a member that dies with no goodbye."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


class EtcdCluster:
    """Three members (or `size`) on 127.0.0.1, each with its own ports and data dir."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port()) for _ in range(size)]
        cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_c, peer) in enumerate(ports))
        self.members = [Member(f"m{i}", workdir, pair, cluster) for i, pair in enumerate(ports)]
        wait_until(self.healthy, timeout=30, what="etcd to elect a leader")

    @property
    def endpoints(self) -> list[str]:
        """Client URLs of every member."""
        return [m.url for m in self.members]

    def alive(self) -> list[Member]:
        """Members whose process runs."""
        return [m for m in self.members if m.proc.poll() is None]

    def leader(self) -> Member | None:
        """The member the others follow, as its own status says."""
        for member in self.alive():
            try:
                status = member.post("maintenance/status")
            except httpx.HTTPError:
                continue
            if status.get("leader") == status["header"]["member_id"]:
                return member
        return None

    def healthy(self) -> bool:
        """A leader is elected and every live member answers a linearizable read."""
        if self.leader() is None:
            return False
        try:
            for member in self.alive():
                member.post("kv/range", {"key": "aGVhbHRo"})
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM every member we started."""
        for member in self.members:
            member.stop()
