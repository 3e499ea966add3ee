"""What every check's configuration has, whatever its type."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from exporter.config.base import DEFAULT_CHECK_TIMEOUT, CheckName, PositiveDuration, Strict
from exporter.config.recovery import FailureTypeName
from exporter.config.units import Duration, parse_duration


class CheckBase(Strict):
    """What every check has: a name, how often it runs and how long it may take, and when a
    run of failures makes it failing (Kubernetes probes' names and defaults)."""

    name: CheckName
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration = DEFAULT_CHECK_TIMEOUT
    enabled: bool = True
    critical: bool = Field(
        default=False, description="a failing critical check makes the host unhealthy"
    )
    failure_threshold: int = Field(
        default=3, ge=1, description="failed runs in a row that make the check failing"
    )
    success_threshold: int = Field(
        default=1, ge=1, description="passed runs in a row that end a failing streak"
    )
    start_period: Annotated[Duration, Field(ge=0)] = Field(
        default=0.0, description="failures in this long after medic starts are not counted"
    )
    REPORTS_EVENTS: ClassVar[bool] = False
    """Whether failing means "something happened lately" (a log line) rather than "is
    broken now": then the failing streak ending says nothing about recovery."""

    trigger: FailureTypeName | None = Field(
        default=None,
        description="run this failure type's ladder when the check becomes failing (a local "
        "trigger: no Prometheus or Alertmanager in the path)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_timeout(cls, data: Any) -> Any:
        """An unset timeout is 5s, or the interval when that is shorter."""
        if isinstance(data, dict) and "timeout" not in data and "interval" in data:
            try:
                interval = float(parse_duration(data["interval"]))
            except (TypeError, ValueError):
                return data  # the interval's own error is reported
            if 0 < interval < DEFAULT_CHECK_TIMEOUT:
                return {**data, "timeout": interval}
        return data

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> CheckBase:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)"
            )
        return self
