"""Recovery actions medic runs in its own process: the protocol every action follows, the
embedding app's callables, and the built-ins. Commands, HTTP calls and signals, which act
on other processes, are in exporter.recovery.external.

Every action honours dry-run by describing instead of doing, and never passes alert content
to a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

from exporter.recovery.episode import Launch
from exporter.recovery.types import ActionResult, FailureEvent

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


async def _recorded(_: Launch) -> bool:
    return True


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may know about the failure it is handling, and what the engine lends
    it: where a command leaves its files, how it records its process before it runs, and
    whether medic is stopping (a command is then left running for the next medic)."""

    event: FailureEvent
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    attempt_id: int = 0
    episode: str = ""
    """The episode's dedup key, or `episode-<id>` for a one-off report."""
    runs: Path | None = None
    record_launch: Callable[[Launch], Awaitable[bool]] = _recorded
    stopping: Callable[[], bool] = _never


class Action(Protocol):
    """A named step of a ladder."""

    name: str

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Do it (or describe it under dry-run) and say how it went."""
        ...


def run_in_daemon_thread(fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run blocking fn on a daemon thread; a hung one is abandoned at the timeout and cannot
    hold process exit (asyncio.to_thread's pool threads would)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def body() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=body, name="medic-action", daemon=True).start()
    return future


async def run_until_cut_off(fn: Callable[[threading.Event], Any]) -> Any:
    """Run blocking fn(cut_off) on a daemon thread. When the awaiting task is cancelled (the
    rung's timeout, medic's stop) cut_off is set, so that a restart stops before its next
    step (the start, above all) instead of acting for a rung that has already ended."""
    cut_off = threading.Event()
    try:
        return await run_in_daemon_thread(lambda: fn(cut_off))
    except asyncio.CancelledError:
        cut_off.set()
        raise


def _as_result(value: Any) -> ActionResult:
    if isinstance(value, ActionResult):
        return value
    if value is None or value is True:
        return ActionResult(True)
    if value is False:
        return ActionResult(False, "action returned False")
    if isinstance(value, str):
        return ActionResult(True, value)
    raise TypeError(f"action returned {type(value).__name__}; expected ActionResult, bool or None")


class CallableAction:
    """An app's own function (sync or async), registered under an action name."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self._fn = fn
        self._wants_ctx = len(inspect.signature(fn).parameters) > 0

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Call it with the context (if it takes an argument); map its return value."""
        if ctx.dry_run:
            return ActionResult(True, f"would call {self.name}")
        args = (ctx,) if self._wants_ctx else ()
        if inspect.iscoroutinefunction(self._fn):
            return _as_result(await self._fn(*args))
        return _as_result(await run_in_daemon_thread(lambda: self._fn(*args)))


class MissingAction:
    """An in-process action named in the config that the app has not registered."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Always fails, saying what is missing."""
        return ActionResult(False, f"no callable registered for in-process action {self.name!r}")


class ClearGpuCache:
    """torch.cuda.empty_cache() where this process already uses CUDA, plus gc.collect()."""

    name = "clear_gpu_cache"

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Free cached CUDA blocks; skipped (not failed) when this process has no CUDA."""
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return ActionResult(
                False, "skipped: torch with CUDA is not in use in this process", unavailable=True
            )
        if ctx.dry_run:
            return ActionResult(True, "would run gc.collect() and torch.cuda.empty_cache()")
        before = int(torch.cuda.memory_reserved())
        gc.collect()
        torch.cuda.empty_cache()
        freed = before - int(torch.cuda.memory_reserved())
        return ActionResult(True, f"released {freed / 2**20:.0f} MiB of cached CUDA memory")


class SystemHealthCheck:
    """Run every check now (the seeds' system_health_check)."""

    name = "system_health_check"

    def __init__(self, run_all: Callable[[], dict[str, Any]]) -> None:
        self._run_all = run_all

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Succeeds when every check passes."""
        if ctx.dry_run:
            return ActionResult(True, "would run every check")
        results = await run_in_daemon_thread(self._run_all)
        failing = sorted(name for name, result in results.items() if not result.ok)
        if failing:
            return ActionResult(False, f"failing: {', '.join(failing)}")
        return ActionResult(True, f"{len(results)} checks pass")


class ActionRegistry:
    """In-process actions an embedding app registers by name (sync or async callables)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callables: dict[str, Callable[..., Any]] = {}

    @overload
    def register(self, name: str) -> Callable[[F], F]: ...
    @overload
    def register(self, name: str, fn: F) -> F: ...
    def register(self, name: str, fn: F | None = None) -> F | Callable[[F], F]:
        """Register fn (sync or async; may take an ActionContext) under name.

        Also a decorator: `@medic.actions.register("reduce_generation_params")`.
        """
        if fn is None:
            return lambda f: self.register(name, f)
        with self._lock:
            self._callables[name] = fn
        return fn

    def get(self, name: str) -> Callable[..., Any] | None:
        """The callable registered under name, or None."""
        with self._lock:
            return self._callables.get(name)
