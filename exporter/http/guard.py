"""What every request passes before a route: the Host allow-list, authentication, and the
browser protections for state-changing requests.

- **Host** (against DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1
  reaches a loopback medic with `Host: evil.example`): on a loopback listen address only
  the loopback names are accepted, unless server.allowed_hosts says otherwise. Off
  loopback any Host is (authentication is required there, and a scraper may use any of the
  host's names), unless server.allowed_hosts lists them.
- **Authentication**, when server.auth is set, on every route (reads too), except the
  groups named in server.public (`metrics`, `health`): Prometheus' usual setup is an open
  /metrics. The webhook checks its own credentials (it counts refusals in its metrics).
- **Cross-site requests** (a browser form or fetch() from another site): a POST, PUT, PATCH
  or DELETE with a foreign Origin, or `Sec-Fetch-Site: cross-site`, is refused with 403,
  and its body must be declared application/json (415): a browser cannot send that
  cross-site without a CORS preflight, which medic never grants.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic_core import to_json
from starlette.types import ASGIApp, Receive, Scope, Send

from exporter.config import split_listen
from exporter.config.server import ServerConfig
from exporter.http.asgi import header, media_type, respond, route_path
from exporter.webhook.auth import Authenticator

PUBLIC_GROUPS = {"metrics": ("/metrics",), "health": ("/-/healthy", "/-/ready")}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SELF_CHECKING = frozenset({"/api/v1/alerts"})
"""Endpoints that check their own credentials, media type and body size, and count what
they refuse in their own metrics (medic_webhook_requests_total)."""
JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class Policy:
    """One server's rules (see the module's docstring)."""

    hosts: frozenset[str] | None
    """Accepted Host names (lower case, no port); None accepts any."""
    origins: frozenset[str]
    public: frozenset[str]
    authenticator: Authenticator | None

    @classmethod
    def of(
        cls, config: ServerConfig, authenticator: Authenticator | None, *, check_host: bool
    ) -> Policy:
        """The policy for a server config; check_host False leaves Host to an embedding app."""
        public = frozenset(path for group in config.public for path in PUBLIC_GROUPS[group])
        return cls(
            allowed_hosts(config) if check_host else None,
            frozenset(o.rstrip("/").lower() for o in config.allowed_origins),
            public,
            authenticator,
        )


def allowed_hosts(config: ServerConfig) -> frozenset[str] | None:
    """server.allowed_hosts (with the loopback names and the listen host), or by default
    the loopback names on a loopback listen address and any Host (None) elsewhere: off
    loopback auth is required, and scrapers use names medic cannot know (a refused Host
    would break monitoring), so rebinding is a loopback threat."""
    if "*" in config.allowed_hosts:
        return None
    host, _port = split_listen(config.listen)
    if not config.allowed_hosts and not _loopback(host):
        return None
    return frozenset({*LOOPBACK_NAMES, host.lower(), *(h.lower() for h in config.allowed_hosts)})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def host_name(value: str) -> str:
    """A Host header's name, without its port, lower case ("[::1]:9847" -> "[::1]")."""
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """The ASGI middleware in front of every route."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            status, message, extra = refusal
            await respond(send, status, to_json({"detail": message}), JSON, extra)

    def _refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        policy = self.policy
        if policy.hosts is not None:
            name = host_name(header(scope, b"host") or "")
            if name not in policy.hosts:
                return 400, "invalid Host header (see server.allowed_hosts)", []
        path = route_path(scope)
        auth = policy.authenticator
        if (
            auth is not None
            and path not in policy.public
            and path not in SELF_CHECKING
            and not auth.check(header(scope, b"authorization"))
        ):
            return 401, "missing or wrong credentials", [auth.challenge]
        # medic serves no pages: any Origin is another site's, unless allowed by name. A
        # browser opens a WebSocket cross-site without asking, so that is checked too.
        changing = scope["type"] == "http" and scope["method"] in CHANGING
        origin = header(scope, b"origin")
        if (
            origin is not None
            and (changing or scope["type"] == "websocket")
            and origin.rstrip("/").lower() not in policy.origins
        ):
            return 403, f"cross-site request from {origin[:100]} refused", []
        if changing:
            if (header(scope, b"sec-fetch-site") or "").lower() == "cross-site":
                return 403, "cross-site request refused", []
            media = media_type(scope)
            if (
                media != "application/json"
                and scope["method"] == "POST"
                and path.startswith("/api/")
                and path not in SELF_CHECKING
            ):
                return 415, f"expected application/json, got {media or 'nothing'}", []
        return None
