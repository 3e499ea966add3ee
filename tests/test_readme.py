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


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_command_table_lists_every_command_and_flag() -> None:
    import argparse

    from exporter.cli import _parser

    table = "\n".join(
        line for line in _section("Command line").splitlines() if line.startswith("| `medic")
    )
    parser = _parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        rows = [row for row in table.splitlines() if row.startswith(f"| `medic {name}")
                or f"`medic {name}`" in row]  # fmt: skip
        assert rows, f"medic {name} is not in the README's command table"
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert any(flag in row for row in rows), f"medic {name} {flag}"
    assert "`medic --version`" in table


def test_the_metrics_table_is_one_table() -> None:
    lines = _section("Metrics").splitlines()
    rows = [n for n, line in enumerate(lines) if line.startswith("| `")]
    assert rows and rows == list(range(rows[0], rows[-1] + 1)), "a blank line splits the table"
