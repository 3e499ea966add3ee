"""The command line: exit codes, messages, and a real `medic run` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from exporter.cli import main
from exporter.version import __version__
from tests.helpers import MedicProcess, wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "config"


def medic(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_dash_dash_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("medic ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"medic {__version__}\n"


def test_check_config_valid_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(FIXTURES / "valid.yml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{FIXTURES / 'valid.yml'}: OK\n")
    assert "checks: 4" in out


def test_check_config_prints_one_problem_of_each_kind_in_one_run() -> None:
    # Schema, cross-references (which pydantic skips once a section fails its schema), the
    # field's own rule for a URL, and a secret file medic run could not read.
    path = FIXTURES / "one_of_each.yml"
    result = medic("check-config", str(path))
    assert result.returncode == 1 and result.stdout == ""
    *lines, total = result.stderr.strip().splitlines()
    assert total == f"{path}: 7 problems"
    expected = [
        ":4: server.auth.bearer_token.file: cannot read /nonexistent/medic/token: No such file",
        ":6: checks[0].interval: invalid duration '-1s'",
        ":7: checks[1].name: 'model' is also the name of checks[0]",
        ":10: recovery.actions.notify.url: must be an http:// or https:// URL",
        ":13: recovery.failures.vram_exhaustion.verify[0]: no check named 'no_such_check'",
        ":14: recovery.failures.vram_exhaustion.ladder[1].action: unknown action 'no_such_action'",
        ":17: webhook.routes[0].failure_type: 'network_error' has no ladder",
        # valid, probably not meant: a warning
        f"warning: {path}:7: checks[1].path: relative path 'models' is resolved against",
    ]
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want if want.startswith("warning") else f"{path}{want}"), line


def test_check_config_schema_only_skips_the_files(tmp_path: Path) -> None:
    path = tmp_path / "medic.yml"
    path.write_text("server:\n  auth: {bearer_token: {file: /nonexistent/token}}\n")
    assert medic("check-config", str(path)).returncode == 1
    assert medic("check-config", "--schema-only", str(path)).returncode == 0
    (tmp_path / "token").write_text("\n")
    path.write_text(f"server:\n  auth: {{bearer_token: {{file: {tmp_path / 'token'}}}}}\n")
    result = medic("check-config", str(path))
    assert result.returncode == 1 and f"secret file {tmp_path / 'token'} is empty" in result.stderr


def test_an_empty_config_file_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "medic.yml"
    path.write_text("# nothing yet\n")
    result = medic("check-config", str(path))
    assert result.returncode == 0
    assert f"warning: {path}: the file has no settings: medic would run no checks" in result.stderr


def test_check_config_invalid_lists_every_problem_and_exits_1() -> None:
    result = medic("check-config", str(FIXTURES / "many_problems.yml"))
    assert result.returncode == 1
    *lines, total = result.stderr.strip().splitlines()
    assert len(lines) == 6 and total == f"{FIXTURES / 'many_problems.yml'}: 6 problems"
    assert all(line.startswith(str(FIXTURES / "many_problems.yml:")) for line in lines)
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--config", "/nonexistent/medic.yml"], "cannot read config file"),
        (["run", "--listen", "nowhere"], "server.listen: listen address 'nowhere'"),
        (["run", "--config", str(FIXTURES / "negative_interval.yml")], "must be greater than 0"),
    ],
)
def test_run_with_a_user_mistake_exits_1_with_one_clear_line(args: list[str], message: str) -> None:
    result = medic(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "listening" not in result.stderr


def test_run_on_a_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = medic(
            "run", "--listen", f"127.0.0.1:{port}", env={"MEDIC_DATA_DIR": str(tmp_path)}
        )
    assert result.returncode == 1
    assert f"medic: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    assert medic("frobnicate").returncode == 2
    assert medic().returncode == 2


def test_default_config_serves_the_promised_metrics(
    medic_process: Callable[..., MedicProcess], tmp_path: Path
) -> None:
    proc = medic_process([], env={"MEDIC_DATA_DIR": str(tmp_path / "data")})
    url = proc.wait_listening()
    wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
    text = httpx.get(f"{url}/metrics").text
    for name in (
        "medic_host_memory_available_bytes",
        "medic_filesystem_avail_bytes",
        "medic_check_success",
    ):
        assert f"\n{name}" in text, name
    assert (tmp_path / "data").is_dir()
    assert proc.terminate() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exits_0_promptly_on_a_signal_while_a_check_is_hung(
    medic_process: Callable[..., MedicProcess], tmp_path: Path, sig: signal.Signals
) -> None:
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)  # opening it blocks forever: a real hang inside the check
    config = tmp_path / "medic.yml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "checks:\n"
        "  - {name: host_memory, type: host_memory, interval: 1s, min_available_ratio: 0}\n"
        f"  - {{name: model, type: path, path: {fifo}, interval: 1s, timeout: 300ms}}\n"
    )
    proc = medic_process(["--config", str(config)])
    url = proc.wait_listening()

    def hung() -> bool:
        # The open() blocks in the check's helper process, which is killed at each timeout
        # (a FIFO's wait is killable) and started again next round: the check fails.
        return 'medic_check_success{check="model"} 0.0' in httpx.get(f"{url}/metrics").text

    wait_until(hung, what="the model check to time out")
    response = httpx.get(f"{url}/metrics", timeout=2)
    assert response.status_code == 200
    assert 'medic_check_success{check="host_memory"} 1.0' in response.text
    proc.proc.send_signal(sig)
    assert proc.proc.wait(timeout=5) == 0
    assert "Traceback" not in proc.log()


def test_an_off_loopback_webhook_without_an_identity_is_warned_about() -> None:
    from exporter.cli import identity_warning
    from exporter.config import parse_config

    lone = parse_config("server: {listen: '0.0.0.0:9847'}", env={})
    warning = identity_warning(lone)
    assert warning is not None and "no `identity` section" in warning
    assert "unlabeled: other_host" in warning
    named = parse_config(
        "server: {listen: '0.0.0.0:9847'}\nidentity: {matchers: ['node=\"a\"']}", env={}
    )
    assert identity_warning(named) is None
    assert identity_warning(parse_config("server: {listen: '127.0.0.1:9847'}", env={})) is None


def test_user_defined_failure_types_and_a_near_miss_of_a_built_in(tmp_path: Path) -> None:
    path = tmp_path / "medic.yml"
    path.write_text("""
recovery:
  actions: {restart_vllm: {type: command, argv: ["true"]}}
  failures:
    model_server_hung: {ladder: [restart_vllm]}
    vram_exhaustoin: {ladder: [clear_gpu_cache]}
webhook:
  routes:
    - {matchers: ['alertname="VllmStalled"'], failure_type: model_server_hung}
""")
    result = medic("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "'vram_exhaustoin' is not a built-in failure type (did you mean 'vram_exhaustion'?)" in (
        result.stderr
    )
    assert "model_server_hung" not in result.stderr  # one of the operator's own: no warning
