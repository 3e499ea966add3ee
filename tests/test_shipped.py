"""The files users plug in agree with each other and with medic."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from exporter.config import load_config
from exporter.webhook.intake import Router
from exporter.webhook.models import Alert

ROOT = Path(__file__).parents[1]
RUNBOOKS = "https://github.com/medic-exporter/medic/blob/main/README.md#"


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((ROOT / "alerts" / "medic.rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def readme_anchors() -> set[str]:
    """GitHub's anchors for the README's headings (lowercase, spaces to hyphens)."""
    anchors = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def test_every_rule_explains_itself_and_links_its_runbook() -> None:
    anchors = readme_anchors()
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical")  # type: ignore[index]
        url = str(annotations.get("runbook_url", ""))
        assert url.startswith(RUNBOOKS), (rule["alert"], url)
        assert url.removeprefix(RUNBOOKS) == str(rule["alert"]).lower(), rule["alert"]
        assert url.removeprefix(RUNBOOKS) in anchors, f"README has no section for {url}"


# Rules about medic itself go to people: a broken remediator must not "fix" itself.
SELF = {"MedicDown", "MedicAbsent", "MedicCheckStuck", "MedicCheckStale",
        "MedicRecoveryExhausted", "MedicRecoveryFailing", "MedicJournalDown",
        "MedicAlertmanagerUnreachable", "MedicFleetLimitReached",
        "MedicFleetSlotLeaseLost"}  # fmt: skip


def test_medic_never_remediates_its_own_failures() -> None:
    by_name = {str(rule["alert"]): rule for rule in rules()}
    assert set(by_name) >= SELF
    for name in SELF:
        assert "medic_failure_type" not in by_name[name].get("labels", {}), name  # type: ignore[operator]
    # Medic's per-action breakers are its own state, not the app's.
    assert 'name!~"action:.*"' in str(by_name["MedicBreakerOpenTooLong"]["expr"])


def test_vram_occupancy_alone_remediates_nothing() -> None:
    # vLLM, TGI and TensorRT-LLM pre-allocate 90-95% of VRAM on purpose.
    by_name = {str(rule["alert"]): rule for rule in rules()}
    assert "medic_failure_type" not in by_name["MedicGpuMemoryHigh"]["labels"]  # type: ignore[operator]
    assert "medic_circuitbreaker_state" in str(by_name["MedicGpuMemoryExhausted"]["expr"])


def test_every_remediated_rule_is_routed_by_the_example_config(tmp_path: Path) -> None:
    config = load_config(ROOT / "deploy" / "medic.yml", env={"MEDIC_DATA_DIR": str(tmp_path)})
    intake = Router(config.webhook, config.recovery.failures)
    routed = 0
    for rule in rules():
        labels = dict(rule["labels"])  # type: ignore[call-overload]
        wanted = labels.get("medic_failure_type")
        alert = Alert(status="firing", labels={"alertname": str(rule["alert"]), **labels},
                      startsAt="2026-01-01T00:00:00Z", fingerprint="f")  # fmt: skip
        assert intake.route(alert) == wanted, rule["alert"]
        if wanted:
            assert wanted in config.recovery.failures
            routed += 1
    assert routed >= 8


def test_the_test_file_covers_every_rule() -> None:
    tests = yaml.safe_load((ROOT / "alerts" / "tests" / "medic.rules.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in rules()}


def test_alertmanager_sends_each_rule_where_it_belongs() -> None:
    import subprocess

    from tests.e2e.stack import require

    for rule in rules():
        labels = {"alertname": str(rule["alert"]), **dict(rule["labels"])}  # type: ignore[call-overload]
        result = subprocess.run(
            [require("amtool"), "config", "routes", "test",
             f"--config.file={ROOT / 'alerts' / 'alertmanager.yml'}",
             *(f"{k}={v}" for k, v in labels.items())],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        receivers = result.stdout.strip()
        if "medic_failure_type" in labels:
            assert receivers == "medic,people", (rule["alert"], receivers)
        elif labels["severity"] == "info":
            assert receivers == "informational", (rule["alert"], receivers)  # never pages
        else:
            assert receivers == "people", (rule["alert"], receivers)


def test_the_vllm_example_is_a_valid_config(tmp_path: Path) -> None:
    config = load_config(ROOT / "examples" / "medic-vllm.yml",
                         env={"MEDIC_DATA_DIR": str(tmp_path)})  # fmt: skip
    by_name = {c.name: c for c in config.checks}
    assert by_name["vllm_generate"].trigger == "model_server_hung"
    assert config.recovery.failures["model_server_hung"].verify == ["vllm_generate"]


def test_the_host_ladders_go_gentle_then_restart_drained_and_verified(tmp_path: Path) -> None:
    from exporter.config.recovery import HttpActionConfig, RestartBase

    env = {"LB_ADMIN_URL": "http://127.0.0.1:8404", "MEDIC_DATA_DIR": str(tmp_path)}
    for host in ("vllm", "triton"):
        recovery = load_config(ROOT / "deploy" / "hosts" / f"{host}.yml", env=env).recovery
        actions = recovery.actions
        for name, failure in recovery.failures.items():
            rungs = [actions[r.action] for r in failure.ladder]
            *gentle, restart = rungs
            assert isinstance(restart, RestartBase), (host, name)
            assert all(isinstance(g, HttpActionConfig) and g.preset for g in gentle), (host, name)
            assert failure.verify, (host, name)  # a rung is done only when a request works
            assert restart.drain is not None and restart.drain.undo is not None
            assert restart.hygiene.gpu_memory and restart.hygiene.start_deadline
            # The rung's timeout covers the drain, the stop's hygiene and the start.
            longest = restart.drain.deadline + restart.hygiene.deadline
            assert all(r.timeout > longest for r in failure.ladder if actions[r.action] is restart)
        targets = {a.target for a in actions.values()}
        assert len(targets) == 1, "every action names the one model server"
        [target] = targets
        assert target is not None and recovery.targets[target].budget is not None
