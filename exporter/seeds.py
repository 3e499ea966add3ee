"""The seeds' API by its names: a thin face over medic's parts for code written against the
seed documents (FallbackRecoverySystem, FailureType, RecoveryAction, the check helpers).

Nothing here starts at import: the default system is made on the first get_*() call and
starts only when asked (start_health_monitoring). New code can use exporter.Medic directly;
these names map onto it one to one.
"""

from __future__ import annotations

import enum
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.checks import HealthChecker, Observation
from exporter.checks.host import HostMemoryCheck
from exporter.recovery.types import RecoveryAttempt
from exporter.resilience import GracefulDegradation

if TYPE_CHECKING:
    from exporter.embedded import Medic
    from exporter.recovery.engine import Submission

__all__ = [
    "FailureType", "FallbackRecoverySystem", "RecoveryAction", "RecoveryAttempt",
    "check_disk_space", "check_memory_usage", "check_model_file_exists",
    "check_voices_directory", "get_graceful_degradation", "get_health_checker",
    "get_recovery_system",
]  # fmt: skip


class FailureType(enum.StrEnum):
    """The seeds' failure types (the built-in names; medic also takes an operator's own)."""

    MODEL_LOADING_FAILURE = "model_loading_failure"
    VRAM_EXHAUSTION = "vram_exhaustion"
    GENERATION_PIPELINE_ERROR = "generation_pipeline_error"
    HARDWARE_OPTIMIZATION_FAILURE = "hardware_optimization_failure"
    SYSTEM_RESOURCE_ERROR = "system_resource_error"
    NETWORK_ERROR = "network_error"


class RecoveryAction(enum.StrEnum):
    """The seeds' recovery actions; config binds the ones medic does not provide itself."""

    CLEAR_GPU_CACHE = "clear_gpu_cache"
    APPLY_VRAM_OPTIMIZATION = "apply_vram_optimization"
    REDUCE_GENERATION_PARAMS = "reduce_generation_params"
    ENABLE_CPU_OFFLOAD = "enable_cpu_offload"
    RESTART_PIPELINE = "restart_pipeline"
    RETRY_MODEL_DOWNLOAD = "retry_model_download"
    FALLBACK_TO_MOCK = "fallback_to_mock"
    SYSTEM_HEALTH_CHECK = "system_health_check"


class FallbackRecoverySystem:
    """The seeds' recovery system: health monitoring, cooldowns, statistics and reset,
    over an embedded medic (`.medic`), whose gates, journal and metrics it uses."""

    def __init__(self, config: Any = None, medic: Medic | None = None) -> None:
        """config: what exporter.Medic takes (a Config, a mapping, YAML text or a path)."""
        if medic is None:
            from exporter.embedded import Medic  # noqa: PLC0415 - the HTTP layer, on use

            medic = Medic(config)
        self.medic = medic

    @property
    def health_checker(self) -> HealthChecker:
        """The checks (register, run, run_all, enable, disable, status)."""
        return self.medic.health

    @property
    def degradation(self) -> GracefulDegradation:
        """Fallbacks for the app's components."""
        return self.medic.degradation

    def start_health_monitoring(self) -> None:
        """Run the checks on their schedule and the recovery engine."""
        self.medic.start()

    def stop_health_monitoring(self) -> None:
        """Stop both; never waits on a hung check."""
        self.medic.stop()

    def register_recovery_action(self, action: str | RecoveryAction,
                                 function: Callable[..., Any]) -> None:  # fmt: skip
        """Bind an in-process action (declared `type: in_process` in the config)."""
        self.medic.actions.register(str(action), function)

    def attempt_recovery(self, failure_type: str | FailureType, detail: str = "",
                         labels: Mapping[str, str] | None = None) -> Submission:  # fmt: skip
        """Ask for the failure type's ladder (through the same gates as an alert)."""
        return self.medic.report_failure(str(failure_type), detail, dict(labels or {}))

    def cooldown_remaining(self, failure_type: str | FailureType) -> float:
        """Seconds until the failure type's cooldown ends (0: none)."""
        until = self.medic.recovery.cooldowns().get(str(failure_type), 0.0)
        return max(0.0, until - self.medic.clock.time())

    def is_in_cooldown(self, failure_type: str | FailureType) -> bool:
        """Whether a recovery of this type would be skipped for its cooldown now."""
        return self.cooldown_remaining(failure_type) > 0

    def get_recovery_statistics(self) -> dict[str, Any]:
        """Attempts, successes and failures per failure type and action, and cooldowns."""
        rows = self.medic.journal.stats()
        return {
            "total_attempts": sum(r["attempts"] for r in rows),
            "successful_attempts": sum(r["successes"] for r in rows),
            "failed_attempts": sum(r["failures"] for r in rows),
            "by_failure_type_and_action": rows,
            "cooldowns": {
                ft: self.cooldown_remaining(ft) for ft in self.medic.recovery.cooldowns()
            },
        }

    def recent_attempts(self, limit: int = 50) -> list[RecoveryAttempt]:
        """The journal's attempts, newest first."""
        found, _ = self.medic.journal.attempts(limit=limit)
        return found

    def reset_recovery_state(self) -> None:
        """Forget cooldowns and handled episodes; close the actions' breakers."""
        self.medic.recovery.reset()


_DEFAULT: dict[str, FallbackRecoverySystem] = {}
_DEFAULT_LOCK = threading.Lock()


def get_recovery_system(config: Any = None) -> FallbackRecoverySystem:
    """The process-wide system the seeds' module functions use, made on first call."""
    with _DEFAULT_LOCK:
        if "system" not in _DEFAULT:
            _DEFAULT["system"] = FallbackRecoverySystem(config)
        return _DEFAULT["system"]


def get_health_checker() -> HealthChecker:
    """The default system's HealthChecker."""
    return get_recovery_system().health_checker


def get_graceful_degradation() -> GracefulDegradation:
    """The default system's GracefulDegradation."""
    return get_recovery_system().degradation


# --- the seeds' built-in checks, as probes (register with health.register_probe) ----------
# They run in the calling thread: for paths on network mounts use the config's `path` and
# `disk` checks, whose filesystem calls run in a helper process that cannot hang medic.


def check_model_file_exists(path: str | Path, min_size: int = 1) -> Observation:
    """The model file is there, a regular file of at least min_size bytes."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return Observation(problems=(f"{path}: {exc.strerror}",))
    if not Path(path).is_file():
        return Observation(problems=(f"{path}: not a regular file",))
    if size < min_size:
        return Observation(problems=(f"{path}: {size} bytes, below {min_size}",))
    return Observation()


def check_voices_directory(path: str | Path, non_empty: bool = True) -> Observation:
    """The voices (or any asset) directory is there and, by default, not empty."""
    directory = Path(path)
    if not directory.is_dir():
        return Observation(problems=(f"{path}: not a directory",))
    if non_empty and not any(directory.iterdir()):
        return Observation(problems=(f"{path}: empty",))
    return Observation()


def check_disk_space(path: str | Path = "/", min_free_ratio: float = 0.05,
                     min_free_bytes: int = 0) -> Observation:  # fmt: skip
    """Free space on the filesystem holding path is above both bounds."""
    usage = shutil.disk_usage(path)
    ratio = usage.free / usage.total if usage.total else 0.0
    if ratio < min_free_ratio or usage.free < min_free_bytes:
        return Observation(problems=(f"{path}: {usage.free} bytes free ({ratio:.1%})",))
    return Observation()


def check_memory_usage(max_used_ratio: float = 0.95) -> Observation:
    """Host memory in use is below max_used_ratio (the host_memory check's judgement)."""
    return Observation(problems=HostMemoryCheck(1 - max_used_ratio)().problems)
