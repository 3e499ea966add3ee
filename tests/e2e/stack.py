"""Real Prometheus and Alertmanager processes on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import wait_until

INSTALL_HINT = "run scripts/install-prometheus-stack.sh (make test does it)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; {INSTALL_HINT}")
    return path


class Daemon:
    """A process we started, stopped by its PID with SIGTERM (then SIGKILL after 5 s)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Alertmanager(Daemon):
    """prometheus-alertmanager with clustering off, ready when /-/ready answers."""

    def __init__(self, config: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "alertmanager.yml").write_text(config)
        subprocess.run(
            [require("amtool"), "check-config", str(workdir / "alertmanager.yml")],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        super().__init__(
            [
                require("prometheus-alertmanager"),
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url={self.url}",
                "--cluster.listen-address=",
            ],
            workdir / "alertmanager.log",
        )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=20, what="alertmanager to be ready")

    def post_alert(self, labels: dict[str, str], *, resolved: bool = False, **extra: Any) -> None:
        """Raise (or, with resolved, end) an alert through Alertmanager's API."""
        alert: dict[str, Any] = {"labels": labels, "annotations": {"summary": "e2e"}, **extra}
        if resolved:
            alert["endsAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
        response = httpx.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5)
        response.raise_for_status()

    def metric(self, name: str, **labels: str) -> float:
        """A value from Alertmanager's own /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0


class Prometheus(Daemon):
    """Prometheus scraping medic and alerting to Alertmanager at the notes' fast intervals."""

    def __init__(self, workdir: Path, rules: str, medic: str, alertmanager: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "rules.yml").write_text(rules)
        (workdir / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 250ms, scrape_timeout: 250ms, evaluation_interval: 250ms}}
rule_files: [rules.yml]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["{alertmanager}"]}}]}}]
scrape_configs:
  - job_name: medic
    static_configs: [{{targets: ["{medic}"]}}]
""")
        subprocess.run(
            [require("promtool"), "check", "config", str(workdir / "prometheus.yml")],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        super().__init__(
            [
                require("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url={self.url}",
                "--rules.alert.resend-delay=1s",
            ],
            workdir / "prometheus.log",
        )

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def wait_ready(self) -> None:
        """Until the target is up and Alertmanager is known: /-/ready alone is too early."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log()}")
            try:
                targets = self.api("targets")["activeTargets"]
                managers = self.api("alertmanagers")["activeAlertmanagers"]
            except httpx.HTTPError:
                return False
            return bool(targets) and targets[0]["health"] == "up" and bool(managers)

        wait_until(ready, timeout=30, what="prometheus to scrape medic and know alertmanager")

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result


def fast_rules(path: Path) -> str:
    """The shipped rules with every `for:` set to 0s, so a test does not wait minutes."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    return str(yaml.safe_dump(doc, sort_keys=False))
