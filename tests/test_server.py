"""The HTTP surface through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.app import Medic
from exporter.checks import CheckSpec
from exporter.config import default_config, parse_config
from tests.helpers import serving, wait_until


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parse_text(text)
        for s in family.samples
    }


def value(text: str, name: str, /, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "model.safetensors"
    path.parent.mkdir()
    path.write_bytes(b"weights")
    return path


@pytest.fixture
def medic(tmp_path: Path, model_file: Path) -> Medic:
    data = tmp_path / "data"
    text = f"""
data_dir: {data}
checks:
  - {{name: host_memory, type: host_memory, min_available_ratio: 0}}
  - {{name: disk_root, type: disk, path: /, min_avail_ratio: 0}}
  - {{name: disk_data, type: disk, path: {data}, min_avail_ratio: 0}}
  - {{name: model, type: path, path: {model_file}, kind: file}}
"""
    return Medic(parse_config(text, env={}))


@pytest.fixture
def url(medic: Medic) -> Iterator[str]:
    with serving(medic) as base:
        wait_until(lambda: httpx.get(f"{base}/-/ready").status_code == 200, what="ready")
        yield base


def scrape(url: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{url}/metrics", headers=headers, timeout=5)


def wait_for_metric(url: str, name: str, expected: float, **labels: str) -> str:
    def matches() -> str | None:
        text = scrape(url).text
        return text if value(text, name, **labels) == expected else None

    return str(wait_until(matches, what=f"{name}{labels} == {expected}"))


def test_metrics_report_memory_disk_paths_and_checks(url: str, model_file: Path) -> None:
    response = scrape(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    assert value(text, "medic_up") == 1
    assert value(text, "medic_build_info", version="0.1.0") == 1
    assert value(text, "medic_host_memory_total_bytes") > 0  # type: ignore[operator]
    assert value(text, "medic_host_memory_available_bytes") > 0  # type: ignore[operator]
    for check in ("host_memory", "disk_root", "disk_data", "model"):
        assert value(text, "medic_check_success", check=check) == 1, check
        assert value(text, "medic_check_stuck", check=check) == 0
        assert value(text, "medic_check_last_success_timestamp_seconds", check=check) > 0  # type: ignore[operator]
    root = [k for k in samples(text) if k[0] == "medic_filesystem_avail_bytes"]
    assert ("path", "/") in {label for _, labels in root for label in labels}
    assert value(text, "medic_path_present", path=str(model_file), check="model") == 1


def test_a_path_removed_at_run_time_fails_its_check_and_serving_goes_on(
    url: str, medic: Medic, model_file: Path
) -> None:
    model_file.unlink()
    medic.health.run("model")
    text = wait_for_metric(url, "medic_path_present", 0, path=str(model_file), check="model")
    assert value(text, "medic_check_success", check="model") == 0
    health = httpx.get(f"{url}/api/v1/health").json()
    model = next(c for c in health["checks"] if c["name"] == "model")
    assert model["ok"] is False and model["reason"] == f"{model_file}: missing"
    assert health["status"] == "degraded"


def test_openmetrics_is_served_when_asked_for(url: str) -> None:
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )  # what Prometheus 2.x sends
    response = scrape(url, accept=accept)
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1")
    assert response.text.endswith("# EOF\n")
    names = {f.name for f in parse_om(response.text)}  # type: ignore[no-untyped-call]
    assert {"medic_up", "medic_check_success", "medic_host_memory_available_bytes"} <= names


def test_gzip_when_accepted_and_identical_content(url: str) -> None:
    with httpx.Client() as client:
        with client.stream("GET", f"{url}/metrics", headers={"accept-encoding": "gzip"}) as raw:
            assert raw.headers["content-encoding"] == "gzip"
            assert "Accept-Encoding" in raw.headers["vary"]
            compressed = b"".join(raw.iter_raw())  # httpx would otherwise decode it for us
        plain = client.get(f"{url}/metrics", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert gzip.decompress(compressed) == plain.content


def test_health_endpoints(url: str) -> None:
    assert httpx.get(f"{url}/-/healthy").text == "medic is Healthy.\n"
    assert httpx.get(f"{url}/-/ready").status_code == 200
    body = httpx.get(f"{url}/api/v1/health").json()
    assert body["status"] == "healthy" and body["ready"] is True
    check = body["checks"][0]
    assert set(check) >= {"name", "ok", "reason", "age_seconds", "stuck", "enabled"}
    assert check["age_seconds"] >= 0
    assert httpx.post(f"{url}/metrics").status_code == 405


def test_a_landing_page_links_metrics_and_process_metrics_are_exported(url: str) -> None:
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/metrics"' in page.text
    text = httpx.get(f"{url}/metrics").text
    assert value(text, "process_resident_memory_bytes") and value(text, "process_open_fds")


def test_not_ready_until_the_first_round_is_done(tmp_path: Path) -> None:
    release = threading.Event()
    medic = Medic(default_config(env={"MEDIC_DATA_DIR": str(tmp_path)}))
    medic.health.register(CheckSpec("slow", release.wait, interval=60, timeout=30))
    with serving(medic) as url:
        response = httpx.get(f"{url}/-/ready")
        assert response.status_code == 503
        assert "slow" in response.text.split("waiting for checks:")[1]
        release.set()
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")


def test_a_hung_check_leaves_metrics_answering_and_shows_stuck(tmp_path: Path) -> None:
    release = threading.Event()
    medic = Medic(default_config(env={"MEDIC_DATA_DIR": str(tmp_path)}))
    medic.health.register(CheckSpec("nfs", release.wait, interval=0.5, timeout=0.2))
    try:
        with serving(medic) as url:
            text = wait_for_metric(url, "medic_check_stuck", 1, check="nfs")
            assert value(text, "medic_check_success", check="nfs") == 0
            assert value(text, "medic_check_last_success_timestamp_seconds", check="nfs") == 0
            # While it stays hung, scrapes keep answering (bounded by the client's timeout)
            # and the other checks keep being measured.
            for _ in range(20):
                assert scrape(url).status_code == 200
            assert value(scrape(url).text, "medic_check_success", check="host_memory") == 1
            release.set()
            wait_for_metric(url, "medic_check_stuck", 0, check="nfs")
    finally:
        release.set()


def test_registration_never_collects(tmp_path: Path) -> None:
    calls: list[int] = []

    class Spy:
        def describe(self) -> list[object]:
            return []

        def collect(self) -> list[object]:
            calls.append(1)
            return []

    medic = Medic(default_config(env={"MEDIC_DATA_DIR": str(tmp_path)}))
    medic.registry.register(Spy())  # type: ignore[arg-type]
    assert calls == []
    medic.exposition.render()
    assert calls == [1]


def test_listening_socket_is_tcp_so_asyncio_sets_nodelay() -> None:
    # With proto 0 asyncio skips TCP_NODELAY, and keep-alive scrapes stall ~40 ms each.
    from exporter.http.server import bind

    sock = bind("127.0.0.1:0")
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_counters_the_alert_rules_use_exist_at_0_before_their_first_event(tmp_path: Path) -> None:
    # A series born at its first count reads 0 in increase(): MedicRecoveryExhausted and
    # MedicRecoveryFailing would miss the first time (alerts/medic.rules.yml, issue 14).
    text = f"""
data_dir: {tmp_path / "data"}
recovery:
  actions:
    restart: {{type: command, argv: ["true"]}}
  failures:
    vram_exhaustion: {{ladder: [clear_gpu_cache, restart]}}
    network_error: {{ladder: [restart]}}
"""
    with serving(Medic(parse_config(text, env={}))) as base:
        wait_until(lambda: httpx.get(f"{base}/-/ready").status_code == 200, what="ready")
        body = scrape(base).text
    expected = [("vram_exhaustion", "ladder", o) for o in ("exhausted", "interrupted")]
    expected += [("network_error", "ladder", o) for o in ("exhausted", "interrupted")]
    expected += [("vram_exhaustion", a, o) for a in ("clear_gpu_cache", "restart")
                 for o in ("failed", "timeout")]  # fmt: skip
    expected += [("network_error", "restart", o) for o in ("failed", "timeout")]
    for failure_type, action, outcome in expected:
        found = value(body, "medic_recovery_attempts_total", failure_type=failure_type,
                      action=action, outcome=outcome)  # fmt: skip
        assert found == 0, (failure_type, action, outcome, found)
