"""The log check: presets, rotation and truncation, bursts counted once, hold, journald."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.checks.logs import LogFact, LogProbe
from exporter.config.logcheck import LogCheckConfig
from tests.helpers import FakeClock, wait_until

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
ILLEGAL = "RuntimeError: CUDA error: an illegal memory access was encountered"
OPEN: list[LogProbe] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def probe(clock: FakeClock, **options: Any) -> LogProbe:
    options.setdefault("presets", ["cuda", "vllm"])
    made = LogProbe(LogCheckConfig.model_validate({"name": "vllm_log", "type": "log",
                                                   **options}), clock)  # fmt: skip
    OPEN.append(made)
    return made


def counts(observation: Any) -> dict[str, int]:
    [fact] = [f for f in observation.facts if isinstance(f, LogFact)]
    return dict(fact.matches)


def append(path: Path, *lines: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def test_preset_lines_are_counted_and_old_lines_are_not(tmp_path: Path) -> None:
    log, clock = tmp_path / "vllm.log", FakeClock()
    append(log, OOM)  # before medic started: history, not news
    check = probe(clock, path=str(log))
    assert counts(check())["cuda_out_of_memory"] == 0
    dead = "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue."
    append(log, "INFO: Avg generation throughput: 0.0 tokens/s", ILLEGAL, dead)
    observation = check()
    assert counts(observation) == {"cuda_illegal_memory_access": 1, "cuda_out_of_memory": 0,
                                   "vllm_engine_dead": 1}  # fmt: skip
    assert any(p.startswith("cuda_illegal_memory_access: ") for p in observation.problems)


def test_a_burst_counts_once_per_window_and_the_check_holds(tmp_path: Path) -> None:
    log, clock = tmp_path / "vllm.log", FakeClock()
    log.touch()
    check = probe(clock, path=str(log), burst_window="60s", hold="30s")
    append(log, *[ILLEGAL] * 5000)  # a teardown repeating itself
    first = check()
    assert counts(first)["cuda_illegal_memory_access"] == 1 and first.problems
    clock.advance(20)
    append(log, ILLEGAL)
    assert counts(check())["cuda_illegal_memory_access"] == 1  # the same burst
    clock.advance(31)
    assert check().problems == ()  # 31 s since the last match: hold is over
    clock.advance(10)
    append(log, ILLEGAL)  # 61 s after the counted one: a new incident
    assert counts(check())["cuda_illegal_memory_access"] == 2


def test_rotation_by_rename_loses_and_doubles_nothing(tmp_path: Path) -> None:
    log, clock = tmp_path / "vllm.log", FakeClock()
    log.touch()
    check = probe(clock, path=str(log), presets=[], burst_window=0,
                  patterns=[{"name": "mark", "regex": "^mark "}])  # fmt: skip
    append(log, "mark 1", "mark 2")
    assert counts(check())["mark"] == 2
    append(log, "mark 3")  # written just before the rotation
    log.rename(tmp_path / "vllm.log.1")  # logrotate's create mode
    assert counts(check())["mark"] == 3  # the old file read to its end
    append(log, "mark 4", "mark 5")  # the new file
    assert counts(check())["mark"] == 5
    append(tmp_path / "vllm.log.1", "mark late")  # a writer still on the old file
    append(log, "mark 6")
    assert counts(check())["mark"] == 6


def test_truncation_starts_again_at_zero(tmp_path: Path) -> None:
    log, clock = tmp_path / "vllm.log", FakeClock()
    log.touch()
    check = probe(clock, path=str(log), presets=[], burst_window=0,
                  patterns=[{"name": "mark", "regex": "^mark"}])  # fmt: skip
    append(log, "mark a" + "x" * 100, "mark b" + "x" * 100)
    assert counts(check())["mark"] == 2
    log.write_text("")  # copytruncate
    append(log, "mark c")
    assert counts(check())["mark"] == 3


def test_a_partial_line_waits_for_its_end(tmp_path: Path) -> None:
    log, clock = tmp_path / "vllm.log", FakeClock()
    log.touch()
    check = probe(clock, path=str(log))
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("RuntimeError: CUDA error: an illegal")
    assert counts(check())["cuda_illegal_memory_access"] == 0
    append(log, " memory access was encountered")
    assert counts(check())["cuda_illegal_memory_access"] == 1


def test_a_missing_file_is_waited_for(tmp_path: Path) -> None:
    log, clock = tmp_path / "later.log", FakeClock()
    check = probe(clock, path=str(log), from_start=True)
    assert check().problems == ()
    append(log, OOM)
    assert counts(check())["cuda_out_of_memory"] == 1


def test_a_units_journal_through_journalctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No systemd runs here: a journalctl on PATH that speaks its --output=json format (one
    # JSON object per line, MESSAGE as text or as a byte list) and records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lines = [{"MESSAGE": "INFO started", "_SYSTEMD_UNIT": "vllm.service"},
             {"MESSAGE": OOM, "_SYSTEMD_UNIT": "vllm.service"},
             {"MESSAGE": list(ILLEGAL.encode()), "_SYSTEMD_UNIT": "vllm.service"}]  # fmt: skip
    script = bin_dir / "journalctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path / "args"}\n'
        + "".join(f"echo '{json.dumps(line)}'\n" for line in lines)
        + "exec sleep 60\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    clock = FakeClock()
    check = probe(clock, unit="vllm.service")
    check()  # starts journalctl
    wait_until(lambda: counts(check())["cuda_illegal_memory_access"] == 1, timeout=10,
               what="the journal's lines")  # fmt: skip
    assert counts(check())["cuda_out_of_memory"] == 1
    args = (tmp_path / "args").read_text().split()
    assert args == ["--follow", "--output=json", "--lines=0", "--no-pager", "--unit=vllm.service"]


def test_config_needs_one_source_and_patterns() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of path or unit"):
        LogCheckConfig.model_validate({"name": "l", "type": "log", "presets": ["cuda"]})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        LogCheckConfig.model_validate({"name": "l", "type": "log", "path": "/x",
                                       "patterns": [{"name": "p", "regex": "("}]})  # fmt: skip
