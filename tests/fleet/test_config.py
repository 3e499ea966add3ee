"""The fleet section: limits as counts or shares, domains that must be named, clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exporter.config import Config
from exporter.config.fleet import FleetConfig, Limit

SEMAPHORE = {"endpoints": ["http://127.0.0.1:2379"], "slots": {"fleet": 3}}


@pytest.mark.parametrize(("text", "value", "hosts", "ok"), [
    (3, 3, 10, True), (3, 4, 10, False), ("50%", 6, 12, True), ("50%", 7, 12, False),
    ("0%", 0, 12, True), ("10%", 1, 0, False),  # no hosts known: never "within" a share
])  # fmt: skip
def test_a_limit_is_a_count_or_a_share(text: object, value: int, hosts: int, ok: bool) -> None:
    budget = FleetConfig.model_validate({"guard": {"budgets": [{"max_affected": text}]}})
    assert budget.guard is not None
    limit = budget.guard.budgets[0].max_affected
    assert isinstance(limit, Limit)
    assert limit.allows(value, hosts) is ok


@pytest.mark.parametrize("bad", ["half", "150%", -1, True, "3 hosts"])
def test_a_bad_limit_is_refused_with_its_value(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"limit|share|negative"):
        FleetConfig.model_validate({"guard": {"budgets": [{"max_affected": bad}]}})


def test_a_budget_without_a_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="give max_affected, max_in_action or both"):
        FleetConfig.model_validate(
            {"guard": {"budgets": [{"domain": "rack"}]}, "domains": {"rack": "r1"}}
        )


def test_a_domain_budget_or_slot_needs_this_hosts_value() -> None:
    with pytest.raises(ValidationError, match=r"fleet\.domains has no value for rack"):
        FleetConfig.model_validate({"semaphore": {**SEMAPHORE, "slots": {"rack": 1}}})
    with pytest.raises(ValidationError, match=r"fleet\.domains has no value for zone"):
        FleetConfig.model_validate({"guard": {"budgets": [{"domain": "zone", "max_affected": 1}]}})


def test_the_guard_needs_a_prometheus() -> None:
    with pytest.raises(ValidationError, match=r"fleet\.guard asks Prometheus"):
        Config.model_validate({"fleet": {"guard": {"budgets": [{"max_affected": 1}]}}})
    Config.model_validate({"recovery": {"prometheus_url": "http://127.0.0.1:9090"},
                           "fleet": {"guard": {"budgets": [{"max_affected": 1}]}}})  # fmt: skip


def test_no_fleet_section_builds_no_fleet_stage() -> None:
    from exporter.fleet import build

    assert build(None, None, changed=lambda: None) is None
    assert build(FleetConfig(), None, changed=lambda: None) is None
