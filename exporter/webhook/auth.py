"""Bearer or basic authentication with secrets from files or the environment."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from pathlib import Path

from exporter.config.server import AuthConfig, BasicAuthConfig, SecretConfig


class SecretError(Exception):
    """A configured secret cannot be read."""


def read_secret(secret: SecretConfig) -> bytes:
    """The secret's bytes, stripped of a trailing newline; SecretError if unavailable."""
    if secret.file is not None:
        try:
            value = Path(secret.file).read_bytes()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {secret.file}: {exc.strerror}") from None
    else:
        assert secret.env is not None
        raw = os.environ.get(secret.env)
        if raw is None:
            raise SecretError(f"environment variable {secret.env} is not set")
        value = raw.encode()
    value = value.rstrip(b"\r\n")
    if not value:
        raise SecretError(f"secret {secret.file or secret.env} is empty")
    return value


def authorization(
    bearer_token: SecretConfig | None = None, basic: BasicAuthConfig | None = None
) -> dict[str, str]:
    """The Authorization header a client sends: a bearer token, or basic credentials (both
    read now; SecretError if unavailable); empty for neither."""
    if bearer_token is not None:
        return {"Authorization": "Bearer " + read_secret(bearer_token).decode()}
    if basic is not None:
        pair = basic.username.encode() + b":" + read_secret(basic.password)
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


class Authenticator:
    """Checks an Authorization header in constant time (no early exit on a mismatch)."""

    def __init__(self, config: AuthConfig) -> None:
        self.scheme = "Bearer" if config.bearer_token is not None else "Basic"
        if config.bearer_token is not None:
            self._token = read_secret(config.bearer_token)
        else:
            assert config.basic is not None
            pair = config.basic.username.encode() + b":" + read_secret(config.basic.password)
            self._pair = pair

    @property
    def challenge(self) -> tuple[bytes, bytes]:
        """The WWW-Authenticate header a refusal carries."""
        return b"www-authenticate", f'{self.scheme} realm="medic"'.encode()

    def check(self, header: str | None) -> bool:
        """True when the header carries the configured credentials."""
        if not header:
            return False
        given = header.encode("latin-1", errors="replace").strip()
        scheme, _, credentials = given.partition(b" ")
        # The scheme is case-insensitive (RFC 7235 section 2.1); the credentials are not.
        if scheme.lower() != self.scheme.lower().encode():
            return False
        credentials = credentials.strip()
        if self.scheme == "Basic":
            try:  # compare decoded credentials: base64 padding may legitimately differ
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, self._pair)
        return hmac.compare_digest(credentials, self._token)
