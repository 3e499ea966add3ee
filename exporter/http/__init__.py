"""HTTP: the ASGI routes and the server that serves them (metrics, webhook, API, events)."""
