"""Recovery actions: in-process callables, HTTP calls, commands, signals, and built-ins.

Every action is idempotent from medic's side (it may run again on the next alert), honours
dry-run by describing instead of doing, and never passes alert content to a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload

from exporter.config.recovery import (
    CommandActionConfig,
    HttpActionConfig,
    SignalActionConfig,
)
from exporter.recovery.types import ActionResult, FailureEvent

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_TAIL = 400


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may know about the failure it is handling."""

    event: FailureEvent
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False


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


_LABEL_NAME = re.compile(r"[^A-Z0-9_]")


def label_environment(labels: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """base plus MEDIC_LABEL_<NAME>=value per label; names sanitised, existing keys kept."""
    env = dict(base)
    for key, value in labels.items():
        name = "MEDIC_LABEL_" + _LABEL_NAME.sub("_", key.upper())[:64]
        if name not in env and "\0" not in value:
            env[name] = value[:4096]
    return env


class CommandAction:
    """A configured argv, run without a shell; killed (its whole group) on timeout."""

    def __init__(self, name: str, config: CommandActionConfig) -> None:
        self.name = name
        self._argv = list(config.argv)
        self._cwd = config.cwd

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Succeeds on exit status 0; the output's tail goes into the detail."""
        if ctx.dry_run:
            return ActionResult(True, f"would run {self._argv}")
        env = label_environment(ctx.event.labels, dict(os.environ))
        env.setdefault("MEDIC_FAILURE_TYPE", ctx.event.failure_type)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=self._cwd,
                start_new_session=True,  # its own process group, so a timeout kills it all
            )
        except OSError as exc:
            return ActionResult(False, f"cannot run {self._argv[0]}: {exc.strerror or exc}")
        try:
            output, _ = await proc.communicate()
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            raise
        text = output.decode(errors="replace").strip()[-OUTPUT_TAIL:]
        if proc.returncode == 0:
            return ActionResult(True, text)
        return ActionResult(False, f"exit status {proc.returncode}: {text}".rstrip(": "))


def _kill_group(pid: int) -> None:
    """SIGKILL the command's process group; its zombie is reaped by asyncio's child watcher."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class HttpAction:
    """A request to a configured URL; the body carries only a closed set of alert fields."""

    def __init__(self, name: str, config: HttpActionConfig) -> None:
        self.name = name
        self._config = config

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Succeeds on a 2xx answer."""
        import httpx  # noqa: PLC0415 - only processes with http actions pay for it

        config = self._config
        if ctx.dry_run:
            return ActionResult(True, f"would {config.method} {config.url}")
        event = ctx.event
        fields: dict[str, Any] = {
            "failure_type": event.failure_type,
            "source": event.source,
            "dedup_key": event.dedup_key,
            "fingerprint": event.fingerprint,
            "starts_at": event.starts_at,
            "labels": dict(event.labels),
        }
        body = {key: fields[key] for key in config.body_fields}
        content = json.dumps(body).encode() if config.body_fields else None
        headers = dict(config.headers)
        if content is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                response = await client.request(
                    config.method, config.url, content=content, headers=headers
                )
        except httpx.HTTPError as exc:
            return ActionResult(False, f"{type(exc).__name__}: {exc}")
        text = response.text[:OUTPUT_TAIL]
        if 200 <= response.status_code < 300:
            return ActionResult(True, f"{response.status_code} {text}".strip())
        return ActionResult(False, f"HTTP {response.status_code}: {text}".strip())


class SignalAction:
    """Send a configured signal to the pid written in a pidfile."""

    def __init__(self, name: str, config: SignalActionConfig) -> None:
        self.name = name
        self._pidfile = config.pidfile
        self._signal = signal.Signals[config.signal]

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Succeeds when the process existed and received the signal."""
        try:
            with open(self._pidfile, encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError) as exc:
            return ActionResult(False, f"cannot read a pid from {self._pidfile}: {exc}")
        if pid <= 1 or pid == os.getpid():
            return ActionResult(False, f"refusing to signal pid {pid}")
        if ctx.dry_run:
            return ActionResult(True, f"would send {self._signal.name} to {pid}")
        try:
            os.kill(pid, self._signal)
        except (ProcessLookupError, PermissionError) as exc:
            return ActionResult(False, f"{self._signal.name} to {pid}: {exc.strerror or exc}")
        return ActionResult(True, f"sent {self._signal.name} to {pid}")


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
