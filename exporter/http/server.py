"""HTTP routes and the uvicorn server that serves them."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from exporter.app import Medic
from exporter.config import split_listen
from exporter.http.alerts import AlertsEndpoint
from exporter.http.api import recovery_router
from exporter.http.asgi import HotPaths, header, respond
from exporter.http.connections import Limits, descriptor_room, protocol_class
from exporter.http.guard import SELF_CHECKING, Guard, Policy
from exporter.http.lanes import Lanes
from exporter.http.stream import EventsEndpoint
from exporter.metrics.exposition import Exposition
from exporter.version import __version__
from exporter.webhook.auth import Authenticator

log = logging.getLogger(__name__)

LANDING_LINKS = (
    ("/metrics", "the exposition"),
    ("/-/ready", "ready once the first round of checks is visible"),
    ("/api/v1/health", "each check's last result"),
    ("/api/v1/recoveries", "recovery attempts"),
    ("/api/v1/openapi.json", "the API"),
)


def create_app(
    medic: Medic,
    *,
    manage_lifecycle: bool = True,
    authenticator: Authenticator | None = None,
    check_host: bool = True,
) -> Guard:
    """The ASGI app; with manage_lifecycle it starts and stops medic with the server.

    Without an authenticator one is built from server.auth (raises SecretError if a
    configured secret cannot be read). check_host False leaves the Host header to the app
    medic is mounted in.
    """
    if authenticator is None and medic.config.server.auth is not None:
        authenticator = Authenticator(medic.config.server.auth)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            medic.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                medic.stop()

    async def landing(request: Request) -> Response:
        # What exporters serve at /: a page that says what this is and links /metrics.
        prefix = request.scope.get("root_path", "")
        links = "".join(
            f'<li><a href="{prefix}{path}">{path}</a> {what}</li>' for path, what in LANDING_LINKS
        )
        page = (f"<!doctype html><html><head><title>medic</title></head><body><h1>medic "
                f"{__version__}</h1><p>Prometheus exporter with auto-remediation for GPU "
                f"model servers.</p><ul>{links}</ul></body></html>")  # fmt: skip
        return HTMLResponse(page)

    async def healthy(_request: Request) -> Response:
        return PlainTextResponse("medic is Healthy.\n")

    async def ready(_request: Request) -> Response:
        if medic.ready():
            if not medic.recovery.journal_healthy:
                return PlainTextResponse(
                    "medic is Ready; the recovery journal cannot write to disk: alerts are "
                    "answered 503 and recovery actions wait until it can.\n"
                )
            return PlainTextResponse("medic is Ready.\n")
        waiting = [s.spec.name for s in medic.health.states() if s.enabled and s.last is None]
        return PlainTextResponse(
            f"medic is not ready: waiting for checks: {', '.join(waiting)}\n", status_code=503
        )

    app = FastAPI(
        title="medic",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        # A bad query value is a bad request (400); a body that does not fit its model
        # keeps FastAPI's 422.
        errors = exc.errors()
        status = 400 if all(e.get("loc", ("",))[0] == "query" for e in errors) else 422
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=status)

    lanes = Lanes()  # scrapes paced only while webhook requests are in flight
    metrics = MetricsEndpoint(medic.exposition, lanes)
    alerts = AlertsEndpoint(
        medic.intake, medic.webhook_stats, authenticator, medic.config.webhook.max_body_bytes,
        lanes,
    )  # fmt: skip
    # Also in the router: it answers these paths' other methods (405 with Allow).
    app.router.routes.extend(
        [
            Route("/", landing, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET", "HEAD"]),
            Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
            Route("/-/ready", ready, methods=["GET", "HEAD"]),
            Route("/api/v1/alerts", alerts, methods=["POST"]),
        ]
    )

    app.include_router(recovery_router(medic, authenticator))

    events = EventsEndpoint(medic.events, medic.config.server.limits.max_subscribers)
    app.router.routes.append(Route("/api/v1/events", events, methods=["GET"]))

    @app.get("/api/v1/health")
    def health() -> dict[str, object]:
        """Overall status and each check's last result, with its age."""
        now = medic.clock.time()
        checks = []
        for state in medic.health.states():
            last = state.last
            checks.append(
                {
                    "name": state.spec.name,
                    "enabled": state.enabled,
                    "critical": state.spec.critical,
                    "ok": None if last is None else last.ok,
                    "reason": None if last is None else last.reason,
                    "age_seconds": None if last is None else round(now - last.started_at, 3),
                    "duration_seconds": None if last is None else round(last.duration, 6),
                    "last_success_timestamp": state.last_success,
                    "stuck": state.stuck,
                }
            )
        return {"status": medic.health.status().value, "ready": medic.ready(), "checks": checks}

    hot: dict[tuple[str, str], ASGIApp] = {
        ("/metrics", "GET"): metrics,
        ("/metrics", "HEAD"): metrics,
        ("/api/v1/alerts", "POST"): alerts,
        ("/api/v1/events", "GET"): events,
        ("/api/v1/events", "WEBSOCKET"): events,
    }
    policy = Policy.of(medic.config.server, authenticator, check_host=check_host)
    return Guard(HotPaths(app, hot), policy)


class MetricsEndpoint:
    """GET /metrics as plain ASGI: the pre-rendered body for the request's Accept headers."""

    def __init__(self, exposition: Exposition, lanes: Lanes | None = None) -> None:
        self._exposition = exposition
        self._lanes = lanes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._lanes is not None:
            await self._lanes.scrape()
        body, content_type, encoding = self._exposition.select(
            header(scope, b"accept") or "", header(scope, b"accept-encoding") or ""
        )
        extra = [(b"vary", b"Accept, Accept-Encoding")]
        if encoding:
            extra.append((b"content-encoding", encoding.encode()))
        await respond(send, 200, body, content_type.encode(), extra)


def limits(medic: Medic) -> Limits:
    """The connection limits from server.limits, with the webhook's own body limit and the
    connection cap lowered to what the descriptor limit allows."""
    configured = medic.config.server.limits
    cap = descriptor_room(configured.max_connections)
    if cap < configured.max_connections:
        log.warning(
            "server.limits.max_connections lowered from %d to %d: the process may open only "
            "so many files (ulimit -n)", configured.max_connections, cap,
        )  # fmt: skip
    return Limits(
        max_header_bytes=configured.max_header_bytes,
        max_url_bytes=configured.max_url_bytes,
        max_body_bytes=configured.max_body_bytes,
        body_limits=dict.fromkeys(SELF_CHECKING),  # webhook.max_body_bytes, counted there
        header_timeout=configured.header_timeout,
        body_timeout=configured.body_timeout,
        max_connections=max(2, cap),
        reserved_connections=min(configured.reserved_connections, max(1, cap - 1)),
    )


def uvicorn_config(app: ASGIApp, medic: Medic, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for medic: its protocol with the limits, TLS, no access log."""
    protocol = protocol_class(limits(medic))
    return uvicorn.Config(
        app,
        http=protocol,
        ws="websockets-sansio",
        ws_max_size=64 * 1024,
        timeout_keep_alive=max(1, int(medic.config.server.limits.idle_timeout)),
        log_config=None,
        access_log=False,
        server_header=False,
        **tls_options(medic),  # type: ignore[arg-type]
        **options,
    )


class BackgroundServer:
    """medic started and its HTTP API served from a daemon thread (embedded use)."""

    def __init__(self, medic: Medic, listen: str = "127.0.0.1:0") -> None:
        self.medic = medic
        self._sock = bind(listen)
        self.url = bound_url(self._sock)
        medic.start()
        config = uvicorn_config(
            create_app(medic, manage_lifecycle=False), medic, timeout_graceful_shutdown=1
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]},
            name="medic-http", daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("medic's HTTP server did not start within 10 s")
            time.sleep(0.005)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, then stop medic."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
        self.medic.stop()


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the caught signal after a graceful shutdown.

    uvicorn re-raises SIGTERM once it has shut down, so the process would end "killed by
    SIGTERM" (status 143); a clean, requested stop of medic exits 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(listen: str) -> socket.socket:
    """Bind a listening socket for HOST:PORT (port 0 picks a free one); raises OSError."""
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it Nagle + delayed ACK add ~40 ms to every keep-alive scrape.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def bound_url(sock: socket.socket) -> str:
    """http://host:port of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def tls_options(medic: Medic) -> dict[str, object]:
    """uvicorn's TLS settings from server.tls; mTLS when a client CA is given."""
    tls = medic.config.server.tls
    if tls is None:
        return {}
    options: dict[str, object] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options.update(ssl_ca_certs=tls.client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def serve(medic: Medic, sock: socket.socket, authenticator: Authenticator | None = None) -> None:
    """Serve until SIGTERM/SIGINT; in-flight responses get `shutdown_grace` seconds."""
    config = uvicorn_config(
        create_app(medic, authenticator=authenticator), medic,
        timeout_graceful_shutdown=max(1, int(medic.config.server.shutdown_grace)),
        lifespan="on",
    )  # fmt: skip
    url = bound_url(sock)
    if medic.config.server.tls is not None:
        url = url.replace("http://", "https://", 1)
    log.info("listening on %s", url)
    _Server(config).run(sockets=[sock])
