"""Refusing to listen openly without auth; secrets; TLS and client certificates."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from tests.helpers import MedicProcess, wait_until
from tests.webhook.conftest import FIRING


def medic_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "run", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_refuses_a_non_loopback_address_without_auth(tmp_path: Path) -> None:
    config = tmp_path / "medic.yml"
    config.write_text(f"data_dir: {tmp_path}\n")
    result = medic_run("--config", str(config), "--listen", "0.0.0.0:0")
    assert result.returncode == 1
    assert "refusing to serve the webhook on 0.0.0.0:0 without authentication" in result.stderr
    assert "Traceback" not in result.stderr


def test_insecure_no_auth_starts_and_warns(
    tmp_path: Path, medic_process: Callable[..., MedicProcess]
) -> None:
    config = tmp_path / "medic.yml"
    config.write_text(f"data_dir: {tmp_path}\n")
    proc = medic_process(["--config", str(config), "--listen", "0.0.0.0:0", "--insecure-no-auth"])
    url = proc.wait_listening().replace("0.0.0.0", "127.0.0.1")
    assert httpx.get(f"{url}/-/healthy").status_code == 200
    assert "WITHOUT authentication (--insecure-no-auth)" in proc.log()


def test_a_missing_secret_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "medic.yml"
    config.write_text(
        f"data_dir: {tmp_path}\nserver:\n  auth: {{bearer_token: {{file: {tmp_path}/nope}}}}\n"
    )
    result = medic_run("--config", str(config), "--listen", "0.0.0.0:0")
    assert result.returncode == 1
    assert "server.auth: cannot read secret file" in result.stderr


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("alertmanager")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "client")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths


def tls_config(tmp_path: Path, certs: dict[str, Path], mtls: bool) -> Path:
    token = tmp_path / "token"
    token.write_text("t0ken")
    client_ca = f"\n    client_ca_file: {certs['ca']}" if mtls else ""
    config = tmp_path / "medic.yml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "server:\n"
        f"  auth: {{bearer_token: {{file: {token}}}}}\n"
        "  public: [health]\n"
        f"  tls:\n    cert_file: {certs['cert']}\n    key_file: {certs['key']}{client_ca}\n"
    )
    return config


def test_tls(
    tmp_path: Path, certs: dict[str, Path], medic_process: Callable[..., MedicProcess]
) -> None:
    proc = medic_process(["--config", str(tls_config(tmp_path, certs, mtls=False))])
    url = proc.wait_listening()
    assert url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    wait_until(lambda: httpx.get(f"{url}/-/healthy", verify=context).status_code == 200)
    response = httpx.post(f"{url}/api/v1/alerts", json=FIRING, verify=context,
                          headers={"authorization": "Bearer t0ken"})  # fmt: skip
    assert response.status_code == 202
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # no plain HTTP
        httpx.get(url.replace("https://", "http://") + "/-/healthy", timeout=2)


def test_mtls_requires_a_client_certificate(
    tmp_path: Path, certs: dict[str, Path], medic_process: Callable[..., MedicProcess]
) -> None:
    proc = medic_process(["--config", str(tls_config(tmp_path, certs, mtls=True))])
    url = proc.wait_listening()
    anonymous = ssl.create_default_context(cafile=str(certs["ca"]))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(f"{url}/-/healthy", verify=anonymous, timeout=5)
    with_cert = ssl.create_default_context(cafile=str(certs["ca"]))
    with_cert.load_cert_chain(str(certs["client"]))
    assert httpx.get(f"{url}/-/healthy", verify=with_cert).status_code == 200
