"""The `docker` action: restart a container through the Docker Engine API on its unix socket
(the stdlib's http.client; the API is a handful of JSON calls).

With restart hygiene (the default): inspect (State.Pid, the old tree), POST .../stop?t=,
the old tree and its GPU memory gone, POST .../start; without it, POST .../restart?t=.
Answers as the API documents them: 204 done, 304 already stopped or started, 404 no such
container, 500 the engine's own error. Access to the socket is root-equivalent: give medic
the socket only where this action is used.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from typing import Any

from exporter.config.recovery import DockerActionConfig
from exporter.recovery.actions import ActionContext, run_until_cut_off
from exporter.recovery.hygiene import GpuProcesses, capture, settle
from exporter.recovery.types import ActionResult
from exporter.recovery.unixhttp import UnixConnection


class EngineError(Exception):
    """The engine answered with an error, or could not be asked."""


class DockerAction:
    """Restart one container, the old tree gone before the new one starts."""

    def __init__(
        self, name: str, config: DockerActionConfig, gpu: GpuProcesses | None = None
    ) -> None:
        self.name = name
        self._config = config
        self._gpu = gpu
        self._api_timeout = config.api_timeout

    def _path(self, verb: str, **query: str | int) -> str:
        config = self._config
        prefix = f"/v{config.api_version}" if config.api_version else ""
        path = f"{prefix}/containers/{urllib.parse.quote(config.container, safe='')}{verb}"
        return f"{path}?{urllib.parse.urlencode(query)}" if query else path

    def _call(self, method: str, path: str, timeout: float) -> tuple[int, Any]:
        connection = UnixConnection(self._config.socket, timeout)
        try:
            connection.request(method, path, headers={"Host": "docker"})
            response = connection.getresponse()
            raw = response.read()
        except PermissionError as exc:
            why = f"permission denied on {self._config.socket}: {exc.strerror}"
            raise EngineError(f"{why} (medic needs the docker group, or root)") from exc
        except TimeoutError as exc:
            raise EngineError(f"the Docker engine did not answer {method} {path} within "
                              f"{timeout:g}s") from exc  # fmt: skip
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"cannot reach the Docker engine at {self._config.socket}: "
                              f"{exc}") from exc  # fmt: skip
        finally:
            connection.close()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        return response.status, body

    def _expect(self, method: str, verb: str, timeout: float, **query: str | int) -> int:
        status, body = self._call(method, self._path(verb, **query), timeout)
        if status in (200, 204, 304):
            return status
        message = body.get("message") if isinstance(body, dict) else body
        raise EngineError(f"{method} {verb or '/json'}: {status} {message or ''}".rstrip())

    def _restart(self, cut_off: threading.Event) -> ActionResult:
        config, container = self._config, self._config.container
        # The stop's grace, plus the engine's own time, bounds the stop call.
        stop_timeout = config.stop_timeout + self._api_timeout
        query: dict[str, str | int] = {"t": config.stop_timeout}
        if config.signal:
            query["signal"] = config.signal
        try:
            before = self._inspect()
            hygiene = config.hygiene
            if not (hygiene.tree or hygiene.gpu_memory):
                self._expect("POST", "/restart", stop_timeout, **query)
                seen = "no hygiene asked"
            else:
                pid = int(before.get("State", {}).get("Pid") or 0)
                tree = capture([pid] if pid else [])
                self._expect("POST", "/stop", stop_timeout, **query)
                clean, seen = settle(tree, hygiene, self._gpu, cut_off=cut_off)
                if not clean:
                    return ActionResult(False, f"stopped {container}; {seen}; not started")
                self._expect("POST", "/start", self._api_timeout)
            after = self._inspect()
        except EngineError as exc:
            return ActionResult(False, str(exc))
        state = after.get("State", {})
        running = bool(state.get("Running"))
        detail = (f"restarted {container}: pid {before.get('State', {}).get('Pid')} -> "
                  f"{state.get('Pid')}, {state.get('Status', 'unknown')}, started "
                  f"{state.get('StartedAt', '?')}; {seen}")  # fmt: skip
        return ActionResult(running, detail)

    def _inspect(self) -> dict[str, Any]:
        status, body = self._call("GET", self._path("/json"), self._api_timeout)
        if status == 404:
            raise EngineError(f"no such container: {self._config.container}")
        if status != 200 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else body
            raise EngineError(f"inspect {self._config.container}: {status} {message}")
        return body

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Stop, hygiene, start; say which pid runs now."""
        if ctx.dry_run:
            return ActionResult(True, f"would restart container {self._config.container}")
        result: ActionResult = await run_until_cut_off(self._restart)
        return result
