"""The process check: the model server's process is alive, with its memory and files."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from exporter.config.checkbase import CheckBase
from exporter.config.probes import compiles
from exporter.config.units import ByteSize


class ProcessCheckConfig(CheckBase):
    """One process, found by a pid file, a systemd unit's main PID, or its name."""

    type: Literal["process"]
    pidfile: str | None = None
    unit: str | None = Field(default=None, description="a systemd unit: its MainPID")
    process: str | None = Field(
        default=None, description="a regexp searched in the process name and command line"
    )
    max_rss: ByteSize | None = Field(default=None, description="fail above this resident size")
    max_open_files: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_way(self) -> ProcessCheckConfig:
        if sum(x is not None for x in (self.pidfile, self.unit, self.process)) != 1:
            raise ValueError("give exactly one of pidfile, unit or process")
        return self

    @field_validator("process")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compiles([value])
        return value
