"""`medic reset` and `medic trigger`: ask the running medic, with the configured credentials.

Both go through medic's HTTP API (the same gates, journal and auth as any caller), so a
person at 3 a.m. does not have to assemble a curl line with the token.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from exporter.config import Config, split_listen
from exporter.webhook.auth import SecretError, authorization


class RemoteError(Exception):
    """The running medic could not be asked, or said no."""


def base_url(config: Config) -> str:
    """Where this host's medic answers: its listen address, a wildcard read as loopback."""
    host, port = split_listen(config.server.listen)
    if host in ("", "0.0.0.0"):  # noqa: S104 - a listen wildcard, read as "this host"
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.server.tls is not None else "http"
    return f"{scheme}://{host}:{port}"


def auth_headers(config: Config) -> dict[str, str]:
    """The Authorization header server.auth asks for (read from its file or variable)."""
    auth = config.server.auth
    if auth is None:
        return {}
    try:
        return authorization(auth.bearer_token, auth.basic)
    except SecretError as exc:
        raise RemoteError(f"server.auth: {exc}") from None


def post(
    config: Config,
    path: str,
    body: dict[str, Any],
    *,
    url: str | None = None,
    verify: bool | str = True,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """POST JSON to the running medic's API; its JSON answer, or RemoteError."""
    target = (url or base_url(config)).rstrip("/") + path
    try:
        response = httpx.post(target, json=body, headers=auth_headers(config),
                              verify=verify, timeout=timeout)  # fmt: skip
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach medic at {target}: {exc}") from None
    try:
        answer = response.json()
    except json.JSONDecodeError:
        answer = {"detail": response.text[:500]}
    if response.status_code >= 400:
        detail = answer.get("detail", "") if isinstance(answer, dict) else answer
        raise RemoteError(f"medic answered {response.status_code}: {detail}")
    return answer if isinstance(answer, dict) else {"answer": answer}


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """`name=value` pairs from the command line."""
    labels = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RemoteError(f"--label {pair!r}: write NAME=VALUE")
        labels[name] = value
    return labels
