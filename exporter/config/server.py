"""Secrets, authentication, TLS and webhook routing settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from exporter.config.models import Strict
from exporter.config.recovery import FailureTypeName
from exporter.config.units import ByteSize


class SecretConfig(Strict):
    """A secret read from a file (e.g. a Kubernetes secret) or an environment variable."""

    file: str | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretConfig:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self


class BasicAuthConfig(Strict):
    """HTTP basic authentication."""

    username: Annotated[str, Field(min_length=1)]
    password: SecretConfig


class AuthConfig(Strict):
    """Credentials callers of the webhook and the recovery API must present."""

    bearer_token: SecretConfig | None = None
    basic: BasicAuthConfig | None = None

    @model_validator(mode="after")
    def _one_scheme(self) -> AuthConfig:
        if (self.bearer_token is None) == (self.basic is None):
            raise ValueError("give exactly one of bearer_token or basic")
        return self


class TlsConfig(Strict):
    """Serve HTTPS; with client_ca_file, also require client certificates (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


def _check_matcher(value: str) -> str:
    from exporter.webhook.matchers import parse_matcher  # noqa: PLC0415 - no import cycle

    parse_matcher(value)
    return value


class RouteConfig(Strict):
    """Alerts whose labels match every matcher become this failure type."""

    matchers: list[Annotated[str, AfterValidator(_check_matcher)]] = Field(min_length=1)
    failure_type: FailureTypeName


class WebhookConfig(Strict):
    """How Alertmanager notifications become failure events."""

    routes: list[RouteConfig] = Field(default_factory=list)
    failure_type_annotation: str | None = Field(
        default=None,
        description="an annotation that may pick the failure type among the configured ones",
    )
    max_body_bytes: ByteSize = Field(default=1024 * 1024, ge=1024)
