"""Gentle levers as http action presets, against stand-ins that answer as the servers do
(the model-server notes, section 6): each precondition is checked first, and a lever that
cannot act (or did not take) is a clear `failed`, so the ladder goes on to a restart."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter.app import Medic
from tests.recovery.conftest import run

Route = Callable[[Any], tuple[int, Any]]


class Lever:
    """An HTTP server whose routes ("POST /flush_cache") the test sets; calls recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.calls: list[str] = []
        self.state: dict[str, Any] = {}
        lever = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                lever.calls.append(f"{self.command} {self.path}")
                route = lever.routes.get(f"{self.command} {self.path}")
                code, answer = route(body) if route else (404, {"detail": "Not Found"})
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a hung route: nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def lever() -> Iterator[Lever]:
    server = Lever()
    yield server
    server.close()


def preset(lever: Lever, name: str, extra: str = "") -> str:
    return f"{{type: http, preset: {name}, url: '{lever.url}'{extra}}}"


def test_sglang_flush_waits_for_an_idle_server(
    lever: Lever, start_medic: Callable[[str], Medic]
) -> None:
    lever.state["running"] = 2
    lever.routes["GET /metrics"] = lambda _: (200, (
        f'sglang:num_running_reqs{{model_name="m"}} {lever.state["running"]}\n'
        'sglang:num_queue_reqs{model_name="m"} 0\n'))  # fmt: skip
    lever.routes["POST /flush_cache"] = lambda _: (
        (400, "Cache not flushed: there are running requests") if lever.state["running"]
        else (200, "Cache flushed."))  # fmt: skip
    assert run(start_medic, preset(lever, "sglang_flush_cache")) == ("failed", (
        "sglang_flush_cache: precondition: 2 requests running or waiting (SGLang refuses "
        "/flush_cache then)"))  # fmt: skip
    assert "POST /flush_cache" not in lever.calls  # checked first, not tried
    lever.state["running"] = 0
    assert run(start_medic, preset(lever, "sglang_flush_cache")) == (
        "succeeded", "SGLang's radix cache flushed")  # fmt: skip
    assert lever.calls.count("POST /flush_cache") == 1


def test_vllm_sleep_wake_and_reset_need_their_routes(
    lever: Lever, start_medic: Callable[[str], Medic]
) -> None:
    outcome, detail = run(start_medic, preset(lever, "vllm_reset_prefix_cache"))
    assert (outcome, detail) == (
        "failed",
        "vllm_reset_prefix_cache: POST /reset_prefix_cache: "
        "404 (the route is not there: is the server's admin API on?)",
    )
    lever.state["asleep"] = False

    def sleep(_: Any) -> tuple[int, Any]:
        lever.state["asleep"] = True
        return 200, ""

    def wake(_: Any) -> tuple[int, Any]:
        lever.state["asleep"] = False
        return 200, ""

    lever.routes["GET /is_sleeping"] = lambda _: (200, {"is_sleeping": lever.state["asleep"]})
    lever.routes["POST /sleep?level=1"] = sleep
    lever.routes["POST /wake_up"] = wake
    assert run(start_medic, preset(lever, "vllm_sleep_wake")) == (
        "succeeded", "vLLM slept (level 1) and woke: GPU memory freed and retaken")  # fmt: skip
    assert [c for c in lever.calls if c.startswith("POST")][-2:] == [
        "POST /sleep?level=1", "POST /wake_up"]  # fmt: skip
    lever.routes["POST /wake_up"] = lambda _: (200, "")  # a wake that does not take
    assert run(start_medic, preset(lever, "vllm_sleep_wake")) == (
        "failed", "vllm_sleep_wake: vLLM still says it is asleep after /wake_up")  # fmt: skip
    assert run(start_medic, preset(lever, "vllm_sleep_wake")) == (
        "failed", "vllm_sleep_wake: precondition: vLLM is already asleep")  # fmt: skip


def test_triton_reload_needs_the_model_in_its_repository(
    lever: Lever, start_medic: Callable[[str], Medic]
) -> None:
    lever.routes["POST /v2/repository/index"] = lambda _: (200, [
        {"name": "identity", "version": "1", "state": "READY"}])  # fmt: skip
    lever.routes["POST /v2/repository/models/identity/load"] = lambda _: (200, "")
    lever.routes["GET /v2/models/identity/ready"] = lambda _: (200, "")
    assert run(start_medic, preset(lever, "triton_reload", ", model: identity")) == (
        "succeeded", "Triton reloaded identity; ready")  # fmt: skip
    assert run(start_medic, preset(lever, "triton_reload", ", model: other")) == (
        "failed",
        "triton_reload: precondition: other is not in Triton's model repository",
    )
    lever.routes["POST /v2/repository/models/identity/load"] = lambda _: (
        400,
        {"error": "explicit model load / unload is not allowed if polling is enabled"},
    )
    outcome, detail = run(start_medic, preset(lever, "triton_reload", ", model: identity"))
    assert outcome == "failed" and detail.startswith(
        "triton_reload: POST /v2/repository/models/identity/load: 400 ")  # fmt: skip


def test_ollama_unload_is_confirmed_by_api_ps(
    lever: Lever, start_medic: Callable[[str], Medic]
) -> None:
    lever.state["loaded"] = ["llama3:8b"]
    lever.state["stuck"] = False
    lever.routes["GET /api/ps"] = lambda _: (200, {"models": [
        {"name": n, "size_vram": 5 << 30} for n in lever.state["loaded"]]})  # fmt: skip

    def generate(body: Any) -> tuple[int, Any]:
        assert body == {"model": "llama3:8b", "keep_alive": 0}
        if not lever.state["stuck"]:
            lever.state["loaded"] = []
        return 200, {"model": "llama3:8b", "done": True, "done_reason": "unload"}

    lever.routes["POST /api/generate"] = generate
    assert run(start_medic, preset(lever, "ollama_unload", ", model: 'llama3:8b'")) == (
        "succeeded", "Ollama unloaded llama3:8b")  # fmt: skip
    assert run(start_medic, preset(lever, "ollama_unload", ", model: 'llama3:8b'")) == (
        "failed",
        "ollama_unload: precondition: llama3:8b is not loaded (GET /api/ps)",
    )
    lever.state.update(loaded=["llama3:8b"], stuck=True)  # a runner stuck in "Stopping..."
    assert run(start_medic, preset(lever, "ollama_unload", ", model: 'llama3:8b'")) == (
        "failed", "ollama_unload: llama3:8b still listed by /api/ps after keep_alive 0 (a "
        "stuck runner keeps its VRAM: restart)")  # fmt: skip


def test_llamacpp_erases_idle_slots_and_a_hung_slots_route_is_a_failure(
    lever: Lever, start_medic: Callable[[str], Medic]
) -> None:
    lever.routes["GET /slots"] = lambda _: (200, [{"id": 0, "is_processing": True},
                                                  {"id": 1, "is_processing": False}])  # fmt: skip
    lever.routes["POST /slots/1?action=erase"] = lambda _: (200, {"id_slot": 1, "n_erased": 7})
    assert run(start_medic, preset(lever, "llamacpp_slot_erase")) == (
        "succeeded", "llama.cpp erased slot 1")  # fmt: skip
    release = threading.Event()

    def hung(_: Any) -> tuple[int, Any]:
        release.wait(30)
        return 200, []

    lever.routes["GET /slots"] = hung
    try:
        assert run(start_medic, preset(lever, "llamacpp_slot_erase", ", request_timeout: 1s")) == (
            "failed", "llamacpp_slot_erase: precondition: /slots does not answer (a wedged "
            "decoder: restart)")  # fmt: skip
    finally:
        release.set()
