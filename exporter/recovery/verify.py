"""Verification: after a rung, are the failure type's checks passing again?"""

from __future__ import annotations

import asyncio

from exporter.checks import HealthChecker
from exporter.config.recovery import FailureConfig, RungConfig
from exporter.recovery.actions import run_in_daemon_thread


async def verify(
    health: HealthChecker, ladder: FailureConfig, rung: RungConfig
) -> tuple[bool, str]:
    """Re-run the failure type's checks after the settle delay: (recovered, why)."""
    if not ladder.verify:
        return True, "no checks to verify with"
    settle = ladder.settle_delay if rung.settle_delay is None else rung.settle_delay
    await asyncio.sleep(settle)
    names = list(ladder.verify)
    results = await run_in_daemon_thread(lambda: [health.run(n) for n in names])
    failing = [f"{r.name}: {r.reason}" for r in results if not r.ok]
    if failing:
        return False, "still failing: " + "; ".join(failing)
    return True, f"verified by {', '.join(names)}"
