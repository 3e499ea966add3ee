"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def test_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIC_DATA_DIR", str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})  # our own documentation
    out = capsys.readouterr().out
    assert "True" in out
    assert "{'batch_size': 1}" in out  # the recovery example's ladder really ran


def test_the_identity_example_names_this_host() -> None:
    from exporter.config import parse_config
    from exporter.webhook.identity import Identity

    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
                 if b.startswith("identity:"))  # fmt: skip
    config = parse_config(block, env={"NODE_NAME": "gpu-07"})
    identity = Identity.from_config(config.identity)
    assert identity.check({"node": "gpu-07", "instance": "ksm:8080"}).mine
    assert identity.check({"instance": "gpu-07.example.com:9100"}).mine
    assert not identity.check({"instance": "gpu-08:9100"}).mine
    assert not identity.check({"alertname": "ClusterWide"}).mine  # unlabeled: other_host
