"""The files users plug in agree with each other and with medic."""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.config import load_config
from exporter.recovery.engine import RecoveryEngine
from exporter.webhook.identity import Identity
from exporter.webhook.intake import Intake
from exporter.webhook.models import Alert

ROOT = Path(__file__).parents[1]


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((ROOT / "alerts" / "medic.rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_rule_explains_itself() -> None:
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]


def test_every_remediated_rule_is_routed_by_the_example_config(tmp_path: Path) -> None:
    config = load_config(ROOT / "deploy" / "medic.yml", env={"MEDIC_DATA_DIR": str(tmp_path)})
    engine = RecoveryEngine.__new__(RecoveryEngine)
    engine.config = config.recovery  # routing only needs the configured failure types
    intake = Intake(config.webhook, engine, Identity())
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
    assert routed >= 9


def test_the_test_file_covers_every_rule() -> None:
    tests = yaml.safe_load((ROOT / "alerts" / "tests" / "medic.rules.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in rules()}
