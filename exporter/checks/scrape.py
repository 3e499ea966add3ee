"""The metrics check's probe: scrape another process's /metrics, evaluate the rules.

Only the lines whose sample names the rules read are parsed (prometheus_client's parser,
on the lines kept): a vLLM exposition of 5,000 series costs a filter pass, not a parse of
everything. An OpenMetrics answer is parsed whole by prometheus_client's OpenMetrics parser.
"""

from __future__ import annotations

import httpx
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.checks.base import Observation
from exporter.checks.metricrules import RuleEvaluator, RuleFact, Snapshot
from exporter.clock import Clock, SystemClock
from exporter.config.metricscheck import MetricsCheckConfig, merged_rules
from exporter.webhook.auth import SecretError, authorization

TEXT = "text/plain;version=0.0.4;q=1.0, application/openmetrics-text;q=0.5"


def snapshot(text: str, wanted: set[str], openmetrics: bool = False,
             max_series: int = 100_000) -> Snapshot:  # fmt: skip
    """The samples named in `wanted`: name -> [(labels, value)]."""
    if openmetrics:
        families = openmetrics_families(text)  # type: ignore[no-untyped-call]
    else:
        kept = []
        lines = text.splitlines()
        if len(lines) > max_series * 2:
            raise ValueError(f"the exposition has {len(lines)} lines, above max_series")
        for line in lines:
            if not line or line[0] == "#":
                continue
            end = len(line)
            for stop in ("{", " "):
                at = line.find(stop)
                if 0 <= at < end:
                    end = at
            if line[:end] in wanted:
                kept.append(line)
        families = text_string_to_metric_families("\n".join(kept) + "\n")
    found: Snapshot = {}
    count = 0
    for family in families:
        for sample in family.samples:
            count += 1
            if sample.name in wanted:
                found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    if count > max_series:
        raise ValueError(f"the exposition has {count} series, above max_series {max_series}")
    return found


class MetricsProbe:
    """One scrape per run; the check fails while a rule fires (each says why)."""

    def __init__(self, config: MetricsCheckConfig, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self.evaluator = RuleEvaluator(merged_rules(config.presets, config.rules))
        self._wanted = self.evaluator.wanted()
        headers = {"Accept": TEXT, "User-Agent": "medic-metrics", **config.headers}
        self._setup_error = ""
        try:
            headers.update(authorization(config.bearer_token))
        except SecretError as exc:
            self._setup_error = str(exc)  # each run fails with it; medic keeps serving
        self._client = httpx.Client(headers=headers, timeout=config.timeout)

    def __call__(self) -> Observation:
        """Scrape, keep what the rules read, evaluate them."""
        if self._setup_error:
            return Observation(problems=(self._setup_error,))
        try:
            answer = self._client.get(self._config.url)
        except httpx.TimeoutException:
            # A wedged server may hang its /metrics too: that is a failure of its own.
            return Observation(problems=(f"scrape timed out after {self._config.timeout:g}s",))
        except httpx.HTTPError as exc:
            return Observation(problems=(f"scrape failed: {type(exc).__name__}: {exc}",))
        if answer.status_code != 200:
            return Observation(problems=(f"scrape answered HTTP {answer.status_code}",))
        kind = answer.headers.get("content-type", "")
        try:
            found = snapshot(answer.text, self._wanted, kind.startswith("application/openmetrics"),
                             self._config.max_series)  # fmt: skip
        except ValueError as exc:
            return Observation(problems=(f"cannot parse the exposition: {exc}",))
        facts: list[RuleFact] = self.evaluator.observe(self._clock.monotonic(), found)
        problems = tuple(f.detail for f in facts if f.firing)
        return Observation(tuple(facts), problems)

    def progressing(self, within: float) -> bool:
        """Whether the server's progress counters grew lately (the synthetic probe skips)."""
        return self.evaluator.progressing(within, self._clock.monotonic())

    def stuck(self) -> bool:
        """Never: the scrape's timeout bounds it."""
        return False

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
