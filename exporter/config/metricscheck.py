"""The metrics check: scrape another process's /metrics and evaluate rules on it.

Rule kinds, one per entry (its `kind`):
- `gauge`: the summed value of a metric above or below a threshold `for` a duration;
- `rate`: a counter's per-second rate over `window` above or below a threshold;
- `quantile`: a histogram's quantile over `window` above a threshold;
- `stalled`: work present (the sum of `work` gauges above 0) while the `progress` counters
  did not increase, `for` a duration — the hang that keeps a server's /health at 200.

Each metric may be a list of names, the first one present wins: servers rename metrics
across releases (vLLM's gpu_cache_usage_perc became kv_cache_usage_perc).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from exporter.config.base import CheckName, Strict
from exporter.config.checkbase import CheckBase
from exporter.config.probes import HttpUrl
from exporter.config.server import SecretConfig
from exporter.config.units import Duration

MetricNames = Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$")]],
                        Field(min_length=1)]  # fmt: skip
"""`metric`: alternatives, the first present wins; `work`, `progress`: summed (absent: 0)."""


class MetricRuleConfig(Strict):
    """One rule over the scraped metrics (see the module's docstring for the kinds)."""

    name: CheckName
    kind: Literal["gauge", "rate", "quantile", "stalled"] = "gauge"
    metric: MetricNames | None = None
    labels: dict[str, str] = Field(
        default_factory=dict, description="only series with these label values"
    )
    above: float | None = None
    below: float | None = None
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = None
    window: Annotated[Duration, Field(gt=0)] = 300.0
    for_: Annotated[Duration, Field(ge=0)] = Field(default=0.0, alias="for")
    work: MetricNames | None = Field(default=None, description="stalled: gauges of work present")
    progress: MetricNames | None = Field(
        default=None, description="stalled: counters that grow while work gets done"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _complete(self) -> MetricRuleConfig:
        if not self.enabled:
            return self
        if self.kind == "stalled":
            if not self.work or not self.progress:
                raise ValueError("a stalled rule needs work (gauges) and progress (counters)")
            return self
        if not self.metric:
            raise ValueError(f"a {self.kind} rule needs metric")
        if self.above is None and self.below is None:
            raise ValueError("give above or below")
        if self.kind == "quantile" and self.quantile is None:
            raise ValueError("a quantile rule needs quantile (e.g. 0.99)")
        return self


class MetricsCheckConfig(CheckBase):
    """Scrape a model server's /metrics (text format or OpenMetrics) and evaluate rules."""

    type: Literal["metrics"]
    url: HttpUrl
    presets: list[PresetName] = Field(
        default_factory=list, description="named rule bundles; a rule of the same name overrides"
    )
    rules: list[dict[str, object]] = Field(
        default_factory=list,
        description="rules; one named like a preset's replaces that preset rule's given keys",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token: SecretConfig | None = None
    max_series: int = Field(default=100_000, ge=1, description="a larger exposition fails")

    @model_validator(mode="after")
    def _rules_valid(self) -> MetricsCheckConfig:
        if not self.presets and not self.rules:
            raise ValueError("give presets or rules")
        merged_rules(self.presets, self.rules)  # raises ValueError on a bad rule
        return self


PresetName = Literal["vllm", "tgi", "triton", "sglang", "llamacpp"]
_STALLED_FOR = 120.0
PRESETS: dict[str, list[dict[str, object]]] = {
    # work present while the progress counters stay flat: the hang behind a 200 /health.
    # Per-step counters (tokens, forward passes) react faster than per-request ones.
    "vllm": [
        {"name": "stalled", "kind": "stalled", "for": _STALLED_FOR,
         "work": ["vllm:num_requests_running", "vllm:num_requests_waiting"],
         "progress": ["vllm:generation_tokens_total", "vllm:prompt_tokens_total"]},
        {"name": "kv_cache_full", "kind": "gauge", "above": 0.99, "for": 300.0,
         "metric": ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]},
        {"name": "ttft_p99", "kind": "quantile", "quantile": 0.99, "above": 30.0,
         "window": 300.0, "metric": ["vllm:time_to_first_token_seconds"]},
    ],
    "tgi": [
        {"name": "stalled", "kind": "stalled", "for": _STALLED_FOR,
         "work": ["tgi_queue_size", "tgi_batch_current_size"],
         "progress": ["tgi_batch_forward_duration_count"]},
        {"name": "failures", "kind": "rate", "above": 0.1, "window": 300.0,
         "metric": ["tgi_request_failure_total", "tgi_request_failure"]},
    ],
    "triton": [
        {"name": "stalled", "kind": "stalled", "for": _STALLED_FOR,
         "work": ["nv_inference_pending_request_count"],
         "progress": ["nv_inference_exec_count", "nv_inference_request_success"]},
        {"name": "failures", "kind": "rate", "above": 0.1, "window": 300.0,
         "metric": ["nv_inference_request_failure"]},
    ],
    "sglang": [
        {"name": "stalled", "kind": "stalled", "for": _STALLED_FOR,
         "work": ["sglang:num_running_reqs", "sglang:num_queue_reqs"],
         "progress": ["sglang:generation_tokens_total"]},
    ],
    "llamacpp": [
        {"name": "stalled", "kind": "stalled", "for": _STALLED_FOR,
         "work": ["llamacpp:requests_processing", "llamacpp:requests_deferred"],
         "progress": ["llamacpp:tokens_predicted_total", "llamacpp:n_decode_total"]},
    ],
}  # fmt: skip
"""Named rule bundles for servers whose metric names are known (see the model-server notes)."""


def merged_rules(
    presets: Sequence[str], rules: Sequence[Mapping[str, object]]
) -> list[MetricRuleConfig]:
    """The presets' rules with the user's merged in by name (a rule of a preset's name
    changes only the keys it gives; `enabled: false` turns it off), then the user's own."""
    by_name: dict[str, dict[str, object]] = {}
    for preset in presets:
        for rule in PRESETS[preset]:
            by_name[str(rule["name"])] = dict(rule)
    for given in rules:
        name = str(given.get("name", ""))
        by_name[name] = {**by_name.get(name, {}), **given}
    found = []
    for name, rule in by_name.items():
        try:
            found.append(MetricRuleConfig.model_validate(rule))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            why = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"rule {name!r}: {where + ': ' if where else ''}{why}") from None
    return found
