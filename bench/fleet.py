"""What the fleet stage costs a disruptive rung when nothing contends: the guard's three
Prometheus queries, the etcd slot (read, grant, transaction) and its give-back (revoke),
and the whole stage; beside same-run anchors: one bare Prometheus query (`vector(1)`) and
one bare etcd read, the floors of each round trip on this machine.

    .venv/bin/python -m bench.fleet [--rounds 300]

Real Prometheus 2.42 scraping 12 simulated hosts (one tiny exposition served on
127.0.0.11-22) and a real 3-member etcd 3.4 cluster, all on loopback. Times in ms, p50 and
p99 of single timed calls. Also: etcd requests per remediation, counted by the semaphore.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from exporter.config.fleet import FleetConfig
from exporter.fleet.gate import FleetGate
from exporter.fleet.guard import BlastRadiusGuard
from exporter.fleet.semaphore import OPS, EtcdSemaphore, Slot
from exporter.recovery.episode import Episode
from exporter.recovery.types import FailureEvent
from tests.e2e.etcd import EtcdCluster
from tests.e2e.stack import Prometheus, free_port
from tests.helpers import wait_until

BODY = (
    b"# TYPE medic_recovery_disruptive_in_progress gauge\nmedic_recovery_disruptive_in_progress 0\n"
)


class Exposition(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_: object) -> None:
        pass


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medic-bench-fleet-"))
    port = free_port()
    servers = [ThreadingHTTPServer((f"127.0.0.{n}", port), Exposition) for n in range(11, 23)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    etcd = EtcdCluster(work / "etcd")
    prometheus = Prometheus(work, "groups: []\n", medic="", alertmanager="127.0.0.1:1",
                            targets={f"127.0.0.{n}:{port}": {"rack": "r1" if n < 17 else "r2"}
                                     for n in range(11, 23)})  # fmt: skip
    try:

        def scraped() -> bool:
            try:
                return len(prometheus.query('up{job="medic"} == 1')) == 12
            except httpx.HTTPError:
                return False

        wait_until(scraped, timeout=60, what="Prometheus to scrape the 12 hosts")
        asyncio.run(measure(args.rounds, prometheus.url, etcd))
    finally:
        prometheus.stop()
        etcd.stop()
        for server in servers:
            server.shutdown()


async def measure(rounds: int, prometheus_url: str, etcd: EtcdCluster) -> None:
    fleet = FleetConfig.model_validate({
        "host": "bench", "domains": {"rack": "r1"},
        "guard": {"budgets": [{"max_affected": "50%", "max_in_action": 3},
                              {"domain": "rack", "max_affected": 2}]},
        "semaphore": {"endpoints": etcd.endpoints, "slots": {"fleet": 3, "rack": 1}, "ttl": 30},
    })  # fmt: skip
    guard = BlastRadiusGuard(fleet, prometheus_url)
    semaphore = EtcdSemaphore(fleet, "bench")
    gate = FleetGate(fleet, guard=guard, semaphore=semaphore)
    episode = Episode(1, FailureEvent("vram_exhaustion", "bench"), 0.0)
    floors: dict[str, list[float]] = {"prometheus": [], "etcd": []}
    times: dict[str, list[float]] = {"guard": [], "slot": [], "give back": [], "stage": []}
    async with httpx.AsyncClient() as client:
        member = etcd.members[0].url
        for _ in range(rounds):  # interleaved, so drift hits every figure alike
            started = time.perf_counter()
            await client.get(f"{prometheus_url}/api/v1/query", params={"query": "vector(1)"})
            floors["prometheus"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.post(f"{member}/v3/kv/range", json={"key": "YQ=="})
            floors["etcd"].append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = await guard.check("vram_exhaustion")
            times["guard"].append(time.perf_counter() - started)
            assert answer.kind == "ok", answer
            started = time.perf_counter()
            slot = await asyncio.to_thread(semaphore.try_take, "vram_exhaustion", "restart")
            times["slot"].append(time.perf_counter() - started)
            assert isinstance(slot, Slot)
            started = time.perf_counter()
            await asyncio.to_thread(semaphore.release, slot)
            times["give back"].append(time.perf_counter() - started)
        before = dict(semaphore.requests)
        for _ in range(rounds):
            started = time.perf_counter()
            permit = await gate.admit(episode, "restart")
            assert permit is not None
            await permit.give_back()
            times["stage"].append(time.perf_counter() - started)
    await gate.close()
    print(f"fleet stage, uncontended, {rounds} rounds (12 hosts in Prometheus, 3-member etcd)")
    print(f"  floor: one Prometheus query      {ms(floors['prometheus'])}")
    print(f"  floor: one etcd read             {ms(floors['etcd'])}")
    print(f"  guard (3 queries, concurrent)    {ms(times['guard'])}")
    print(f"  slot taken (read, grant, txn)    {ms(times['slot'])}")
    print(f"  slot given back (revoke)         {ms(times['give back'])}")
    print(f"  whole stage (guard+slot+revoke)  {ms(times['stage'])}")
    med = statistics.median
    guard_ratio = med(times["guard"]) / med(floors["prometheus"])
    stage_ratio = med(times["stage"]) / med(floors["etcd"])
    print(f"  ratios: guard / Prometheus floor {guard_ratio:.2f}x, "
          f"stage / etcd floor {stage_ratio:.2f}x")  # fmt: skip
    ops = {op: semaphore.requests[(op, "ok")] - before[(op, "ok")] for op in OPS}
    per = {op: n / rounds for op, n in ops.items() if n}
    print(
        f"  etcd requests per remediation: {sum(per.values()):.2f} "
        f"({', '.join(f'{op} {n:.2f}' for op, n in per.items())}), plus one keep-alive per "
        f"ttl/3 ({fleet.semaphore.ttl / 3 if fleet.semaphore else 0:g}s) the rung runs"
    )
    print(f"  Prometheus queries per remediation: {guard.prometheus.queries / (2 * rounds):.2f}")


if __name__ == "__main__":
    main()
