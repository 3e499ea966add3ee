"""Real Prometheus and Alertmanager processes on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_until

INSTALL_HINT = "run scripts/fetch-stack.sh (make test does it)"
# scripts/fetch-stack.sh unpacks Debian's packages here; nothing is installed on the host.
STACK_ROOT = Path(os.environ.get("MEDIC_STACK", Path(__file__).parents[2] / ".stack")) / "root"
MODEL_SERVER_VENV = STACK_ROOT.parent / "pytriton"
"""PyTriton's Triton and supervisord (scripts/fetch-model-server.sh)."""
needs_supervisord = pytest.mark.skipif(
    not (MODEL_SERVER_VENV / "bin" / "supervisord").exists(),
    reason="no supervisord in .stack/pytriton (scripts/fetch-model-server.sh)",
)
# Debian's Alertmanager 0.25 reads its default template from this compiled-in path (no flag
# moves it); without the file it never becomes ready.
TEMPLATE = Path("/usr/share/prometheus/alertmanager/default.tmpl")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(binary: str) -> str:
    """The project-local tool from .stack/, else one on PATH."""
    local = STACK_ROOT / "usr" / "bin" / binary
    if local.is_file():
        return str(local)
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; {INSTALL_HINT}")
    return path


def alertmanager_argv() -> list[str]:
    """How to start Alertmanager so that it finds its default template.

    When the host has no /usr/share/prometheus/alertmanager (no Debian package installed),
    it runs in a private mount namespace where the unpacked package's /usr/share lies over
    the host's: the host's filesystem is not touched and the overlay ends with the process
    (`unshare` and `sh` exec, so the PID is Alertmanager's own).
    """
    binary = require("prometheus-alertmanager")
    share = STACK_ROOT / "usr" / "share"
    if TEMPLATE.is_file() or not (share / "prometheus" / "alertmanager").is_dir():
        return [binary]
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = 'mount -t overlay overlay -o "lowerdir=$0:/usr/share" /usr/share && exec "$@"'
    return ["unshare", "--mount", *as_root, "--", "sh", "-c", script, str(share), binary]


class Daemon:
    """A process we started, stopped by its PID with SIGTERM (then SIGKILL after 5 s)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path, self.argv = log, argv
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def start_again(self) -> None:
        """Start the same command again after stop() (its log goes on)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT)

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
    """prometheus-alertmanager on 127.0.0.1, ready when /-/ready answers.

    Clustering is off unless `cluster_port` is given (then it gossips with `peers`, other
    127.0.0.1 cluster ports). `web_config` is its --web.config.file (TLS, basic auth);
    `client` holds what httpx needs to talk to it then.
    """

    def __init__(
        self,
        config: str,
        workdir: Path,
        *,
        cluster_port: int | None = None,
        peers: tuple[int, ...] = (),
        web_config: str | None = None,
        client: dict[str, Any] | None = None,
        name: str = "alertmanager",
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.cluster_port = cluster_port
        scheme = "https" if web_config and "tls_server_config" in web_config else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.client = client or {}
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{name}.yml").write_text(config)
        subprocess.run(
            [require("amtool"), "check-config", str(workdir / f"{name}.yml")],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        argv = [
            *alertmanager_argv(),
            f"--config.file={workdir / f'{name}.yml'}",
            f"--storage.path={workdir / f'{name}-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
        ]
        if cluster_port is None:
            argv.append("--cluster.listen-address=")
        else:
            argv += [f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                     "--cluster.gossip-interval=100ms", "--cluster.pushpull-interval=1s",
                     *(f"--cluster.peer=127.0.0.1:{p}" for p in peers)]  # fmt: skip
        if web_config is not None:
            (workdir / f"{name}-web.yml").write_text(web_config)
            argv.append(f"--web.config.file={workdir / f'{name}-web.yml'}")
        super().__init__(argv, workdir / f"{name}.log")

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited:\n{self.log()}")
            try:
                return self.http("GET", "/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=20, what="alertmanager to be ready")

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to its API with the client settings its web config needs."""
        with httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 5),
                          **self.client) as client:  # fmt: skip
            return client.request(method, path, **kwargs)

    def silence(self, matchers: dict[str, str], minutes: int = 60) -> str:
        """Create a silence through API v2; its id."""
        now = time.time()
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                         for k, v in matchers.items()],
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + minutes * 60)),
            "createdBy": "medic tests", "comment": "maintenance",
        }  # fmt: skip
        response = self.http("POST", "/api/v2/silences", json=body)
        response.raise_for_status()
        return str(response.json()["silenceID"])

    def active_silences(self) -> int:
        """Silences this peer knows as active (they gossip from the peer they were made on)."""
        found = self.http("GET", "/api/v2/silences").json()
        return sum(1 for item in found if item["status"]["state"] == "active")

    def post_alert(self, labels: dict[str, str], *, resolved: bool = False, **extra: Any) -> None:
        """Raise (or, with resolved, end) an alert through Alertmanager's API."""
        alert: dict[str, Any] = {"labels": labels, "annotations": {"summary": "e2e"}, **extra}
        if resolved:
            alert["endsAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
        response = self.http("POST", "/api/v2/alerts", json=[alert])
        response.raise_for_status()

    def metric(self, name: str, **labels: str) -> float:
        """A value from Alertmanager's own /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.http("GET", "/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0


class Prometheus(Daemon):
    """Prometheus scraping medic and alerting to Alertmanager at the notes' fast intervals."""

    def __init__(self, workdir: Path, rules: str, medic: str, alertmanager: str,
                 targets: dict[str, dict[str, str]] | None = None) -> None:  # fmt: skip
        """`targets`: many medics (address -> target labels, e.g. a rack) instead of one."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "rules.yml").write_text(rules)
        statics = json.dumps([{"targets": [a], "labels": labels}
                              for a, labels in (targets or {medic: {}}).items()])  # fmt: skip
        (workdir / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 250ms, scrape_timeout: 250ms, evaluation_interval: 250ms}}
rule_files: [rules.yml]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["{alertmanager}"]}}]}}]
scrape_configs:
  - job_name: medic
    static_configs: {statics}
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
