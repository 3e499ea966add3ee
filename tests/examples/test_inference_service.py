"""The example model service on CPU torch: it fails, medic's ladders heal it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")

from examples.inference_service.app import Service, build  # noqa: E402
from examples.inference_service.pipeline import WEIGHTS, build_weights  # noqa: E402
from exporter.http.server import _Server, bind, bound_url  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.test_server import value  # noqa: E402


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    for folder in ("model-store", "models"):
        build_weights(tmp_path / folder / WEIGHTS)
    svc = build(tmp_path, vram_budget=64, download_wait=0.01)
    import uvicorn

    sock = bind("127.0.0.1:0")
    server = _Server(uvicorn.Config(svc.app, log_config=None, access_log=False,
                                    timeout_graceful_shutdown=1))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="the service to start")
        url = bound_url(sock)
        wait_until(lambda: httpx.get(f"{url}/medic/-/ready").status_code == 200, what="ready")
        yield svc, url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def generate(url: str, batch: int, steps: int = 16) -> dict[str, Any]:
    response = httpx.post(f"{url}/generate", json={"prompt": "hello", "batch_size": batch,
                                                   "steps": steps}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def attempts(url: str) -> list[tuple[str, str, str]]:
    body = httpx.get(f"{url}/medic/api/v1/recoveries").json()
    return [(a["failure_type"], a["action"], a["outcome"]) for a in reversed(body["attempts"])]


def test_an_oom_makes_medic_reduce_the_batch_and_the_next_generate_fits(
    service: tuple[Service, str],
) -> None:
    svc, url = service
    assert generate(url, batch=2) == {"model": "real", "batch": 2, "samples": 512,
                                      "params": {"max_batch_size": 8, "steps": 16,
                                                 "cpu_offload": False}}  # fmt: skip
    oom = generate(url, batch=8)  # 8 x 16 steps > the budget of 64: CUDA OOM
    assert oom["model"] == "mock"  # the fallback answered this one
    assert svc.medic.recovery.wait_idle(10)
    assert attempts(url) == [
        ("vram_exhaustion", "clear_gpu_cache", "skipped_unavailable"),  # no CUDA here
        ("vram_exhaustion", "reduce_generation_params", "succeeded"),
    ]
    fitted = generate(url, batch=8)
    assert (fitted["model"], fitted["batch"]) == ("real", 4)  # capped to the reduced batch
    assert svc.pipeline.params.max_batch_size == 4


def test_corrupted_weights_are_restored_from_the_model_store(
    service: tuple[Service, str], tmp_path: Path
) -> None:
    svc, url = service
    weights = tmp_path / "models" / WEIGHTS
    weights.write_bytes(b"\x00 not a torch file")
    assert httpx.post(f"{url}/admin/reload").status_code == 503  # reports the failure
    assert svc.medic.recovery.wait_idle(20)
    assert attempts(url)[-1] == ("model_loading_failure", "retry_model_download", "succeeded")
    assert weights.read_bytes() == (tmp_path / "model-store" / WEIGHTS).read_bytes()
    assert generate(url, batch=2)["model"] == "real"
    wait_until(lambda: value(httpx.get(f"{url}/medic/metrics").text, "medic_retry_calls_total",
                             name="model_download", kind="successful_without_retry") == 1,
               what="the download to be counted")  # fmt: skip


def test_repeated_failures_open_the_breaker_and_the_mock_answers(
    service: tuple[Service, str],
) -> None:
    svc, url = service
    svc.pipeline.fault = RuntimeError("CUDA error: an illegal memory access was encountered")
    answers = [generate(url, batch=1)["model"] for _ in range(5)]
    assert answers == ["mock"] * 5
    assert svc.medic.breakers.get("generate").state.value == "open"

    def shown() -> bool:
        text = httpx.get(f"{url}/medic/metrics").text
        open_ = value(text, "medic_circuitbreaker_state", name="generate", state="open")
        refused = value(text, "medic_fallback_calls_total", component="generate",
                        kind="fallback_breaker_open")  # fmt: skip
        after_error = value(text, "medic_fallback_calls_total", component="generate",
                            kind="fallback_after_error")  # fmt: skip
        return open_ == 1 and (refused or 0) >= 2 and (after_error or 0) >= 3

    wait_until(shown, what="the breaker and the fallbacks in /metrics")


def test_the_event_stream_delivers_attempts_in_order(service: tuple[Service, str]) -> None:
    svc, url = service
    received: list[tuple[str, dict[str, Any]]] = []
    done = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{url}/medic/api/v1/events", timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind.startswith("attempt"):
                    received.append((kind, json.loads(line.removeprefix("data: "))))
                    if len(received) == 4:
                        done.set()
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    wait_until(lambda: svc.medic.events.subscribers, what="the stream to subscribe")
    generate(url, batch=8)  # OOM
    assert done.wait(20)
    assert [(k, e["action"], e["outcome"]) for k, e in received] == [
        ("attempt_started", "clear_gpu_cache", "running"),
        ("attempt_finished", "clear_gpu_cache", "skipped_unavailable"),
        ("attempt_started", "reduce_generation_params", "running"),
        ("attempt_finished", "reduce_generation_params", "succeeded"),
    ]
    assert [e["failure_type"] for _, e in received] == ["vram_exhaustion"] * 4
    ids = [e["id"] for _, e in received]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[2] > ids[0]


def test_the_event_stream_resumes_after_last_event_id(service: tuple[Service, str]) -> None:
    svc, url = service
    generate(url, batch=8)
    assert svc.medic.recovery.wait_idle(10)
    first = svc.medic.events.recent()[0].id
    with httpx.stream("GET", f"{url}/medic/api/v1/events", timeout=10,
                      headers={"Last-Event-ID": str(first)}) as response:  # fmt: skip
        ids = []
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line.removeprefix("id: ")))
            if len(ids) == 3:
                break
    assert ids == [first + 1, first + 2, first + 3]  # what it missed, in order
