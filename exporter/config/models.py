"""The root of the configuration schema: every section, and the checks between them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from exporter.config import references
from exporter.config.base import CheckName, PositiveDuration, Strict, default_data_dir
from exporter.config.checks import CheckConfig
from exporter.config.fleet import FleetConfig
from exporter.config.identity import IdentityConfig
from exporter.config.recovery import RecoveryConfig
from exporter.config.server import ServerConfig
from exporter.config.units import Duration, Located
from exporter.config.webhook import WebhookConfig


class BreakerConfig(Strict):
    """A named circuit breaker's thresholds (resilience4j's names)."""

    name: CheckName
    failure_threshold: int = Field(default=5, ge=0, description="consecutive failures; 0 off")
    failure_rate_threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    sliding_window_size: int = Field(default=20, ge=1)
    minimum_number_of_calls: int = Field(default=10, ge=1)
    wait_duration_in_open: Annotated[Duration, Field(ge=0)] = 30.0
    permitted_calls_in_half_open: int = Field(default=1, ge=1)
    call_timeout: PositiveDuration | None = None


class Config(Strict):
    """The whole of medic's configuration."""

    server: ServerConfig = ServerConfig()
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    checks: list[CheckConfig] = Field(default_factory=list)
    breakers: list[BreakerConfig] = Field(default_factory=list)
    recovery: RecoveryConfig = RecoveryConfig()
    webhook: WebhookConfig = WebhookConfig()
    identity: IdentityConfig | None = Field(
        default=None, description="which alerts are about this host (default: its own names)"
    )
    fleet: FleetConfig | None = Field(
        default=None, description="fleet-wide limits on disruptive rungs (Prometheus, etcd)"
    )

    @model_validator(mode="after")
    def _verify_checks_exist(self) -> Config:
        problems = references.verify_and_routes(
            self.model_dump(include={"checks", "recovery", "webhook"})
        )
        if problems:
            raise Located(problems)
        return self

    @model_validator(mode="after")
    def _guard_has_prometheus(self) -> Config:
        guard = self.fleet.guard if self.fleet else None
        if guard is not None and not (guard.prometheus_url or self.recovery.prometheus_url):
            raise ValueError(
                "fleet.guard asks Prometheus: set fleet.guard.prometheus_url or "
                "recovery.prometheus_url"
            )
        return self

    @field_validator("breakers")
    @classmethod
    def _unique_breaker_names(cls, breakers: list[BreakerConfig]) -> list[BreakerConfig]:
        problems = references.breaker_names([b.model_dump() for b in breakers])
        if problems:
            raise Located(problems)
        return breakers

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, checks: list[CheckConfig]) -> list[CheckConfig]:
        problems = references.check_names([c.model_dump() for c in checks])
        if problems:
            raise Located(problems)
        return checks
