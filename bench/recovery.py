"""Recovery engine throughput and latency, with the SQLite journal on.

    .venv/bin/python -m bench.recovery [--events 20000] [--rate 2000] [--seconds 3]
    .venv/bin/python -m bench.recovery --compare /tmp/medic-before [--rounds 5]

(--compare runs an older checkout, e.g. a git worktree, and this one in turn, in one run,
each in its own process, and prints the medians and their ratio.)

The ladder's only rung is a no-op async in-process action; every event is its own episode.
1. Throughput: submit `events` at once; events/s from the first submit until every attempt
   is recorded, then check every journal row was committed.
2. Latency: submit at a steady `rate` (below capacity) for `seconds`; the delay from
   submit() to the action starting, p50 and p99. (In a burst that delay is queueing.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exporter.app import Medic
from exporter.config import parse_config
from exporter.recovery.actions import ActionContext
from exporter.recovery.types import FailureEvent

TYPES = (
    "network_error",
    "vram_exhaustion",
    "generation_pipeline_error",
    "model_loading_failure",
    "hardware_optimization_failure",
    "system_resource_error",
)
CONFIG = """
data_dir: {data}
recovery:
  queue_size: {queue}
  workers: 8
  max_waiting_per_type: 64
  rate_limit: {{actions: 100000000, per: 1s}}
  cooldown: {{base: 0s}}
  actions:
    noop: {{type: in_process}}
  failures:
{failures}
"""


class Run:
    def __init__(self, data: str, queue: int, types: int = 1) -> None:
        self.types = TYPES[:types]
        failures = "\n".join(f"    {ft}: {{ladder: [noop]}}" for ft in self.types)
        text = CONFIG.format(data=data, queue=queue, failures=failures)
        self.medic = Medic(parse_config(text, env={}))
        self.submitted: dict[str, float] = {}
        self.latencies: list[float] = []

        @self.medic.actions.register("noop")
        async def noop(ctx: ActionContext) -> bool:
            key = ctx.event.dedup_key or ""
            self.latencies.append(time.perf_counter() - self.submitted[key])
            return True

        self.medic.start()
        # As `medic run` does after start-up (cli._tune_runtime): start-up objects leave the
        # collector's way. Without it, full collections over them (~30 ms here) set p99.
        gc.collect()
        gc.freeze()

    def submit(self, key: str, n: int = 0) -> None:
        self.submitted[key] = time.perf_counter()
        event = FailureEvent(self.types[n % len(self.types)], "bench", dedup_key=key)
        result = self.medic.recovery.submit(event)
        assert result.accepted, result

    def wait_recorded(self, count: int) -> None:
        deadline = time.monotonic() + 120
        while sum(self.medic.recovery.snapshot()["attempts"].values()) < count:
            if time.monotonic() > deadline:
                raise SystemExit("the engine did not finish within 120 s")
            time.sleep(0.002)

    def committed(self) -> int:
        db = self.medic.db
        assert db is not None and db.flush(30)
        return int(db.query("SELECT COUNT(*) FROM recovery_attempts")[0][0])

    def close(self) -> None:
        self.medic.stop()
        if self.medic.db is not None:
            self.medic.db.close()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(pct / 100 * len(ordered)) - 1)] * 1e3


def compare(before: Path, args: argparse.Namespace) -> None:
    """This file run under each tree (PYTHONPATH selects `exporter`), alternating."""
    found: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    here = Path(__file__).resolve()
    for n in range(args.rounds):
        for name, tree in (("before", before), ("after", here.parents[1])):
            out = subprocess.run(
                [sys.executable, str(here), "--json", "--events", str(args.events),
                 "--rate", str(args.rate), "--seconds", str(args.seconds),
                 "--types", str(args.types)],
                capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
                env={**os.environ, "PYTHONPATH": str(tree)},
            ).stdout  # fmt: skip
            figures = json.loads(out.strip().splitlines()[-1])
            found[name].append(figures)
            line = (f"  {name} round {n + 1}: burst {figures['burst_rate']:,.0f} events/s, "
                    f"p50 {figures['p50']:.2f} ms, p99 {figures['p99']:.2f} ms, "
                    f"{figures['ran']:.0%} of paced events ran")  # fmt: skip
            print(line, flush=True)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for name, runs in found.items()}  # fmt: skip
    for name in ("before", "after"):
        m = med[name]
        print(f"{name}: median burst {m['burst_rate']:,.0f} events/s; steady {args.rate}/s over "
              f"{args.types} failure type(s): submit -> action start p50 {m['p50']:.2f} ms, "
              f"p99 {m['p99']:.2f} ms; {m['ran']:.0%} ran (the rest: skipped_concurrency)"
              )  # fmt: skip
    print(f"after / before: burst {med['after']['burst_rate'] / med['before']['burst_rate']:.2f}x, "
          f"p99 {med['after']['p99'] / med['before']['p99']:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--types",
        type=int,
        default=1,
        choices=range(1, len(TYPES) + 1),
        help="paced events go round-robin over this many failure types",
    )
    parser.add_argument("--compare", type=Path, metavar="TREE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON line of figures")
    args = parser.parse_args()
    if args.compare is not None:
        compare(args.compare.resolve(), args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        burst = Run(f"{tmp}/burst", args.events)
        started = time.perf_counter()
        for i in range(args.events):
            burst.submit(f"b{i}")
        burst.wait_recorded(args.events)
        elapsed = time.perf_counter() - started
        rows = burst.committed()
        burst.close()

        paced = Run(f"{tmp}/paced", args.events, args.types)
        total = int(args.rate * args.seconds)
        begin = time.perf_counter()
        for i in range(total):
            due = begin + i / args.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # releases the GIL; a busy-wait would starve the engine
            paced.submit(f"p{i}", i)
        paced.wait_recorded(total)
        paced.close()
    if args.json:
        print(json.dumps({"burst_rate": args.events / elapsed, "rows": rows,
                          "p50": percentile(paced.latencies, 50),
                          "p99": percentile(paced.latencies, 99),
                          "ran": len(paced.latencies) / total}))  # fmt: skip
        return
    print(f"burst: {args.events} events in {elapsed:.2f} s = {args.events / elapsed:,.0f} events/s "
          f"through the no-op action; {rows} journal rows committed")  # fmt: skip
    print(
        f"steady {args.rate}/s for {args.seconds:g} s: submit -> action start "
        f"p50 {percentile(paced.latencies, 50):.2f} ms, "
        f"p99 {percentile(paced.latencies, 99):.2f} ms ({len(paced.latencies)} actions)"
    )
    print(
        f"burst, queueing included: p50 {percentile(burst.latencies, 50):.1f} ms, "
        f"p99 {percentile(burst.latencies, 99):.1f} ms"
    )


if __name__ == "__main__":
    main()
