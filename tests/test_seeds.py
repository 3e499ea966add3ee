"""The seeds' API by its names, over medic's parts; importing starts nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exporter.checks import Observation
from tests.helpers import wait_until


def test_importing_the_seed_names_starts_nothing() -> None:
    code = ("import threading, exporter\n"
            "from exporter import FallbackRecoverySystem, FailureType, get_health_checker\n"
            "assert threading.active_count() == 1, threading.enumerate()\n"
            "assert FailureType.VRAM_EXHAUSTION == 'vram_exhaustion'\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_recovery_system_by_its_seed_names(tmp_path: Path) -> None:
    from exporter import FailureType, FallbackRecoverySystem, RecoveryAction

    calls: list[str] = []
    system = FallbackRecoverySystem({
        "data_dir": str(tmp_path / "data"),
        "recovery": {
            "cooldown": {"base": "10m"},
            "actions": {"reduce_generation_params": {"type": "in_process"}},
            "failures": {"vram_exhaustion": {"ladder": ["reduce_generation_params"]}},
        },
    })  # fmt: skip

    def reduce() -> bool:
        calls.append("reduced")
        return True

    system.register_recovery_action(RecoveryAction.REDUCE_GENERATION_PARAMS, reduce)
    system.health_checker.register_probe("model", lambda: True)
    system.start_health_monitoring()
    try:
        assert not system.is_in_cooldown(FailureType.VRAM_EXHAUSTION)
        assert system.attempt_recovery(FailureType.VRAM_EXHAUSTION, "CUDA OOM").accepted
        assert system.medic.recovery.wait_idle(10)
        assert calls == ["reduced"]
        stats = system.get_recovery_statistics()
        assert stats["total_attempts"] == 1 and stats["successful_attempts"] == 1
        assert system.is_in_cooldown("vram_exhaustion")
        assert 590 < system.cooldown_remaining("vram_exhaustion") <= 600
        assert system.recent_attempts()[0].action == "reduce_generation_params"
        system.reset_recovery_state()
        assert not system.is_in_cooldown("vram_exhaustion")
        wait_until(lambda: "model" in system.health_checker.results(), what="the check")
    finally:
        system.stop_health_monitoring()


def test_the_seed_checks(tmp_path: Path) -> None:
    from exporter import (
        check_disk_space,
        check_memory_usage,
        check_model_file_exists,
        check_voices_directory,
    )

    model = tmp_path / "model.safetensors"
    assert check_model_file_exists(model).problems[0].endswith("No such file or directory")
    model.write_bytes(b"w" * 10)
    assert check_model_file_exists(model) == Observation()
    assert "below 100" in check_model_file_exists(model, min_size=100).problems[0]
    voices = tmp_path / "voices"
    voices.mkdir()
    assert check_voices_directory(voices).problems == (f"{voices}: empty",)
    (voices / "af_heart.pt").write_bytes(b"v")
    assert check_voices_directory(voices) == Observation()
    assert check_disk_space(tmp_path, min_free_ratio=0) == Observation()
    assert check_disk_space(tmp_path, min_free_ratio=1.01).problems
    assert check_memory_usage(max_used_ratio=1.0) == Observation()
    assert check_memory_usage(max_used_ratio=0.0).problems


def test_module_defaults_are_one_system(tmp_path: Path, monkeypatch) -> None:
    from exporter import seeds

    monkeypatch.setenv("MEDIC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(seeds, "_DEFAULT", {})
    assert seeds.get_health_checker() is seeds.get_recovery_system().health_checker
    assert seeds.get_graceful_degradation() is seeds.get_recovery_system().degradation
