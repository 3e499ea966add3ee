"""`medic explain` (nothing run) and `medic trigger` / `medic reset` against a real medic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MedicProcess, wait_until

ROOT = Path(__file__).parents[1]
BODIES = sorted((ROOT / "tests" / "fixtures" / "alertmanager").glob("*.json"))
CONFIG = """
data_dir: {data}
checks:
  - {{name: model, type: path, path: {work}/model.bin}}
recovery:
  actions:
    restart_lab: {{type: command, argv: [touch, {work}/restarted]}}
  failures:
    generation_pipeline_error: {{ladder: [clear_gpu_cache, restart_lab], verify: [model]}}
webhook:
  routes:
    - {{matchers: ['alertname="LabFlagHigh"'], failure_type: generation_pipeline_error}}
"""


def medic(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, check=False, input=stdin)  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "medic.yml"
    path.write_text(CONFIG.format(data=tmp_path / "data", work=tmp_path))
    return path


def test_there_are_bodies_to_explain() -> None:
    assert len(BODIES) >= 2


@pytest.mark.parametrize("body", BODIES, ids=lambda p: p.name)
def test_explain_prints_the_route_and_ladder_of_each_body(
    body: Path, config: Path, tmp_path: Path
) -> None:
    result = medic("explain", "--config", str(config), str(body))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        'route     webhook.routes[0] (alertname="LabFlagHigh") -> generation_pipeline_error' in out
    )
    status = json.loads(body.read_text())["alerts"][0]["status"]
    if status == "firing":
        assert "ladder    1. clear_gpu_cache: built in" in out
        assert f"2. restart_lab: command touch {tmp_path}/restarted" in out
        assert "verify    model" in out and "cooldown: 5m" in out
    else:
        assert "resolved: closes the episode" in out
    assert not (tmp_path / "restarted").exists() and not (tmp_path / "data").exists()


def test_explain_json_and_stdin_and_a_single_alert(config: Path) -> None:
    alert = {"labels": {"alertname": "LabFlagHigh", "node": "gpu-99.example"},
             "startsAt": "2026-12-01T00:00:00Z"}  # fmt: skip
    result = medic("explain", "--config", str(config), "-o", "json", "-", stdin=json.dumps(alert))
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["this_host"] is False and entry["outcome"].startswith("ignored: another host")
    assert entry["failure_type"] == "generation_pipeline_error"


def test_explain_refuses_what_is_not_an_alert(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"alerts": "nope"}')
    result = medic("explain", "--config", str(config), str(bad))
    assert result.returncode == 1 and "not an Alertmanager webhook body" in result.stderr
    assert "Traceback" not in result.stderr


REMOTE = """
data_dir: {work}/data
server:
  auth: {{bearer_token: {{file: {work}/token}}}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart_lab: {{type: command, argv: [touch, {work}/restarted]}}
  failures:
    generation_pipeline_error: {{ladder: [restart_lab], settle_delay: 0s}}
"""


def test_trigger_and_reset_use_the_configured_auth(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    path = tmp_path / "medic.yml"
    path.write_text(REMOTE.format(work=tmp_path))
    process = MedicProcess(["--config", str(path)], tmp_path / "medic.log")
    try:
        url = process.wait_listening()
        result = medic("trigger", "generation_pipeline_error", "--label", "reason=manual",
                       "--config", str(path), "--url", url)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("medic: accepted")
        wait_until((tmp_path / "restarted").exists, timeout=15, what="the ladder's command")
        assert "generation_pipeline_error: starting restart_lab" in process.log()
        reset = medic("reset", "--config", str(path), "--url", url)
        assert reset.returncode == 0 and reset.stdout.strip() == "medic: reset", reset.stderr
        unknown = medic("trigger", "no_such_type", "--config", str(path), "--url", url)
        assert unknown.returncode == 1 and "medic answered 400" in unknown.stderr
        # Credentials that do not match: a clear refusal, exit 1, nothing run.
        (tmp_path / "restarted").unlink()
        (tmp_path / "token").write_text("wrong\n")
        refused = medic("trigger", "generation_pipeline_error", "--config", str(path),
                        "--url", url)  # fmt: skip
        assert refused.returncode == 1 and "medic answered 401" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        process.stop()
    assert not (tmp_path / "restarted").exists()


def test_trigger_says_when_medic_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    path = tmp_path / "medic.yml"
    path.write_text(REMOTE.format(work=tmp_path))
    result = medic("trigger", "generation_pipeline_error", "--config", str(path),
                   "--url", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 1 and "cannot reach medic at http://127.0.0.1:9" in result.stderr
