"""Verification by the alert's own condition: a PromQL expression asked of a real
Prometheus until it comes back empty (or the verify deadline passes)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Medic
from tests.e2e.stack import Prometheus
from tests.helpers import wait_until
from tests.recovery.conftest import settled


class Flag:
    """A tiny exporter on 127.0.0.1 serving `lab_flag`."""

    def __init__(self) -> None:
        self.value = 1
        flag = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = f"# TYPE lab_flag gauge\nlab_flag {flag.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flag, Prometheus]]:
    flag = Flag()
    prometheus = Prometheus(tmp_path_factory.mktemp("verifyq"), "groups: []\n", flag.address,
                            "127.0.0.1:9")  # fmt: skip
    prometheus.wait_ready()
    yield flag, prometheus
    prometheus.stop()
    flag.stop()


CONFIG = """
recovery:
  prometheus_url: {url}
  cooldown: {{base: 0s}}
  actions:
    lower_flag: {{type: in_process}}
  failures:
    network_error:
      verify_query: lab_flag > 0
      settle_delay: 0s
      verify_timeout: {timeout}
      verify_interval: 100ms
      ladder: [lower_flag]
"""


def test_verified_once_prometheus_sees_the_condition_gone(
    scene: tuple[Flag, Prometheus], start_medic: Callable[[str], Medic]
) -> None:
    flag, prometheus = scene
    flag.value = 1
    wait_until(lambda: prometheus.query("lab_flag > 0"), what="Prometheus to see the flag up")
    medic = start_medic(CONFIG.format(url=prometheus.url, timeout="20s"))

    def lower() -> bool:
        flag.value = 0
        return True

    medic.actions.register("lower_flag", lower)
    assert medic.report_failure("network_error").accepted
    [found] = settled(medic, 1)
    assert found.outcome.value == "succeeded"
    # The action returned at once; the condition cleared only at Prometheus' next scrape.
    assert found.detail.startswith("verified by the alert's condition")


def test_not_recovered_while_the_condition_still_holds(
    scene: tuple[Flag, Prometheus], start_medic: Callable[[str], Medic]
) -> None:
    flag, prometheus = scene
    flag.value = 1
    wait_until(lambda: prometheus.query("lab_flag > 0"), what="Prometheus to see the flag up")
    medic = start_medic(CONFIG.format(url=prometheus.url, timeout="1s"))
    medic.actions.register("lower_flag", lambda: True)  # does not help
    assert medic.report_failure("network_error").accepted
    found = settled(medic, 2)
    assert found[0].outcome.value == "not_recovered"
    assert "lab_flag > 0: 1 series still match" in found[0].detail


def test_a_verify_query_needs_a_prometheus_url(tmp_path: Path) -> None:
    from exporter.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"needs recovery\.prometheus_url"):
        parse_config("""
recovery:
  failures:
    network_error: {verify_query: up == 0, ladder: [clear_gpu_cache]}
""", env={})  # fmt: skip
