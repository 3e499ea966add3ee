"""Actions on other processes: commands (argv, never a shell), HTTP calls, signals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from collections.abc import Callable
from typing import Any

from exporter.config.recovery import CommandActionConfig, HttpActionConfig, SignalActionConfig
from exporter.recovery import launch
from exporter.recovery.actions import ActionContext
from exporter.recovery.launch import exit_result
from exporter.recovery.types import ActionResult

OUTPUT_TAIL = launch.OUTPUT_TAIL
_LABEL_NAME = re.compile(r"[^A-Z0-9_]")


BASE_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR")
"""What a command gets of medic's environment without asking: enough to find programs and
decode text. Everything else (secrets read from env, proxies, tokens) only by name, through
the action's env_passthrough."""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def base_environment(source: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The few variables every program medic starts may see (no secret of medic's)."""
    env = {name: source[name] for name in BASE_ENVIRONMENT if name in source}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def read_pid(path: str) -> int:
    """The pid written in a pid file; OSError or ValueError when there is none."""
    with open(path, encoding="ascii") as handle:
        return int(handle.read().strip())


def command_environment(
    config: CommandActionConfig, source: dict[str, str] | os._Environ[str]
) -> dict[str, str]:
    """The base variables and the passthrough names that are set in source, then the
    action's own env (a passthrough name never carries medic's secret if the config
    sets it too: the config's value wins)."""
    env = base_environment(source)
    env.update({name: source[name] for name in config.env_passthrough if name in source})
    env.update(config.env)
    return env


MAX_LABEL_VALUE = 4096


def label_environment(
    labels: dict[str, str],
    base: dict[str, str],
    altered: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """base plus MEDIC_LABEL_<NAME>=value per label; names sanitised, existing keys kept.
    A value with a NUL byte is left out and a longer one cut at MAX_LABEL_VALUE (each told
    to altered: "nul_dropped" or "truncated")."""
    env = dict(base)
    for key, value in labels.items():
        name = "MEDIC_LABEL_" + _LABEL_NAME.sub("_", key.upper())[:64]
        if name in env:
            continue
        if "\0" in value:
            if altered is not None:
                altered("nul_dropped")
            continue
        if len(value) > MAX_LABEL_VALUE and altered is not None:
            altered("truncated")
        env[name] = value[:MAX_LABEL_VALUE]
    return env


def _runnable(program: str, cwd: str | None, path: str | None) -> bool:
    """Whether argv[0] names an executable (a path, from cwd; or a name, on PATH). Checked
    before launching: the wrapper would otherwise only say so in an exit status 127."""
    if "/" in program:
        return os.access(os.path.join(cwd or "", program), os.X_OK)
    return shutil.which(program, path=path) is not None


class CommandAction:
    """A configured argv, started behind a gate once its pid is recorded (see launch.py);
    killed, its whole process group, on timeout; left running when medic stops."""

    def __init__(
        self,
        name: str,
        config: CommandActionConfig,
        altered: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._altered = altered
        self._argv = list(config.argv)
        self._cwd = config.cwd
        self._config = config

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Succeeds on exit status 0; the output's tail goes into the detail."""
        if ctx.dry_run:
            return ActionResult(True, f"would run {self._argv}")
        base = command_environment(self._config, os.environ)
        env = label_environment(ctx.event.labels, base, self._altered)
        env["MEDIC_FAILURE_TYPE"] = ctx.event.failure_type
        env["MEDIC_EPISODE"] = ctx.episode
        env["MEDIC_ATTEMPT"] = str(ctx.attempt_id)
        program = self._argv[0]
        if not _runnable(program, self._cwd, env.get("PATH")):
            return ActionResult(False, f"cannot run {program}: No such file or directory")
        assert ctx.runs is not None, "the engine gives commands a runs directory"
        files = launch.RunFiles.of(ctx.runs, ctx.attempt_id)
        try:
            started = launch.spawn(self._argv, files, env, self._cwd)
        except OSError as exc:
            return ActionResult(False, f"cannot run {program}: {exc.strerror or exc}")
        try:
            recorded = await ctx.record_launch(started.launch)
        except BaseException:
            started.hold_back()  # nothing runs: the wrapper reads end-of-file and exits
            raise
        if not recorded:
            started.hold_back()
            await started.wait()
            files.remove()
            return ActionResult(False, "not started: the journal could not record its process")
        started.release()
        try:
            code = await started.wait()
        except asyncio.CancelledError:
            if not ctx.stopping():  # the rung's timeout: the whole group goes
                started.kill()
            raise  # medic stops: the command goes on, and the next medic adopts it
        if code is None:
            code = files.exit_status()
        # The files stay until the attempt's end is committed (the ladder removes them): a
        # restart in between must still see that the command ran.
        return exit_result(-9 if code is None else code, files.output_tail())


class HttpAction:
    """A request to a configured URL; the body carries only a closed set of alert fields."""

    def __init__(self, name: str, config: HttpActionConfig) -> None:
        self.name = name
        self._config = config

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Succeeds on a 2xx answer."""
        import httpx  # noqa: PLC0415 - only processes with http actions pay for the import

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
            pid = read_pid(self._pidfile)
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
