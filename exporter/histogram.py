"""A Prometheus-shaped histogram kept in memory: bucket counts, sum and count."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Histogram:
    """Observations counted into cumulative buckets with upper `bounds` (+Inf implied)."""

    bounds: tuple[float, ...]
    buckets: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.buckets:
            self.buckets = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        """Add one observation."""
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.buckets[index] += 1
        self.total += value
        self.count += 1

    def copy(self) -> Histogram:
        """A snapshot that later observations do not change."""
        return Histogram(self.bounds, list(self.buckets), self.total, self.count)

    def samples(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs, +Inf last: what HistogramMetricFamily takes."""
        found = [(f"{bound:g}", float(n)) for bound, n in zip(self.bounds, self.buckets,
                                                                strict=True)]  # fmt: skip
        return [*found, ("+Inf", float(self.count))]
