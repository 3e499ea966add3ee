"""`pip install .` with no extras: every built-in action type works against a real peer.

(The http action once imported httpx from the test extra only: every http rung of a plain
install, the Docker image and four of deploy/medic.yml's five actions failed.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "fixtures" / "plain" / "actions.py"
TEST_ONLY = ("pytest", "hypothesis", "trustme", "torch")


def tracked_copy(destination: Path) -> Path:
    """The working tree's files that a commit would hold (tracked, or new and not ignored),
    copied: pip builds inside the source tree (build/), which must not be the checkout."""
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, check=True, timeout=60)
    names = listed.stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in names)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def test_every_action_type_works_on_a_plain_install(tmp_path: Path) -> None:
    source = tracked_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    present = subprocess.run(
        [python, "-c", "import importlib.util as u, sys; "
         f"print([m for m in {TEST_ONLY!r} if u.find_spec(m)])"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert present.stdout.strip() == "[]"  # nothing from an extra came along
    run = subprocess.run(
        [python, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False,
        cwd=tmp_path,  # not the checkout: the installed package is what runs
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    command, requests, signalled, started = report.pop("_effects")
    assert report.pop("ladder")[0] == "exhausted"  # model_server_hung's: none could reach
    assert {action: outcome for action, (outcome, _) in report.items()} == {
        "restart_pipeline": "succeeded",  # command
        "enable_cpu_offload": "succeeded",  # http
        "reload": "succeeded",  # signal
        "reduce_generation_params": "succeeded",  # in_process
        "clear_gpu_cache": "skipped_unavailable",  # built in: no torch, so no CUDA here
        "system_health_check": "succeeded",  # built in
        "restart_group": "succeeded",  # process
        # No daemon to reach: failures that say so, not an ImportError of their clients.
        "restart_unit": "failed",
        "restart_pod": "failed",
        "restart_container": "failed",
        "flush": "failed",
    }
    details = {action: detail for action, (_, detail) in report.items()}
    assert details["restart_unit"].startswith("cannot reach the D-Bus unix:path=")
    assert "cannot reach the Kubernetes API" in details["restart_pod"]
    assert details["restart_container"].startswith("cannot reach the Docker engine at ")
    assert details["flush"].startswith("sglang_flush_cache: ConnectError")
    assert started == "started"
    assert command == "ran"
    assert requests == ['{"failure_type": "network_error"}']
    assert signalled == "got"
    assert report["reduce_generation_params"][1] == "batch size 1"
