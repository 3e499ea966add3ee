"""Where medic listens, and the secrets, authentication and TLS it serves with."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from exporter.config.base import DEFAULT_LISTEN, PositiveDuration, Strict, check_listen


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


class ServerConfig(Strict):
    """Where medic listens."""

    listen: Annotated[str, AfterValidator(check_listen)] = DEFAULT_LISTEN
    shutdown_grace: PositiveDuration = Field(
        default=3.0, description="time in-flight responses get after SIGTERM"
    )
    auth: AuthConfig | None = None
    tls: TlsConfig | None = None
