"""Alertmanager webhook intake: models, routing, authentication."""
