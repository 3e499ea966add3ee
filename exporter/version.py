"""The single place medic's version is written."""

__version__ = "0.1.0"
