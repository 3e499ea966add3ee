"""Drain around an action: take the server out of rotation, wait until its in-flight work
reaches zero (or the deadline), act, and put it back, whatever the action's result.

A restart under load fails every request it cuts off; with the drain call first (out of
the load balancer, or not-ready) new requests go elsewhere and those already running get to
finish. The undo is retried until the drain's deadline: after a restart the server that
answers it may still be starting.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from exporter.checks.scrape import TEXT, snapshot
from exporter.config.recovery import DrainCallConfig, DrainConfig
from exporter.recovery.actions import Action, ActionContext
from exporter.recovery.types import ActionResult

CALL_TIMEOUT = 5.0


class DrainError(Exception):
    """The drain could not be done; the action does not run."""


class Drained:
    """An action with its drain: call, wait for idle, act, undo."""

    def __init__(self, action: Action, config: DrainConfig) -> None:
        self.name = action.name
        self._action = action
        self._config = config

    async def _call(self, client: httpx.AsyncClient, call: DrainCallConfig) -> str:
        response = await client.request(
            call.method, call.url, headers=call.headers, content=call.body
        )
        if not 200 <= response.status_code < 300:
            raise DrainError(f"{call.method} {call.url} answered {response.status_code}")
        return f"{call.method} {call.url}: {response.status_code}"

    async def _in_flight(self, client: httpx.AsyncClient) -> float:
        idle = self._config.idle
        assert idle is not None
        names = idle.names()
        response = await client.get(idle.url, headers={"Accept": TEXT})
        response.raise_for_status()
        found = snapshot(response.text, set(names))
        return sum(value for name in names for _, value in found.get(name, []))

    async def _wait_idle(self, client: httpx.AsyncClient) -> str:
        config, idle = self._config, self._config.idle
        assert idle is not None
        started = time.monotonic()
        first = None
        while True:
            try:
                now: float | None = await self._in_flight(client)
                why = ""
            except (httpx.HTTPError, ValueError) as exc:
                now, why = None, f"cannot read {idle.url}: {exc}"
            first = now if first is None else first
            waited = time.monotonic() - started
            if now is not None and now <= idle.max:
                return f"in flight {first:g} -> {now:g} after {waited:.1f}s"
            if waited >= config.deadline:
                still = why or f"{now:g} still in flight"
                if config.on_deadline == "fail":
                    raise DrainError(f"not idle after {config.deadline:g}s: {still}")
                return f"acting anyway after {config.deadline:g}s: {still}"
            await asyncio.sleep(min(config.poll, config.deadline - waited))

    async def _undo(self, client: httpx.AsyncClient) -> str:
        config, undo = self._config, self._config.undo
        assert undo is not None
        deadline = time.monotonic() + config.deadline
        while True:
            try:
                return "undone: " + await self._call(client, undo)
            except (httpx.HTTPError, DrainError) as exc:
                if time.monotonic() >= deadline:
                    return f"undo failed: {exc}"
            await asyncio.sleep(config.poll)

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Drain, act, undo; the action's result, with what the drain saw."""
        config = self._config
        if ctx.dry_run:
            inner = await self._action.run(ctx)
            return ActionResult(inner.ok, f"{inner.detail} (drained first)", inner.unavailable)
        before: list[str] = []
        after = ""
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT, follow_redirects=False) as client:
            try:
                try:
                    if config.call is not None:
                        before.append("drained: " + await self._call(client, config.call))
                    if config.idle is not None:
                        before.append(await self._wait_idle(client))
                except (httpx.HTTPError, DrainError) as exc:
                    return ActionResult(False, f"drain failed, not acting: {exc}")
                result = await self._action.run(ctx)
            finally:
                # Whatever happened, a cut-off rung (its timeout) included: put it back.
                if config.undo is not None:
                    after = await self._undo(client)
        detail = "; ".join(part for part in [*before, result.detail, after] if part)
        return ActionResult(result.ok, detail, result.unavailable)
