"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config import Config
from tests.helpers import FakeClock, MedicProcess


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A config with no checks and a private data directory."""
    return Config(data_dir=tmp_path / "data")


@pytest.fixture
def medic_process(tmp_path: Path) -> Iterator[type[MedicProcess]]:
    """Start real `medic run` processes; every one is killed at teardown."""
    started: list[MedicProcess] = []

    class Tracked(MedicProcess):
        def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
            super().__init__(args, tmp_path / f"medic-{len(started)}.log", env)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for proc in started:
        proc.stop()
