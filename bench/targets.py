"""What the target lock and budget add to an event's path to its action: the rung gates'
check and settle, with TargetGate (budget and cooldown configured) and without it.

    .venv/bin/python -m bench.targets [--calls 20000] [--repeat 7]

Per-check times in µs, p50 and p99 of single timed calls (time.perf_counter_ns), best
repeat of `repeat`; the two gate chains measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from exporter.clock import SystemClock
from exporter.config import parse_config
from exporter.recovery.episode import Episode
from exporter.recovery.gates import DryRunGate, Gates, RateLimitGate, Step, TargetGate
from exporter.recovery.types import FailureEvent

CONFIG = """
recovery:
  rate_limit: {actions: 100000000, per: 1s}
  targets:
    vllm.service: {cooldown: 0s, budget: {actions: 100000000, per: 15m}}
  actions:
    restart: {type: command, target: vllm.service, argv: ["true"]}
  failures:
    vram_exhaustion: {ladder: [restart]}
"""


def timings(gates: Gates, step: Step, calls: int) -> list[float]:
    found = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        verdict = gates.check(step)
        for settle in verdict.settle:
            settle(True)
        found.append((time.perf_counter_ns() - started) / 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    config = parse_config(CONFIG, env={}).recovery
    clock = SystemClock()
    rung = config.failures["vram_exhaustion"].ladder[0]
    step = Step(Episode(1, FailureEvent("vram_exhaustion", "api"), 0.0), rung)
    chains = {
        "without TargetGate": Gates(RateLimitGate(10**8, 1.0, clock), DryRunGate(False)),
        "with TargetGate": Gates(TargetGate(config, clock), RateLimitGate(10**8, 1.0, clock),
                                 DryRunGate(False)),
    }  # fmt: skip
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, gates in chains.items():
            found = sorted(timings(gates, step, args.calls))
            p50, p99 = statistics.median(found), found[int(len(found) * 0.99)]
            if name not in best or p99 < best[name][1]:
                best[name] = (p50, p99)
    for name, (p50, p99) in best.items():
        print(f"rung gates {name}: p50 {p50:.2f} µs, p99 {p99:.2f} µs per check+settle")
    added = best["with TargetGate"][1] - best["without TargetGate"][1]
    print(f"added by the target lock and budget at p99: {added:.2f} µs ({added / 1000:.4f} ms)")


if __name__ == "__main__":
    main()
