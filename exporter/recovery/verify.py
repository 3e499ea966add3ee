"""Verification: after a rung, are the failure type's checks passing again?

The checks are polled until they all pass or the rung's verify deadline passes: a model
server takes from seconds to minutes to serve again after a restart (vLLM: 30 s to 10
minutes), so one look after a fixed delay would call a working restart a failure, or a
failed one a success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from exporter.checks import HealthChecker
from exporter.config.recovery import FailureConfig, RungConfig
from exporter.recovery.actions import run_in_daemon_thread


async def verify(
    health: HealthChecker,
    ladder: FailureConfig,
    rung: RungConfig,
    stopping: Callable[[], bool] = lambda: False,
    prometheus: Callable[[str], str] | None = None,
    *,
    startup: float | None = None,
) -> tuple[bool, str]:
    """After the settle delay, poll the failure type's checks (and, with verify_query, the
    alert's own condition: `prometheus(expr)` says what still matches, "" for nothing) until
    they pass or the verify deadline passes: (recovered, why). A stop of medic ends the
    wait (not recovered). `startup` is the action's start-up deadline, for a restart; the
    rung's own verify_timeout wins over it, and it over the failure type's."""
    if not ladder.verifies:
        return True, "no checks to verify with"
    settle = ladder.settle_delay if rung.settle_delay is None else rung.settle_delay
    timeout = ladder.verify_timeout if startup is None else startup
    timeout = timeout if rung.verify_timeout is None else rung.verify_timeout
    await asyncio.sleep(settle)
    loop = asyncio.get_running_loop()
    # The loop's clock, not medic's injected one: the waits below run on this loop.
    started = loop.time()
    names = list(ladder.verify)
    said = [*names, *(["the alert's condition"] if ladder.verify_query else [])]
    while True:
        results = await run_in_daemon_thread(lambda: [health.run(n) for n in names])
        failing = [f"{r.name}: {r.reason}" for r in results if not r.ok]
        if not failing and ladder.verify_query:
            # Without a Prometheus to ask, the condition is not known to be gone.
            still = (
                await run_in_daemon_thread(lambda: prometheus(str(ladder.verify_query)))
                if prometheus is not None
                else "no recovery.prometheus_url to ask"
            )
            if still:
                failing.append(f"{ladder.verify_query}: {still}")
        waited = loop.time() - started
        if not failing:
            after = f" after {waited:.1f}s" if waited >= ladder.verify_interval else ""
            return True, f"verified by {', '.join(said)}{after}"
        left = timeout - waited
        if left <= 0 or stopping():
            within = f" within {timeout:g}s" if timeout > 0 else ""
            return False, f"still failing{within}: " + "; ".join(failing)
        await asyncio.sleep(min(ladder.verify_interval, left))
