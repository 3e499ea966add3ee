"""The `supervisor` action: restart a supervisord program through its XML-RPC interface
and wait until it is RUNNING again (supervisord's own startsecs decide when that is).

supervisord has no per-process restart call (`supervisor.restart()` restarts supervisord
itself), so this is stopProcess(wait) then startProcess(wait), as supervisorctl does. The
unix socket (`unix:///run/supervisor.sock`) or `[inet_http_server]` URL is the config's;
credentials come from a file or the environment. Note what a plain restart cannot do: a
program whose main process exits before its children counts as stopped while a child
still holds ports or GPU memory; verify the rung with a real request.
"""

from __future__ import annotations

import http.client
import threading
import xmlrpc.client
from typing import Any

from exporter.config.recovery import SupervisorActionConfig
from exporter.config.server import BasicAuthConfig
from exporter.recovery.actions import ActionContext, run_until_cut_off
from exporter.recovery.hygiene import GpuProcesses, capture, settle
from exporter.recovery.types import ActionResult
from exporter.recovery.unixhttp import UnixConnection
from exporter.webhook.auth import SecretError, authorization

ALIVE = ("RUNNING", "STARTING", "BACKOFF")


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self._path, self._timeout = path, timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # Kept where the base class keeps its own, so that close() closes it.
        if self._connection[1] is not None and self._connection[0] == host:
            return self._connection[1]
        connection = UnixConnection(self._path, self._timeout)
        self._connection = host, connection
        return connection


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class SupervisorAction:
    """Restart one supervisord program and wait until it runs again."""

    def __init__(
        self,
        name: str,
        config: SupervisorActionConfig,
        timeout: float = 60.0,
        gpu: GpuProcesses | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._timeout = timeout
        self._gpu = gpu

    def _proxy(self) -> Any:
        config = self._config
        basic = None
        if config.username is not None and config.password is not None:
            basic = BasicAuthConfig(username=config.username, password=config.password)
        headers = list(authorization(None, basic).items())
        if config.url.startswith("unix://"):
            path = config.url[len("unix://") :]
            transport: xmlrpc.client.Transport = _UnixTransport(path, self._timeout, headers)
            target = "http://localhost/RPC2"
        else:
            transport = _TimeoutTransport(self._timeout, headers)
            target = config.url.rstrip("/") + "/RPC2"
        return xmlrpc.client.ServerProxy(target, transport=transport, allow_none=True)

    def _restart(self, cut_off: threading.Event) -> ActionResult:
        program = self._config.program
        try:
            with self._proxy() as proxy:
                supervisor = proxy.supervisor
                before = supervisor.getProcessInfo(program)
                tree = capture([before["pid"]] if before["pid"] else [])
                if before["statename"] in ALIVE:
                    supervisor.stopProcess(program, True)
                # supervisord counts the program stopped once its main process exits; a
                # child that outlives it keeps the ports and the GPU (the notes, section 8).
                clean, seen = settle(tree, self._config.hygiene, self._gpu, cut_off=cut_off)
                if not clean:
                    return ActionResult(False, f"stopped {program}; {seen}; not started")
                supervisor.startProcess(program, True)
                after = supervisor.getProcessInfo(program)
        except xmlrpc.client.Fault as exc:
            return ActionResult(False, f"supervisord: {exc.faultString}")
        except SecretError as exc:
            return ActionResult(False, str(exc))
        except xmlrpc.client.ProtocolError as exc:
            return ActionResult(False, f"supervisord at {self._config.url} answered "
                                       f"{exc.errcode} {exc.errmsg}")  # fmt: skip
        except (OSError, http.client.HTTPException) as exc:
            return ActionResult(False, f"cannot reach supervisord at {self._config.url}: {exc}")
        running = after["statename"] == "RUNNING"
        detail = (f"restarted {program}: pid {before['pid']} -> {after['pid']}, "
                  f"{after['statename']}; {seen}")  # fmt: skip
        return ActionResult(running, detail)

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Stop (waiting), start (waiting until RUNNING), say which pid runs now."""
        if ctx.dry_run:
            return ActionResult(True, f"would restart {self._config.program} through "
                                      f"supervisord at {self._config.url}")  # fmt: skip
        result: ActionResult = await run_until_cut_off(self._restart)
        return result
