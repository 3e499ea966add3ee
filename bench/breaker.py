"""Overhead of a guarded call, ns per call, medic's breaker next to pybreaker's.

    .venv/bin/python -m bench.breaker [--calls 200000] [--repeat 7]

Each figure is the best of `repeat` timed loops (the least disturbed by the other core's
work), minus the same loop calling the function unguarded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import pybreaker

from exporter.resilience import CircuitBreaker


def work(x: int = 1) -> int:
    return x + 1


async def awork(x: int = 1) -> int:
    return x + 1


def best_ns(loop: Callable[[int], None], calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter_ns()
        loop(calls)
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    ours = CircuitBreaker("bench")
    theirs = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    decorated = ours(work)

    def plain(n: int) -> None:
        for _ in range(n):
            work(1)

    def medic_call(n: int) -> None:
        call = ours.call
        for _ in range(n):
            call(work, 1)

    def medic_decorated(n: int) -> None:
        for _ in range(n):
            decorated(1)

    def medic_context(n: int) -> None:
        for _ in range(n):
            with ours:
                work(1)

    def pybreaker_call(n: int) -> None:
        call = theirs.call
        for _ in range(n):
            call(work, 1)

    def run_async(body: Callable[[int], object]) -> Callable[[int], None]:
        return lambda n: asyncio.run(body(n))  # type: ignore[arg-type]

    async def aplain(n: int) -> None:
        for _ in range(n):
            await awork(1)

    async def amedic(n: int) -> None:
        call = ours.call_async
        for _ in range(n):
            await call(awork, 1)

    c, r = args.calls, args.repeat
    base = best_ns(plain, c, r)
    abase = best_ns(run_async(aplain), c, r)
    rows = [
        ("medic CircuitBreaker.call", best_ns(medic_call, c, r) - base),
        ("medic @breaker decorator", best_ns(medic_decorated, c, r) - base),
        ("medic `with breaker:`", best_ns(medic_context, c, r) - base),
        ("pybreaker CircuitBreaker.call", best_ns(pybreaker_call, c, r) - base),
        ("medic call_async (vs plain await)", best_ns(run_async(amedic), c, r) - abase),
    ]
    print(f"unguarded call: {base:.0f} ns; unguarded await: {abase:.0f} ns")
    print()
    print("| guarded call, closed breaker | overhead ns/call |")
    print("|---|---|")
    for label, ns in rows:
        print(f"| {label} | {ns:.0f} |")
    print()
    print(f"medic / pybreaker (call): {rows[0][1] / rows[3][1]:.2f}")


if __name__ == "__main__":
    main()
