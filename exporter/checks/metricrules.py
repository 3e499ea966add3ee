"""Rules over a scraped exposition, evaluated over a short history of scrapes.

A scrape is reduced to the samples the rules name (sample name -> [(labels, value)]), kept
with its time for as long as the longest window or duration needs. Counters are read the
way Prometheus reads them: a drop is a reset, not negative progress.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.config.metricscheck import MetricRuleConfig

Series = list[tuple[dict[str, str], float]]
Snapshot = dict[str, Series]


@dataclass(frozen=True, slots=True)
class RuleFact:
    """One rule after one scrape: its value (None: not enough data yet) and whether it fires."""

    rule: str
    value: float | None
    firing: bool
    detail: str = ""


def _selected(series: Series, labels: Mapping[str, str]) -> Series:
    return [(ls, v) for ls, v in series if all(ls.get(k) == want for k, want in labels.items())]


def increase(values: list[float]) -> float:
    """A counter's increase over consecutive readings; a drop is a reset (a restart)."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][0] != math.inf:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == math.inf:
                return lower_bound  # the highest finite bound, as Prometheus answers
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None


class RuleEvaluator:
    """Keeps the scrapes the rules need and evaluates every rule after each one."""

    MAX_SNAPSHOTS = 10_000

    def __init__(self, rules: Iterable[MetricRuleConfig]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._history: deque[tuple[float, Snapshot]] = deque(maxlen=self.MAX_SNAPSHOTS)
        self._keep = max([max(r.window, r.for_) for r in self.rules] or [0.0]) + 1.0
        self._since: dict[str, float] = {}  # rule -> when its condition became true

    def wanted(self) -> set[str]:
        """The sample names the rules read (histograms by their _bucket samples)."""
        names: set[str] = set()
        for rule in self.rules:
            for name in [*(rule.metric or []), *(rule.work or []), *(rule.progress or [])]:
                names.add(f"{name}_bucket" if rule.kind == "quantile" else name)
        return names

    def observe(self, at: float, snapshot: Snapshot) -> list[RuleFact]:
        """Add a scrape taken at `at` (monotonic seconds); every rule's fact."""
        self._history.append((at, snapshot))
        while self._history and self._history[0][0] < at - self._keep:
            self._history.popleft()
        return [self._evaluate(rule, at) for rule in self.rules]

    def progressing(self, within: float, now: float) -> bool:
        """Whether any stalled rule's progress counters grew in the `within` seconds before
        `now` (scrapes older than that, e.g. of a /metrics that stopped answering, say
        nothing)."""
        return any(
            increase(self._readings(rule.progress, rule.labels, within, summed=True, end=now)) > 0
            for rule in self.rules
            if rule.kind == "stalled" and rule.progress
        )

    def _window(self, within: float, end: float | None = None) -> list[tuple[float, Snapshot]]:
        """The scrapes of the `within` seconds up to `end` (default: the last scrape)."""
        if not self._history:
            return []
        end = self._history[-1][0] if end is None else end
        return [(at, snapshot) for at, snapshot in self._history if at >= end - within]

    # --- the kinds ----------------------------------------------------------------------
    def _evaluate(self, rule: MetricRuleConfig, at: float) -> RuleFact:
        if rule.kind == "stalled":
            return self._stalled(rule, at)
        if rule.kind == "gauge":
            value = self._current(rule)
        elif rule.kind == "rate":
            value = self._rate(rule)
        else:
            value = self._quantile(rule)
        if value is None:
            self._since.pop(rule.name, None)
            return RuleFact(rule.name, None, False)
        over = rule.above is not None and value > rule.above
        under = rule.below is not None and value < rule.below
        firing = self._held(rule.name, over or under, at, rule.for_)
        detail = ""
        if firing:
            side = f"above {rule.above:g}" if over else f"below {rule.below:g}"
            held = f" for {rule.for_:g}s" if rule.for_ else ""
            detail = f"{rule.name}: {value:g} {side}{held}"
        return RuleFact(rule.name, value, firing, detail)

    def _held(self, name: str, condition: bool, at: float, duration: float) -> bool:
        if not condition:
            self._since.pop(name, None)
            return False
        since = self._since.setdefault(name, at)
        return at - since >= duration

    def _present(self, names: list[str], snapshot: Snapshot) -> str | None:
        return next((n for n in names if snapshot.get(n)), None)

    def _current(self, rule: MetricRuleConfig) -> float | None:
        snapshot = self._history[-1][1]
        name = self._present(rule.metric or [], snapshot)
        if name is None:
            return None
        return sum(v for _, v in _selected(snapshot[name], rule.labels))

    def _readings(self, names: list[str], labels: Mapping[str, str], within: float,
                  summed: bool, end: float | None = None) -> list[float]:  # fmt: skip
        """One value per scrape in the window: the first present name's (summed over its
        series), or with `summed` the sum of every name's."""
        values = []
        for _, snapshot in self._window(within, end):
            if summed:
                chosen = [n for n in names if n in snapshot]
            else:
                first = self._present(names, snapshot)
                chosen = [first] if first else []
            if chosen:
                values.append(sum(v for n in chosen for _, v in _selected(snapshot[n], labels)))
        return values

    def _rate(self, rule: MetricRuleConfig) -> float | None:
        readings = self._readings(rule.metric or [], rule.labels, rule.window, summed=False)
        span = self._span(rule.window)
        if len(readings) < 2 or span <= 0:
            return None
        return increase(readings) / span

    def _span(self, within: float) -> float:
        times = [at for at, _ in self._window(within)]
        return times[-1] - times[0] if times else 0.0

    def _quantile(self, rule: MetricRuleConfig) -> float | None:
        assert rule.quantile is not None
        in_window = self._window(rule.window)
        if len(in_window) < 2:
            return None
        per_bound: dict[float, list[float]] = {}
        for _, snapshot in in_window:
            name = self._present([f"{m}_bucket" for m in rule.metric or []], snapshot)
            summed: dict[float, float] = {}  # this scrape's buckets, over the other labels
            for labels, value in _selected(snapshot.get(name or "", []), rule.labels):
                bound = float(labels.get("le", "nan"))
                if not math.isnan(bound):
                    summed[bound] = summed.get(bound, 0.0) + value
            for bound, value in summed.items():
                per_bound.setdefault(bound, []).append(value)
        return histogram_quantile(rule.quantile,
                                  [(b, increase(v)) for b, v in per_bound.items()])  # fmt: skip

    def _stalled(self, rule: MetricRuleConfig, at: float) -> RuleFact:
        assert rule.work and rule.progress
        end = self._history[-1][0]
        covered = self._history[0][0] <= end - rule.for_
        work = self._readings(rule.work, rule.labels, rule.for_, summed=True)
        progress = self._readings(rule.progress, rule.labels, rule.for_, summed=True)
        now = work[-1] if work else 0.0
        busy = bool(work) and all(w > 0 for w in work)
        flat = len(progress) >= 2 and increase(progress) == 0
        firing = covered and busy and flat
        detail = ""
        if firing:
            detail = (f"{rule.name}: {now:g} requests waiting or running and "
                      f"{', '.join(rule.progress)} flat for {rule.for_:g}s")  # fmt: skip
        return RuleFact(rule.name, now, firing, detail)
