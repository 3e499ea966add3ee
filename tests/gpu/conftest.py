"""A fake NVML state file that helper processes read through $MEDIC_FAKE_NVML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.gpu import fakenvml
from exporter.helper import reap_released
from tests.helpers import wait_until

FAKE = "exporter.gpu.fakenvml"


class FakeNvml:
    """Edit `state` and call write(); helpers see it on their next NVML call."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.state: dict[str, Any] = fakenvml.make_state(count)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.path)  # atomic: a helper never reads half a file

    def gpu(self, index: int) -> dict[str, Any]:
        gpu: dict[str, Any] = self.state["gpus"][index]
        return gpu


@pytest.fixture
def fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(fakenvml.ENV, str(tmp_path / "nvml.json"))
    fake = FakeNvml(tmp_path / "nvml.json", 2)
    yield fake
    fake.state["hang"] = []  # let any helper stuck in a fake hang return and exit
    fake.write()
    wait_until(lambda: reap_released() == 0, timeout=10, what="helpers to exit")
