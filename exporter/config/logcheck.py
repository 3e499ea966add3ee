"""The log check: follow a model server's log and match the lines that name known failures.

A file (followed across rotation and truncation) or a systemd unit's journal. Presets
carry the fatal lines of known servers (see the model-server notes, section 5).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from exporter.config.base import CheckName, Strict
from exporter.config.checkbase import CheckBase
from exporter.config.probes import compiles
from exporter.config.units import Duration

LogPresetName = Literal["cuda", "vllm", "nccl", "triton", "ollama"]
LOG_PRESETS: dict[str, dict[str, str]] = {
    "cuda": {
        "cuda_illegal_memory_access": r"CUDA error: an illegal memory access was encountered",
        "cuda_out_of_memory": r"CUDA out of memory|CUDA error: out of memory",
    },
    "vllm": {
        "vllm_engine_dead": r"EngineDeadError|EngineCore encountered an issue"
        r"|MQLLMEngine is already dead",
    },
    "nccl": {"nccl_watchdog_timeout": r"Watchdog caught collective operation timeout"},
    "triton": {"triton_stub_unhealthy": r"Stub process is (not healthy|unhealthy)"},
    "ollama": {"ollama_runner_terminated": r"llama runner process has terminated"},
}
"""Named patterns for known fatal lines; a preset adds all of its own."""


class LogPatternConfig(Strict):
    """A pattern to count (a regular expression searched in each line)."""

    name: CheckName
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compiles([value])
        return value


class LogCheckConfig(CheckBase):
    """Counts matching lines; fails for `hold` after a match (a local trigger's streak)."""

    REPORTS_EVENTS = True

    type: Literal["log"]
    path: str | None = Field(default=None, description="a log file, followed across rotation")
    unit: str | None = Field(default=None, description="a systemd unit's journal")
    presets: list[LogPresetName] = Field(default_factory=list)
    patterns: list[LogPatternConfig] = Field(default_factory=list)
    hold: Annotated[Duration, Field(ge=0)] = Field(
        default=60.0, description="the check fails this long after a match"
    )
    burst_window: Annotated[Duration, Field(ge=0)] = Field(
        default=60.0, description="a pattern counts at most once per window (a burst of lines)"
    )
    from_start: bool = Field(default=False, description="read the file's existing lines too")
    max_bytes_per_run: Annotated[int, Field(ge=4096)] = 32 * 1024 * 1024

    @model_validator(mode="after")
    def _one_source(self) -> LogCheckConfig:
        if (self.path is None) == (self.unit is None):
            raise ValueError("give exactly one of path or unit")
        if not self.presets and not self.patterns:
            raise ValueError("give presets or patterns")
        names = [p.name for p in self.patterns]
        names += [n for preset in self.presets for n in LOG_PRESETS[preset]]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"pattern names used twice: {', '.join(twice)}")
        return self

    def all_patterns(self) -> dict[str, str]:
        """Every pattern by name: the presets' and the config's own."""
        found = {n: r for preset in self.presets for n, r in LOG_PRESETS[preset].items()}
        found.update({p.name: p.regex for p in self.patterns})
        return found
