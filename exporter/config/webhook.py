"""How alerts reach medic: routes to failure types, the webhook's limits, and pull mode."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from exporter.config.base import PositiveDuration, Strict
from exporter.config.recovery import FailureTypeName
from exporter.config.server import BasicAuthConfig, SecretConfig
from exporter.config.units import ByteSize, Duration


def check_matcher(value: str) -> str:
    """Validator: an Alertmanager matcher (`name="v"`, `name=~"re"`, ...)."""
    from exporter.webhook.matchers import parse_matcher  # noqa: PLC0415 - no import cycle

    parse_matcher(value)
    return value


Matcher = Annotated[str, AfterValidator(check_matcher)]


def check_url(value: str) -> str:
    """Validator: an absolute http(s) URL with a host."""
    scheme, sep, rest = value.partition("://")
    if scheme not in ("http", "https") or not sep or not rest.split("/", 1)[0]:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


Url = Annotated[str, AfterValidator(check_url)]


class RouteConfig(Strict):
    """Alerts whose labels match every matcher become this failure type."""

    matchers: list[Matcher] = Field(min_length=1)
    failure_type: FailureTypeName


class ClientTlsConfig(Strict):
    """TLS towards a server (Prometheus' tls_config names)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> ClientTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (a client certificate)")
        return self


class PullConfig(Strict):
    """Poll Alertmanager's API v2 for the active alerts about this host."""

    alertmanagers: list[Url] = Field(
        min_length=1, description="peers of one Alertmanager cluster; any one answers"
    )
    interval: PositiveDuration = 10.0
    timeout: PositiveDuration = 5.0
    grace: Annotated[Duration, Field(ge=0)] = Field(
        default=30.0,
        description="how long an alert must be missing from successful polls before its "
        "episode closes (failed polls change nothing)",
    )
    fail_after: int = Field(
        default=3, ge=1, description="polls in a row that no peer answers: the check fails"
    )
    filters: list[Matcher] = Field(
        default_factory=list, description="more matchers sent as filter= (e.g. this node)"
    )
    receiver: str | None = Field(
        default=None, description="only alerts Alertmanager routes to a receiver matching this"
    )
    bearer_token: SecretConfig | None = None
    basic_auth: BasicAuthConfig | None = None
    tls: ClientTlsConfig | None = None

    @model_validator(mode="after")
    def _sane(self) -> PullConfig:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)"
            )
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("give at most one of bearer_token or basic_auth")
        return self


class WebhookConfig(Strict):
    """How Alertmanager's alerts become failure events, pushed to medic or pulled by it."""

    routes: list[RouteConfig] = Field(default_factory=list)
    failure_type_annotation: str | None = Field(
        default=None,
        description="an annotation that may pick the failure type among the configured ones",
    )
    max_body_bytes: ByteSize = Field(default=1024 * 1024, ge=1024)
    pull: PullConfig | None = None
