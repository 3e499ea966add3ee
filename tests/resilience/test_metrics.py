"""Breaker, retry and fallback metrics through a real render of medic's registry."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.resilience import CircuitBreakerOpenError
from tests.helpers import serving, wait_until
from tests.test_server import samples, value

CONFIG = """
data_dir: {data}
breakers:
  - {{name: generate, failure_threshold: 2, wait_duration_in_open: 60s}}
"""


@pytest.fixture
def medic(tmp_path: Path) -> Medic:
    return Medic(parse_config(CONFIG.format(data=tmp_path), env={}))


def test_a_declared_breaker_shows_from_the_first_render_with_every_state(medic: Medic) -> None:
    text = medic.exposition.render().text.decode()
    states = {
        dict(labels)["state"]: v
        for (name, labels), v in samples(text).items()
        if name == "medic_circuitbreaker_state" and dict(labels)["name"] == "generate"
    }
    assert states == {"closed": 1, "open": 0, "half_open": 0, "forced_open": 0, "disabled": 0}
    assert value(text, "medic_circuitbreaker_calls_total", name="generate", kind="failed") == 0
    assert value(text, "medic_circuitbreaker_not_permitted_calls_total", name="generate") == 0


def test_every_resilience_series_after_use(medic: Medic) -> None:
    breaker = medic.breakers.get("generate")
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    with pytest.raises(CircuitBreakerOpenError):
        breaker.call(lambda: None)
    fetch = medic.retries.retry_with_backoff("fetch", max_attempts=1)(lambda: "ok")
    fetch()
    medic.degradation.register_fallback("generate", lambda: "mock")
    assert medic.degradation.execute_with_fallback("generate", lambda: "real") == "mock"

    text = medic.exposition.render().text.decode()
    assert value(text, "medic_circuitbreaker_state", name="generate", state="open") == 1
    assert value(text, "medic_circuitbreaker_state", name="generate", state="closed") == 0
    assert value(text, "medic_circuitbreaker_calls_total", name="generate", kind="failed") == 2
    assert value(text, "medic_circuitbreaker_not_permitted_calls_total", name="generate") == 2
    transition = {"name": "generate", "from_state": "closed", "to_state": "open"}
    assert value(text, "medic_circuitbreaker_state_transitions_total", **transition) == 1
    assert (
        value(text, "medic_retry_calls_total", name="fetch", kind="successful_without_retry") == 1
    )
    assert value(text, "medic_component_degraded", component="generate") == 1
    kind = {"component": "generate", "kind": "fallback_breaker_open"}
    assert value(text, "medic_fallback_calls_total", **kind) == 1


def test_served_metrics_follow_transitions_and_counters(medic: Medic) -> None:
    breaker = medic.breakers.get("generate")
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        breaker.call(lambda: None)  # a counter only: picked up by the render loop's polling

        def counted() -> bool:
            text = httpx.get(f"{url}/metrics").text
            return value(text, "medic_circuitbreaker_calls_total", name="generate",
                         kind="successful") == 1  # fmt: skip

        wait_until(counted, what="the call counter in /metrics")
        breaker.force_open()  # a transition: re-rendered right away

        def forced() -> bool:
            text = httpx.get(f"{url}/metrics").text
            return value(text, "medic_circuitbreaker_state", name="generate",
                         state="forced_open") == 1  # fmt: skip

        wait_until(forced, what="forced_open in /metrics")


def test_breaker_state_survives_a_medic_restart(tmp_path: Path) -> None:
    config = parse_config(CONFIG.format(data=tmp_path), env={})
    first = Medic(config)
    first.start()
    breaker = first.breakers.get("generate")
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    first.stop()
    second = Medic(config)
    assert second.breakers.get("generate").state.value == "open"
