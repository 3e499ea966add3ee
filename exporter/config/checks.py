"""Health check sections: one model per check type, and the union the config holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from exporter.config.base import PositiveDuration, Ratio, Strict
from exporter.config.checkbase import CheckBase
from exporter.config.logcheck import LogCheckConfig
from exporter.config.metricscheck import MetricsCheckConfig
from exporter.config.probes import (
    HttpCheckConfig,
    RequestCheckConfig,
    TcpCheckConfig,
    compiles,
)
from exporter.config.processcheck import ProcessCheckConfig
from exporter.config.units import ByteSize


class HostMemoryCheckConfig(CheckBase):
    """Host memory and swap from psutil; fails when available memory runs low."""

    type: Literal["host_memory"]
    min_available_ratio: Ratio = 0.05
    min_available_bytes: ByteSize = Field(default=0, ge=0)


class DiskCheckConfig(CheckBase):
    """Size and free space of the filesystem holding `path`."""

    type: Literal["disk"]
    path: Path
    min_avail_ratio: Ratio = 0.05
    min_avail_bytes: ByteSize = Field(default=0, ge=0)


class PathCheckConfig(CheckBase):
    """A file or directory that must be there, e.g. model weights or a voices folder."""

    type: Literal["path"]
    path: Path
    kind: Literal["file", "dir", "any"] = "any"
    min_size: ByteSize = Field(default=0, ge=0, description="files only")
    readable: bool = Field(default=True, description="open it (file) or list it (dir)")
    non_empty: bool = Field(default=False, description="directories only: at least one entry")


XidBucket = Literal["restart_app", "reset_gpu", "reboot_node", "inspect_hardware", "ignore"]
"""Where an XID goes (exporter.gpu.xids): what NVIDIA's catalog asks of the host."""


class XidAppConfig(Strict):
    """An application on this host: an XID its process hit (RESTART_APP in NVIDIA's catalog)
    runs this failure type, whose ladder restarts it and only it."""

    unit: str | None = Field(default=None, description="the process's systemd unit")
    process: str | None = Field(
        default=None, description="a regexp on the process name the kernel's XID line gives"
    )
    failure_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

    @model_validator(mode="after")
    def _one_match(self) -> XidAppConfig:
        if (self.unit is None) == (self.process is None):
            raise ValueError("give exactly one of unit or process")
        if self.process is not None:
            compiles([self.process])
        return self


class GpuCheckConfig(CheckBase):
    """Every GPU through NVML, read in a helper process that is abandoned if it hangs."""

    type: Literal["gpu"]
    expected: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default=0,
        description="GPUs that should answer; 0: any; auto: the NVIDIA GPUs on the PCI bus "
        "(one config for every node shape)",
    )
    processes: bool = Field(default=False, description="export per-process GPU memory")
    xid_events: bool = Field(default=True, description="count XID errors from NVML events")
    max_memory_used_ratio: Ratio = Field(
        default=1.0, description="fail when a GPU's used+reserved memory passes this ratio"
    )
    xid_buckets: dict[Annotated[int, Field(ge=1)], XidBucket] = Field(
        default_factory=dict,
        description="override NVIDIA's catalog for an XID: restart_app, reset_gpu, "
        "reboot_node, inspect_hardware or ignore",
    )
    xid_window: PositiveDuration = Field(
        default=3600.0, description="how long an XID's bucket counts toward the GPU's verdict"
    )
    kernel_log: Annotated[str, Field(pattern=r"^(kmsg|journal|/.+)$")] | None = Field(
        default=None,
        description="read XID lines (with the faulting pid) from kmsg (/dev/kmsg), journal "
        "(journalctl -k) or a file; none: NVML's events only",
    )
    apps: list[XidAppConfig] = Field(
        default_factory=list,
        description="the applications an application-fault XID restarts, by unit or name",
    )
    storm_window: PositiveDuration = Field(
        default=600.0, description="one episode per GPU, XID and app in this window"
    )
    escalate_after_resets: Annotated[int, Field(ge=1)] = Field(
        default=2, description="a fault that survives this many GPU resets: reboot_node"
    )
    escalate_after_reboots: Annotated[int, Field(ge=1)] = Field(
        default=2, description="a fault that survives this many reboots: inspect_hardware"
    )
    nvml_module: str = Field(
        default="pynvml",
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$",
        description="module with nvidia-ml-py's API; exporter.gpu.fakenvml for demos",
    )


class InProcessCheckConfig(CheckBase):
    """A check function the embedding app registers (medic.register_check); declared here
    so that recovery ladders can verify with it."""

    type: Literal["in_process"]


class TorchCheckConfig(CheckBase):
    """torch CUDA allocator memory, when medic is embedded in a process that uses CUDA."""

    type: Literal["torch"]


CheckConfig = Annotated[
    HostMemoryCheckConfig
    | DiskCheckConfig
    | PathCheckConfig
    | GpuCheckConfig
    | TorchCheckConfig
    | InProcessCheckConfig
    | HttpCheckConfig
    | TcpCheckConfig
    | MetricsCheckConfig
    | LogCheckConfig
    | RequestCheckConfig
    | ProcessCheckConfig,
    Field(discriminator="type"),
]

__all__ = [
    "CheckBase", "CheckConfig", "DiskCheckConfig", "GpuCheckConfig", "HostMemoryCheckConfig",
    "HttpCheckConfig", "InProcessCheckConfig", "LogCheckConfig", "MetricsCheckConfig",
    "PathCheckConfig", "ProcessCheckConfig", "RequestCheckConfig",
    "TcpCheckConfig",
    "TorchCheckConfig",
]  # fmt: skip
