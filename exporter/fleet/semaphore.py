"""Strict fleet concurrency: a counting semaphore of lease-backed slots in etcd.

Each scope (the whole fleet, or this host's value of a fault-domain label) has N slots,
keys `<prefix>/slots/<scope>/<i>` for i < N. A rung takes one free slot in every scope in
ONE transaction — compare `create_revision == 0` on each chosen key, put them all with a
fresh lease — so the grant is all-or-nothing, and etcd's Raft log makes it linearizable: a
slot is never granted twice, across leader changes too. The lease is kept alive while the
rung runs and revoked after; a holder that dies (kill -9, partition) loses its slots when
the lease's TTL runs out.

A transaction whose answer was lost (a member died mid-request) is safe to retry: the
next read finds the keys that carry our own lease, and those are ours.

etcd3gw speaks etcd's JSON gateway synchronously; its calls run on worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.config.fleet import FLEET, FleetConfig, SemaphoreConfig
from exporter.webhook.auth import read_secret

if TYPE_CHECKING:
    from etcd3gw.client import Etcd3Client

log = logging.getLogger(__name__)


def _encode(data: str | bytes) -> str:
    """etcd's gateway takes keys and values as base64."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _range_end(prefix: str) -> str:
    """The key after every key with this prefix (etcd's range_end for a prefix)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _encode(bytes(raw))


OPS = ("grant", "range", "txn", "keepalive", "revoke")
"""The etcd requests the semaphore makes (medic_fleet_etcd_requests_total{op})."""


class EtcdUnavailable(Exception):
    """No member answered."""


@dataclass(frozen=True, slots=True)
class Holder:
    """One taken slot, as etcd has it."""

    key: str
    scope: str
    host: str
    failure_type: str
    action: str
    since: float
    lease: int


@dataclass(slots=True)
class Slot:
    """The slots one rung holds, and the lease that keeps them."""

    lease: int
    keys: tuple[str, ...]
    since: float
    lost: bool = False
    last_ok: float = field(default=0.0)
    keeper: asyncio.Task[None] | None = None


class Endpoints:
    """etcd3gw clients, one per member; a request that cannot reach one tries the next."""

    def __init__(self, config: SemaphoreConfig, count: Callable[[str, str], None]) -> None:
        # Imported here: only a configured semaphore pays for requests and etcd3gw.
        from etcd3gw import exceptions  # noqa: PLC0415

        self._errors = exceptions
        self._unreachable = (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError)
        self._count = count
        self._clients = [self._client(url, config) for url in config.endpoints]
        self._auth = config.auth
        self._current = 0

    @staticmethod
    def _client(url: str, config: SemaphoreConfig) -> Etcd3Client:
        from etcd3gw.client import Etcd3Client  # noqa: PLC0415

        scheme, _, rest = url.partition("://")
        host, _, port = rest.split("/", 1)[0].rpartition(":")
        tls = config.tls
        return Etcd3Client(
            host=host.strip("[]"), port=int(port or 2379), protocol=scheme,
            ca_cert=tls.ca_file if tls else None, cert_cert=tls.cert_file if tls else None,
            cert_key=tls.key_file if tls else None, timeout=config.timeout, api_path="/v3/",
        )  # fmt: skip

    def call(self, op: str, path: str, body: dict[str, Any]) -> Any:
        """POST to the first member that answers; EtcdUnavailable when none does. A member
        that answers with an error (no leader during an election, leader changed) counts as
        not answering: the next one is asked."""
        errors = []
        for _ in range(len(self._clients)):
            client = self._clients[self._current]
            try:
                if self._auth is not None and "Authorization" not in client.session.headers:
                    self._authenticate(client)
                result = client.post(client.get_url(path), json=body)
            except self._unreachable as exc:
                errors.append(f"{client.base_url}: {type(exc).__name__}")
            except self._errors.Etcd3Exception as exc:
                text = str(exc.detail_text or exc)[:200].strip()
                errors.append(f"{client.base_url}: {text}")
                if self._auth is not None and "token" in text:
                    client.session.headers.pop("Authorization", None)  # expired: log in again
            else:
                self._count(op, "ok")
                return result
            self._current = (self._current + 1) % len(self._clients)
        self._count(op, "error")
        raise EtcdUnavailable("no etcd member answered (" + "; ".join(errors) + ")")

    def _authenticate(self, client: Etcd3Client) -> None:
        assert self._auth is not None
        body = {"name": self._auth.username,
                "password": read_secret(self._auth.password).decode()}  # fmt: skip
        token = client.post(client.get_url("/auth/authenticate"), json=body)["token"]
        client.session.headers["Authorization"] = token


class EtcdSemaphore:
    """Takes and gives back this host's slots; every call runs on a worker thread."""

    def __init__(
        self, fleet: FleetConfig, host: str, clock: Callable[[], float] = time.time
    ) -> None:
        assert fleet.semaphore is not None
        self.config = fleet.semaphore
        self.host = host
        self._clock = clock
        self.requests: dict[tuple[str, str], int] = {
            (op, r): 0 for op in OPS for r in ("ok", "error")
        }
        self._etcd = Endpoints(self.config, self._counted)
        self.scopes: dict[str, tuple[str, int]] = {}
        """scope -> (its key prefix, its slot count)."""
        for scope, limit in self.config.slots.items():
            name = FLEET if scope == FLEET else f"{scope}={fleet.domains[scope]}"
            self.scopes[scope] = (f"{self.config.prefix}/slots/{name}/", limit)
        self._spare_lease: tuple[int, float] | None = None

    def _counted(self, op: str, result: str) -> None:
        self.requests[(op, result)] += 1

    # --- one try ----------------------------------------------------------------------------
    def try_take(self, failure_type: str, action: str) -> Slot | list[Holder]:
        """One attempt: the slot, or the holders of the scopes that are full."""
        while True:
            held = self._read()
            lease = self._spare_lease[0] if self._spare_lease else None
            full: list[Holder] = []
            mine: list[str] = []
            chosen: list[str] = []
            for scope, (prefix, limit) in self.scopes.items():
                holders = held[scope]
                own = [h.key for h in holders if lease is not None and h.lease == lease]
                if own:  # an answer we lost: the transaction did commit
                    mine += own
                elif len(holders) >= limit:
                    full += holders
                else:
                    taken = {h.key for h in holders}
                    chosen.append(
                        next(f"{prefix}{i}" for i in range(limit) if f"{prefix}{i}" not in taken)
                    )
            if full:
                self._drop_stale_lease()
                return full
            if not chosen:
                assert lease is not None
                found = self._granted(lease, tuple(mine))
                if self.keepalive(found):  # it may have aged while etcd did not answer
                    return found
                self._spare_lease = None
                continue
            if lease is None:
                lease = self._grant()
            if self._txn(chosen, lease, failure_type, action):
                return self._granted(lease, tuple(mine + chosen))
            # Another host took one of them between the read and the write: read again.

    def _granted(self, lease: int, keys: tuple[str, ...]) -> Slot:
        self._spare_lease = None
        now = self._clock()
        return Slot(lease, keys, now, last_ok=time.monotonic())

    def _drop_stale_lease(self) -> None:
        """A lease granted for a race we lost: it holds no key, so let it expire unless it is
        fresh enough to use on the next try."""
        if self._spare_lease and time.monotonic() - self._spare_lease[1] > self.config.ttl / 2:
            self._spare_lease = None

    def _grant(self) -> int:
        answer = self._etcd.call("grant", "/lease/grant", {"TTL": self.config.ttl, "ID": 0})
        lease = int(answer["ID"])
        self._spare_lease = (lease, time.monotonic())
        return lease

    def _txn(self, keys: list[str], lease: int, failure_type: str, action: str) -> bool:
        value = json.dumps({"host": self.host, "failure_type": failure_type, "action": action,
                            "since": round(self._clock(), 3)})  # fmt: skip
        body = {
            "compare": [{"key": _encode(k), "result": "EQUAL", "target": "CREATE",
                         "create_revision": 0} for k in keys],
            "success": [{"request_put": {"key": _encode(k), "value": _encode(value),
                                         "lease": lease}} for k in keys],
            "failure": [],
        }  # fmt: skip
        return bool(self._etcd.call("txn", "/kv/txn", body).get("succeeded"))

    def _read(self) -> dict[str, list[Holder]]:
        """Every scope's holders, in one request (a transaction of range reads)."""
        ranges = [{"request_range": {"key": _encode(p),
                                     "range_end": _range_end(p)}}
                  for p, _ in self.scopes.values()]  # fmt: skip
        answer = self._etcd.call("range", "/kv/txn", {"compare": [], "success": ranges})
        held: dict[str, list[Holder]] = {}
        for scope, response in zip(self.scopes, answer.get("responses", []), strict=True):
            held[scope] = [holder(scope, kv) for kv in response["response_range"].get("kvs", [])]
        return held

    def holders(self) -> dict[str, list[Holder]]:
        """Who holds this host's scopes now."""
        return self._read()

    def every_holder(self) -> dict[str, list[Holder]]:
        """Who holds any slot of the fleet, every domain's too (medic fleet status)."""
        prefix = f"{self.config.prefix}/slots/"
        body = {"key": _encode(prefix), "range_end": _range_end(prefix)}
        answer = self._etcd.call("range", "/kv/range", body)
        found: dict[str, list[Holder]] = {}
        for kv in answer.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            scope = key[len(prefix) :].split("/", 1)[0]
            found.setdefault(scope, []).append(holder(scope, kv))
        return found

    # --- while held -------------------------------------------------------------------------
    def keepalive(self, slot: Slot) -> bool:
        """Refresh the lease once; False when etcd says it is gone."""
        answer = self._etcd.call("keepalive", "/lease/keepalive", {"ID": slot.lease})
        ttl = int(answer.get("result", answer).get("TTL", -1))
        if ttl <= 0:
            return False
        slot.last_ok = time.monotonic()
        return True

    def release(self, slot: Slot) -> None:
        """Revoke the lease: its keys go with it."""
        self._etcd.call("revoke", "/kv/lease/revoke", {"ID": slot.lease})


def holder(scope: str, kv: dict[str, Any]) -> Holder:
    """A slot key as etcd's gateway returns it."""
    key = base64.b64decode(kv["key"]).decode()
    try:
        value = json.loads(base64.b64decode(kv.get("value", "")))
    except ValueError:
        value = {}
    return Holder(key, scope, str(value.get("host", "?")), str(value.get("failure_type", "?")),
                  str(value.get("action", "?")), float(value.get("since", 0)),
                  int(kv.get("lease", 0)))  # fmt: skip
