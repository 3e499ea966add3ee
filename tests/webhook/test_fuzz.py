"""Malformed payloads: always 4xx, never 5xx, nothing queued, the process stays healthy."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.app import Medic
from exporter.config import parse_config
from tests.helpers import serving, wait_until
from tests.webhook.conftest import FIRING, ROUTES

REQUIRED_TOP = ["version", "status", "alerts"]
REQUIRED_ALERT = ["status", "labels", "startsAt", "fingerprint"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
wrong_types: st.SearchStrategy[Any] = st.one_of(
    st.integers(), st.lists(st.integers(), max_size=2), st.none(), st.booleans(),
    st.just({"nested": []}),
)  # fmt: skip


@st.composite
def broken_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "drop", "retype", "alert_drop", "alert_retype"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    payload: dict[str, Any] = copy.deepcopy(FIRING)
    if kind == "drop":
        del payload[draw(st.sampled_from(REQUIRED_TOP))]
    elif kind == "retype":
        payload[draw(st.sampled_from(REQUIRED_TOP))] = draw(wrong_types)
    elif kind == "alert_drop":
        del payload["alerts"][0][draw(st.sampled_from(REQUIRED_ALERT))]
    else:
        field = draw(st.sampled_from(REQUIRED_ALERT))
        payload["alerts"][0][field] = draw(wrong_types.filter(lambda v: not isinstance(v, str)))
    return json.dumps(payload).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Medic, str]]:
    data = tmp_path_factory.mktemp("fuzz")
    medic = Medic(parse_config(f"data_dir: {data}\n" + ROUTES.format(extra=""), env={}))
    medic.actions.register("restart", lambda: True)
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        yield medic, url


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(broken_bodies())
def test_malformed_bodies_are_4xx_and_change_nothing(server: tuple[Medic, str], raw: bytes) -> None:
    medic, url = server
    response = httpx.post(
        f"{url}/api/v1/alerts", content=raw, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (response.status_code, raw[:200])
    assert medic.recovery.queue_length() == 0
    assert medic.recovery.snapshot()["events"] == {}


def test_the_process_is_still_healthy_after_the_fuzzing(server: tuple[Medic, str]) -> None:
    medic, url = server
    assert httpx.get(f"{url}/-/healthy").status_code == 200
    assert httpx.post(f"{url}/api/v1/alerts", json=FIRING).status_code == 202
    assert medic.recovery.wait_idle(10)
