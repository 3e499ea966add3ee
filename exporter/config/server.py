"""Where medic listens, and the secrets, authentication and TLS it serves with."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from exporter.config.base import DEFAULT_LISTEN, PositiveDuration, Strict, check_listen
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
    """Credentials: bearer token or basic auth, exactly one."""

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


class LimitsConfig(Strict):
    """What one client may cost: sizes, times and connections (see README, "Under load")."""

    max_header_bytes: ByteSize = Field(
        default=16 * 1024, ge=1024, description="request line and headers; beyond: 431"
    )
    max_url_bytes: ByteSize = Field(default=8 * 1024, ge=256, description="beyond: 414")
    max_body_bytes: ByteSize = Field(
        default=64 * 1024, ge=1024,
        description="API request bodies (the webhook has webhook.max_body_bytes); beyond: 413",
    )  # fmt: skip
    header_timeout: PositiveDuration = Field(
        default=10.0, description="from connect (or the last response) until the head is in"
    )
    body_timeout: PositiveDuration = Field(default=30.0, description="once the head is in")
    idle_timeout: PositiveDuration = Field(default=5.0, description="keep-alive between requests")
    max_connections: int = Field(
        default=512, ge=2,
        description="open connections; at the cap the longest idle one is closed",
    )  # fmt: skip
    reserved_connections: int = Field(
        default=16, ge=1,
        description="kept for /metrics and the health endpoints when the rest are busy",
    )  # fmt: skip
    max_subscribers: int = Field(
        default=32, ge=1, description="event-stream clients (SSE and WebSocket); beyond: 503"
    )

    @model_validator(mode="after")
    def _room(self) -> LimitsConfig:
        if self.reserved_connections >= self.max_connections:
            raise ValueError("reserved_connections must be below max_connections")
        return self


class ServerConfig(Strict):
    """Where medic listens."""

    listen: Annotated[str, AfterValidator(check_listen)] = DEFAULT_LISTEN
    shutdown_grace: PositiveDuration = Field(
        default=3.0, description="time in-flight responses get after SIGTERM"
    )
    auth: AuthConfig | None = None
    tls: TlsConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    public: list[Literal["metrics", "health"]] = Field(
        default_factory=list,
        description="with auth: routes left open (metrics: /metrics; health: /-/healthy, "
        "/-/ready), e.g. for a Prometheus that scrapes without credentials",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names accepted (default: loopback names and the listen "
        "host; any with a wildcard listen address); '*' accepts any",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins (scheme://host:port) allowed to change state",
    )
