"""The etcd semaphore against a real 3-member etcd cluster on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config.fleet import FleetConfig
from exporter.fleet.semaphore import EtcdSemaphore, EtcdUnavailable, Holder, Slot
from tests.e2e.etcd import EtcdCluster
from tests.helpers import wait_until


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    yield cluster
    cluster.stop()


def semaphore(etcd: EtcdCluster, host: str, rack: str = "r1", *, fleet: int = 3,
              per_rack: int | None = None, ttl: int = 10) -> EtcdSemaphore:  # fmt: skip
    slots = {"fleet": fleet} | ({"rack": per_rack} if per_rack else {})
    config = FleetConfig.model_validate({
        "host": host, "domains": {"rack": rack},
        "semaphore": {"endpoints": etcd.endpoints, "slots": slots, "ttl": ttl, "timeout": 1},
    })  # fmt: skip
    return EtcdSemaphore(config, host)


def test_at_most_k_holders_and_a_release_frees_a_slot(etcd: EtcdCluster) -> None:
    hosts = [semaphore(etcd, f"h{i}") for i in range(4)]
    slots = [hosts[i].try_take("vram_exhaustion", "restart") for i in range(3)]
    assert all(isinstance(s, Slot) for s in slots)
    full = hosts[3].try_take("vram_exhaustion", "restart")
    assert isinstance(full, list)
    assert sorted(h.host for h in full) == ["h0", "h1", "h2"]
    assert {h.action for h in full} == {"restart"}
    first = slots[0]
    assert isinstance(first, Slot)
    hosts[0].release(first)
    assert isinstance(hosts[3].try_take("vram_exhaustion", "restart"), Slot)
    # Uncontended: grant, read, transaction; the release is one revoke.
    assert hosts[0].requests[("grant", "ok")] == 1
    assert hosts[0].requests[("range", "ok")] == 1
    assert hosts[0].requests[("txn", "ok")] == 1
    assert hosts[0].requests[("revoke", "ok")] == 1


def test_slots_are_taken_in_every_scope_at_once_or_not_at_all(etcd: EtcdCluster) -> None:
    a = semaphore(etcd, "a", "r1", per_rack=1)
    b = semaphore(etcd, "b", "r1", per_rack=1)
    c = semaphore(etcd, "c", "r2", per_rack=1)
    assert isinstance(a.try_take("ft", "restart"), Slot)
    blocked = b.try_take("ft", "restart")  # its rack is full; the fleet has room
    assert isinstance(blocked, list)
    assert [h.host for h in blocked] == ["a"]
    assert all(h.scope == "rack" for h in blocked)
    held = a.holders()
    assert [h.host for h in held["fleet"]] == ["a"]  # b took no fleet slot on the way
    assert isinstance(c.try_take("ft", "restart"), Slot)  # another rack
    assert sorted(h.host for h in a.holders()["fleet"]) == ["a", "c"]


def test_a_dead_holders_slot_frees_when_its_lease_expires(etcd: EtcdCluster) -> None:
    dead = semaphore(etcd, "dead", fleet=1, ttl=2)
    waiting = semaphore(etcd, "waiting", fleet=1, ttl=2)
    assert isinstance(dead.try_take("ft", "restart"), Slot)  # and never kept alive
    assert isinstance(waiting.try_take("ft", "restart"), list)

    def taken() -> bool:
        return isinstance(waiting.try_take("ft", "restart"), Slot)

    wait_until(taken, timeout=15, what="the dead holder's lease to expire")


def test_keepalive_keeps_a_slot_past_its_ttl(etcd: EtcdCluster) -> None:
    holder = semaphore(etcd, "holder", fleet=1, ttl=2)
    other = semaphore(etcd, "other", fleet=1, ttl=2)
    slot = holder.try_take("ft", "restart")
    assert isinstance(slot, Slot)
    deadline = time.monotonic() + 4  # twice the TTL
    while time.monotonic() < deadline:
        assert holder.keepalive(slot)
        assert isinstance(other.try_take("ft", "restart"), list)
        time.sleep(0.5)  # a keep-alive period, not a synchronisation
    holder.release(slot)
    assert not holder.keepalive(slot)  # revoked: etcd says it is gone
    assert isinstance(other.try_take("ft", "restart"), Slot)


def test_a_lost_answer_is_retried_as_our_own_slot(etcd: EtcdCluster) -> None:
    """The transaction committed but its answer never came: the next try finds the keys
    under our lease and takes them as ours, not a second slot."""
    host = semaphore(etcd, "h", fleet=2)
    lease = host._grant()
    assert host._txn([f"{host.scopes['fleet'][0]}0"], lease, "ft", "restart")
    again = host.try_take("ft", "restart")
    assert isinstance(again, Slot)
    assert again.lease == lease
    assert len(host.holders()["fleet"]) == 1


def test_racing_hosts_never_exceed_the_slots(etcd: EtcdCluster) -> None:
    hosts = [semaphore(etcd, f"h{i}") for i in range(12)]
    got: list[Slot | list[Holder]] = [[] for _ in hosts]
    barrier = threading.Barrier(len(hosts))

    def race(i: int) -> None:
        barrier.wait()
        got[i] = hosts[i].try_take("ft", "restart")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(hosts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [g for g in got if isinstance(g, Slot)]
    assert len(winners) == 3
    assert len({w.keys for w in winners}) == 3  # three different slots


def test_no_slot_is_granted_twice_across_a_leader_change(etcd: EtcdCluster) -> None:
    """Hosts take, hold and give back slots in a loop while the leader is killed: at no
    moment do more than K hold one (counted by the holders themselves, in real time)."""
    hosts = [semaphore(etcd, f"h{i}", fleet=2) for i in range(6)]
    lock = threading.Lock()
    holding: set[str] = set()
    peak, grants, errors = [0], [0], [0]
    stop = threading.Event()

    def work(host: EtcdSemaphore) -> None:
        while not stop.is_set():
            try:
                got = host.try_take("ft", "restart")
            except EtcdUnavailable:
                errors[0] += 1
                continue
            if not isinstance(got, Slot):
                stop.wait(0.05)
                continue
            with lock:
                holding.add(host.host)
                peak[0] = max(peak[0], len(holding))
                grants[0] += 1
            stop.wait(0.05)  # the "action"
            with lock:
                holding.discard(host.host)
            try:
                host.release(got)
            except EtcdUnavailable:  # it frees at its TTL
                errors[0] += 1

    threads = [threading.Thread(target=work, args=(h,)) for h in hosts]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: grants[0] >= 10, timeout=30, what="grants before the kill")
        leader = etcd.leader()
        assert leader is not None
        leader.kill()
        before = grants[0]
        wait_until(lambda: grants[0] >= before + 20, timeout=60,
                   what="grants after the leader died")  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert peak[0] <= 2
    assert etcd.leader() is not None


def test_no_member_answering_is_etcd_unavailable(etcd: EtcdCluster) -> None:
    host = semaphore(etcd, "h")
    etcd.stop()
    with pytest.raises(EtcdUnavailable, match="no etcd member answered"):
        host.try_take("ft", "restart")
    assert host.requests[("range", "error")] == 1
