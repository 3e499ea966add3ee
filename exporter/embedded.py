"""`exporter.Medic`: the composition root plus its HTTP API, for an embedding app.

It lives above both the composition root (app.py) and the HTTP layer (server.py), so that
neither imports the other's way: app.py builds the parts, server.py serves them, and this
class only joins the two for `from exporter import Medic`.
"""

from __future__ import annotations

from typing import Any

from exporter import app
from exporter.http.server import BackgroundServer, create_app


class Medic(app.Medic):
    """A configured medic (see exporter.app.Medic) with its HTTP API at hand."""

    def asgi_app(self) -> Any:
        """medic's HTTP API as an ASGI app to mount in the app's own server (e.g.
        `app.mount("/medic", medic.asgi_app())`); the app starts and stops medic."""
        return create_app(self, manage_lifecycle=False, check_host=False)

    def serve_in_background(self, listen: str = "127.0.0.1:0") -> BackgroundServer:
        """Start medic and serve its HTTP API from a daemon thread; stop() ends both."""
        return BackgroundServer(self, listen)
