"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.app import Medic
from exporter.config import Config, parse_config
from tests.helpers import FakeClock, MedicProcess


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A config with no checks and a private data directory."""
    return Config(data_dir=tmp_path / "data")


@pytest.fixture
def medic_process(tmp_path: Path) -> Iterator[Callable[..., MedicProcess]]:
    """Start real `medic run` processes; every one is killed at teardown."""
    started: list[MedicProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> MedicProcess:
        proc = MedicProcess(args, tmp_path / f"medic-{len(started)}.log", env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def start_medic(tmp_path: Path) -> Iterator[Callable[[str], Medic]]:
    """Start a Medic from config text (data_dir is the test's), stopped at teardown."""
    started: list[Medic] = []

    def start(text: str) -> Medic:
        config = parse_config(f"data_dir: {tmp_path / 'data'}\n" + text, env={})
        medic = Medic(config)
        medic.start()
        started.append(medic)
        return medic

    yield start
    for medic in started:
        medic.stop()
        if medic.db is not None:
            medic.db.close()


@pytest.fixture(scope="session", autouse=True)
def _reap_gpu_helpers() -> Iterator[None]:
    """Released NVML helpers exit on their own; reap them before the interpreter exits."""
    yield
    from exporter.helper import reap_released
    from tests.helpers import wait_until

    wait_until(lambda: reap_released() == 0, timeout=10, what="released NVML helpers to exit")
