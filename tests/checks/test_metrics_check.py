"""The metrics check: rules over another process's /metrics, the presets against stand-ins
with the real servers' endpoint semantics and metric names, and the rule arithmetic."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exporter.checks.metricrules import RuleEvaluator, RuleFact, histogram_quantile, increase
from exporter.checks.scrape import MetricsProbe, snapshot
from exporter.config import ConfigError, parse_config
from exporter.config.metricscheck import MetricRuleConfig, MetricsCheckConfig
from tests.fixtures.engines import HEALTH, EngineStandIn
from tests.helpers import FakeClock

OPEN: list[MetricsProbe] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def probe(url: str, clock: FakeClock, **options: Any) -> MetricsProbe:
    config = MetricsCheckConfig.model_validate(
        {"name": "engine", "type": "metrics", "url": f"{url}/metrics", "timeout": "1s",
         **options})  # fmt: skip
    made = MetricsProbe(config, clock)
    OPEN.append(made)
    return made


def facts(observation: Any) -> dict[str, RuleFact]:
    return {f.rule: f for f in observation.facts if isinstance(f, RuleFact)}


@pytest.mark.parametrize("kind", ["vllm", "tgi", "triton"])
def test_the_preset_finds_a_stall_while_health_says_200(kind: str) -> None:
    engine, clock = EngineStandIn(kind), FakeClock()
    try:
        check = probe(engine.url, clock, presets=[kind])
        for _ in range(5):  # working: counters grow at every scrape
            observation = check()
            clock.advance(30)
        assert observation.problems == () and not facts(observation)["stalled"].firing
        engine.mode = "hung"  # the counters last grew at the scrape before this
        for _ in range(3):  # flat for 30, 60, 90 s: not yet the preset's 2 minutes
            observation = check()
            clock.advance(30)
        assert not facts(observation)["stalled"].firing
        observation = check()  # 120 s flat with requests in flight
        stalled = facts(observation)["stalled"]
        assert stalled.firing and stalled.value == (
            3 if kind == "triton" else 4
        )  # queued + running
        assert any(p.startswith("stalled: ") and "flat for 120s" in p
                   for p in observation.problems)  # fmt: skip
        # The server's own health check says all is well meanwhile.
        assert httpx.get(f"{engine.url}{HEALTH[kind]}").status_code == 200
        engine.mode = "working"
        clock.advance(30)
        assert not facts(check())["stalled"].firing
    finally:
        engine.stop()


def test_an_idle_server_with_flat_counters_is_not_stalled() -> None:
    engine, clock = EngineStandIn("vllm"), FakeClock()
    engine.mode = "idle"
    try:
        check = probe(engine.url, clock, presets=["vllm"])
        for _ in range(8):
            observation = check()
            clock.advance(30)
        assert not facts(observation)["stalled"].firing
    finally:
        engine.stop()


def test_vllm_old_and_new_metric_names() -> None:
    for old in (False, True):
        engine, clock = EngineStandIn("vllm", old_names=old), FakeClock()
        try:
            check = probe(engine.url, clock, presets=["vllm"],
                          rules=[{"name": "kv_cache_full", "above": 0.4, "for": 0}])  # fmt: skip
            found = facts(check())["kv_cache_full"]
            assert found.value == 0.42 and found.firing, old
        finally:
            engine.stop()


def test_a_preset_rule_can_be_overridden_or_turned_off() -> None:
    config = MetricsCheckConfig.model_validate({
        "name": "e", "type": "metrics", "url": "http://127.0.0.1:9/metrics",
        "presets": ["vllm"],
        "rules": [{"name": "stalled", "for": "5m"}, {"name": "ttft_p99", "enabled": False},
                  {"name": "waiting", "kind": "gauge", "metric": ["vllm:num_requests_waiting"],
                   "above": 50, "for": "1m"}],
    })  # fmt: skip
    from exporter.config.metricscheck import merged_rules

    rules = {r.name: r for r in merged_rules(config.presets, config.rules)}
    assert rules["stalled"].for_ == 300 and rules["stalled"].work  # the preset's work kept
    assert not rules["ttft_p99"].enabled and rules["waiting"].above == 50


def test_bad_rules_are_config_errors_with_their_reason() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("""
checks:
  - name: e
    type: metrics
    url: http://127.0.0.1:8000/metrics
    rules: [{name: q, kind: quantile, metric: [x], above: 1}]
""", env={})  # fmt: skip
    assert "rule 'q': a quantile rule needs quantile (e.g. 0.99)" in str(raised.value)


def test_a_hung_metrics_endpoint_is_a_failure_of_its_own() -> None:
    engine, clock = EngineStandIn("vllm"), FakeClock()
    engine.hang_metrics = True
    try:
        observation = probe(engine.url, clock, presets=["vllm"], timeout="300ms")()
        assert observation.problems == ("scrape timed out after 0.3s",)
    finally:
        engine.stop()


def rule(**options: Any) -> MetricRuleConfig:
    return MetricRuleConfig.model_validate({"name": "r", **options})


def test_a_gauge_must_hold_for_its_duration() -> None:
    evaluator = RuleEvaluator([rule(kind="gauge", metric=["q"], above=10, **{"for": 60})])
    seen = [evaluator.observe(t, {"q": [({}, v)]})[0].firing
            for t, v in ((0, 20), (30, 20), (60, 20), (90, 5), (120, 20))]  # fmt: skip
    assert seen == [False, False, True, False, False]


def test_rate_reads_a_reset_as_a_restart() -> None:
    assert increase([10, 15, 3, 8]) == 5 + 3 + 5
    evaluator = RuleEvaluator([rule(kind="rate", metric=["errors_total"], above=0.5,
                                    window=60)])  # fmt: skip
    evaluator.observe(0, {"errors_total": [({"code": "500"}, 100)]})
    [fact] = evaluator.observe(60, {"errors_total": [({"code": "500"}, 10)]})  # restarted
    assert fact.value == pytest.approx(10 / 60) and not fact.firing


def test_labels_select_series() -> None:
    evaluator = RuleEvaluator([rule(kind="gauge", metric=["up"], labels={"model": "a"},
                                    below=1)])  # fmt: skip
    [fact] = evaluator.observe(0, {"up": [({"model": "a"}, 0), ({"model": "b"}, 1)]})
    assert fact.value == 0 and fact.firing


def test_quantile_over_the_window_as_prometheus_computes_it() -> None:
    assert histogram_quantile(0.5, [(1.0, 50), (2.0, 100), (math.inf, 100)]) == 1.0
    assert histogram_quantile(0.75, [(1.0, 50), (2.0, 100), (math.inf, 100)]) == 1.5
    evaluator = RuleEvaluator([rule(kind="quantile", metric=["ttft"], quantile=0.99,
                                    above=1.0, window=300)])  # fmt: skip

    def buckets(fast: int, slow: int) -> dict[str, list[tuple[dict[str, str], float]]]:
        return {"ttft_bucket": [({"le": "0.5"}, fast), ({"le": "2.0"}, fast + slow),
                                ({"le": "+Inf"}, fast + slow)]}  # fmt: skip

    evaluator.observe(0, buckets(1000, 0))
    [fact] = evaluator.observe(60, buckets(1000, 100))  # the last minute: all slow
    assert fact.value is not None and 1.0 < fact.value <= 2.0 and fact.firing


def test_only_the_wanted_lines_are_parsed_and_openmetrics_too() -> None:
    text = ('# TYPE a gauge\na{x="1"} 1\na{x="2"} 2\nb 3\n'
            '# TYPE c_total counter\nc_total 7\n')  # fmt: skip
    assert snapshot(text, {"a", "c_total"}) == {"a": [({"x": "1"}, 1.0), ({"x": "2"}, 2.0)],
                                               "c_total": [({}, 7.0)]}  # fmt: skip
    om = "# TYPE c counter\nc_total 7.0\n# EOF\n"
    assert snapshot(om, {"c_total"}, openmetrics=True) == {"c_total": [({}, 7.0)]}
    with pytest.raises(ValueError, match="above max_series"):
        snapshot("a 1\n" * 30, {"a"}, max_series=10)
