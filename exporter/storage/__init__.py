"""Persistence: medic's one SQLite file."""
