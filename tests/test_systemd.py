"""deploy/systemd: the unit passes systemd's own checks, and the polkit rule lets medic
restart the named units and nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
UNIT = ROOT / "deploy" / "systemd" / "medic.service"
RULE = ROOT / "deploy" / "systemd" / "50-medic.rules"


def unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's medic (verify checks it exists)."""
    medic = Path(sys.executable).parent / "medic"
    text = UNIT.read_text().replace("/opt/medic/bin/medic", str(medic))
    path = tmp_path / "medic.service"
    path.write_text(text)
    return path


needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)


@needs_analyze
def test_the_unit_verifies_with_no_complaint(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(unit_here(tmp_path))],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    # verify exits 0 on unknown keys and only says so: any output is a finding.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@needs_analyze
def test_the_unit_verify_would_catch_a_typo(tmp_path: Path) -> None:
    path = unit_here(tmp_path)
    path.write_text(path.read_text().replace("ProtectSystem=", "ProtectSystm="))
    result = subprocess.run(["systemd-analyze", "verify", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert "Unknown key" in result.stderr


@needs_analyze
def test_the_unit_is_hardened(tmp_path: Path) -> None:
    # systemd's own exposure score, 0 (locked down) to 10, given to --threshold in tenths;
    # 2.0 when this was written (the default unit of a distribution's daemon is 9+).
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=25",
         str(unit_here(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and
        not line.startswith("#")
    )  # fmt: skip
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    assert settings["CapabilityBoundingSet"] == "" and settings["StateDirectory"] == "medic"
    assert settings["User"] == "medic" and settings["KillMode"] == "mixed"


JUDGE = """
const fs = require("fs");
const rules = [];
global.polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: null},
                 addRule: (f) => rules.push(f)};
eval(fs.readFileSync(process.argv[2], "utf8"));
const cases = JSON.parse(process.argv[3]);
const out = cases.map(([id, user, unit, verb]) => {
  const action = {id, lookup: (k) => ({unit, verb})[k]};
  for (const rule of rules) { const r = rule(action, {user}); if (r) return r; }
  return null;
});
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed here")
def test_the_polkit_rule_allows_restarting_the_named_units_only(tmp_path: Path) -> None:
    manage = "org.freedesktop.systemd1.manage-units"
    cases = [
        [manage, "medic", "vllm.service", "restart"],
        [manage, "medic", "tgi.service", "try-restart"],
        [manage, "medic", "vllm.service", "stop"],
        [manage, "medic", "vllm.service", "start"],
        [manage, "medic", "sshd.service", "restart"],
        [manage, "alice", "vllm.service", "restart"],
        ["org.freedesktop.systemd1.manage-unit-files", "medic", "vllm.service", "restart"],
    ]
    judge = tmp_path / "judge.js"
    judge.write_text(JUDGE)
    result = subprocess.run(["node", str(judge), str(RULE), json.dumps(cases)],
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    # stop and start: the systemd action's stop, hygiene, start (for the listed units only)
    assert json.loads(result.stdout) == ["yes", "yes", "yes", "yes", None, None, None]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed here")
def test_the_polkit_rule_is_es5_for_duktape(tmp_path: Path) -> None:
    text = RULE.read_text()
    assert "=>" not in text and "let " not in text and "const " not in text
    script = tmp_path / "rule.js"  # node checks syntax by extension
    script.write_text(text)
    check = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True,
                           timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stderr
