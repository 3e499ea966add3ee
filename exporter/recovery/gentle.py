"""Gentle levers of model servers, as http action presets: each checks its precondition
first, makes its requests, and where the server can say so, confirms the effect (the
model-server notes, section 6). Gentler than a restart, so a ladder tries them first.

- vllm_reset_prefix_cache: POST /reset_prefix_cache (needs VLLM_SERVER_DEV_MODE=1: without
  it the route is absent, a 404 said as such).
- vllm_sleep_wake: GET /is_sleeping must say false (sleep mode on, dev mode on), POST
  /sleep?level=1, POST /wake_up, GET /is_sleeping false again: frees and retakes the GPU
  memory. Requests fail while it sleeps, so it counts as disruptive.
- sglang_flush_cache: /flush_cache answers 400 while any request runs or waits, so the
  precondition is sglang:num_running_reqs + sglang:num_queue_reqs = 0 on /metrics.
- triton_reload: the model must be in POST /v2/repository/index (the repository API, and
  --model-control-mode=explicit for the load itself), then POST .../models/{m}/load.
- ollama_unload: GET /api/ps must list the model, POST /api/generate with keep_alive 0,
  then /api/ps must no longer list it (a runner stuck in "Stopping..." keeps its VRAM:
  only a restart helps, so that is a failure).
- llamacpp_slot_erase: GET /slots must answer within the request timeout (it hangs with a
  wedged decoder, and erasing would hang too), then POST /slots/{id}?action=erase for the
  slot, or every idle one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from exporter.checks.scrape import TEXT, snapshot
from exporter.config.recovery import HttpActionConfig
from exporter.recovery.actions import ActionContext
from exporter.recovery.types import ActionResult


class Refused(Exception):
    """A precondition does not hold, or the server said no: the lever did nothing."""


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code == 404:
        raise Refused(f"{what}: 404 (the route is not there: is the server's admin API on?)")
    if not 200 <= response.status_code < 300:
        raise Refused(f"{what}: {response.status_code} {response.text[:200]}".rstrip())
    return response


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise Refused(f"{what}: not JSON: {response.text[:200]}") from exc


class GentleAction:
    """One preset lever against the server at `url`."""

    def __init__(self, name: str, config: HttpActionConfig) -> None:
        self.name = name
        self._config = config
        self._base = config.url.rstrip("/")
        self._levers: dict[str, Callable[[httpx.AsyncClient], Awaitable[str]]] = {
            "vllm_reset_prefix_cache": self._vllm_reset,
            "vllm_sleep_wake": self._vllm_sleep_wake,
            "sglang_flush_cache": self._sglang_flush,
            "triton_reload": self._triton_reload,
            "ollama_unload": self._ollama_unload,
            "llamacpp_slot_erase": self._llamacpp_erase,
        }

    async def _post(self, client: httpx.AsyncClient, path: str, **kw: Any) -> httpx.Response:
        return _ok(await client.post(self._base + path, **kw), f"POST {path}")

    async def _get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        return _ok(await client.get(self._base + path), f"GET {path}")

    async def _vllm_reset(self, client: httpx.AsyncClient) -> str:
        await self._post(client, "/reset_prefix_cache")
        return "vLLM's prefix cache reset (the server does not confirm it)"

    async def _sleeping(self, client: httpx.AsyncClient) -> bool:
        return bool(_json(await self._get(client, "/is_sleeping"), "GET /is_sleeping")
                    .get("is_sleeping"))  # fmt: skip

    async def _vllm_sleep_wake(self, client: httpx.AsyncClient) -> str:
        if await self._sleeping(client):
            raise Refused("precondition: vLLM is already asleep")
        await self._post(client, "/sleep", params={"level": "1"})
        await self._post(client, "/wake_up")
        if await self._sleeping(client):
            raise Refused("vLLM still says it is asleep after /wake_up")
        return "vLLM slept (level 1) and woke: GPU memory freed and retaken"

    async def _sglang_flush(self, client: httpx.AsyncClient) -> str:
        names = ["sglang:num_running_reqs", "sglang:num_queue_reqs"]
        text = (await self._get(client, "/metrics")).text
        found = snapshot(text, set(names))
        busy = sum(value for name in names for _, value in found.get(name, []))
        if busy > 0:
            raise Refused(f"precondition: {busy:g} requests running or waiting (SGLang "
                          "refuses /flush_cache then)")  # fmt: skip
        await self._post(client, "/flush_cache")
        return "SGLang's radix cache flushed"

    async def _triton_reload(self, client: httpx.AsyncClient) -> str:
        model = str(self._config.model)
        index = _json(await self._post(client, "/v2/repository/index", json={}), "index")
        if not any(isinstance(m, dict) and m.get("name") == model for m in index):
            raise Refused(f"precondition: {model} is not in Triton's model repository")
        await self._post(client, f"/v2/repository/models/{model}/load", json={})
        ready = await client.get(f"{self._base}/v2/models/{model}/ready")
        if ready.status_code != 200:
            raise Refused(f"{model} reloaded but not ready ({ready.status_code})")
        return f"Triton reloaded {model}; ready"

    async def _loaded(self, client: httpx.AsyncClient) -> list[str]:
        ps = _json(await self._get(client, "/api/ps"), "GET /api/ps")
        return [str(m.get("name")) for m in ps.get("models", []) if isinstance(m, dict)]

    async def _ollama_unload(self, client: httpx.AsyncClient) -> str:
        model = str(self._config.model)
        if model not in await self._loaded(client):
            raise Refused(f"precondition: {model} is not loaded (GET /api/ps)")
        await self._post(client, "/api/generate", json={"model": model, "keep_alive": 0})
        for _ in range(20):  # the runner takes a moment to stop
            if model not in await self._loaded(client):
                return f"Ollama unloaded {model}"
            await asyncio.sleep(0.25)
        raise Refused(f"{model} still listed by /api/ps after keep_alive 0 (a stuck runner "
                      "keeps its VRAM: restart)")  # fmt: skip

    async def _llamacpp_erase(self, client: httpx.AsyncClient) -> str:
        try:
            slots = _json(await self._get(client, "/slots"), "GET /slots")
        except httpx.TimeoutException as exc:
            raise Refused("precondition: /slots does not answer (a wedged decoder: "
                          "restart)") from exc  # fmt: skip
        wanted = self._config.slot
        known = [s for s in slots if isinstance(s, dict) and "id" in s]
        if wanted is not None:
            ids = [s["id"] for s in known if s["id"] == wanted]
        else:
            ids = [s["id"] for s in known if not s.get("is_processing")]
        if not ids:
            which = f"slot {wanted}" if wanted is not None else "an idle slot"
            raise Refused(f"precondition: no {which} to erase")
        for slot in ids:
            await self._post(client, f"/slots/{slot}", params={"action": "erase"})
        return f"llama.cpp erased slot {', '.join(str(i) for i in ids)}"

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Check the precondition, pull the lever, confirm where the server can say."""
        preset = str(self._config.preset)
        if ctx.dry_run:
            return ActionResult(True, f"would {preset} at {self._base}")
        headers = {**self._config.headers, "Accept": f"application/json, {TEXT}"}
        timeout = self._config.request_timeout
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            try:
                return ActionResult(True, await self._levers[preset](client))
            except Refused as exc:
                return ActionResult(False, f"{preset}: {exc}")
            except httpx.HTTPError as exc:
                return ActionResult(False, f"{preset}: {type(exc).__name__}: {exc}")
