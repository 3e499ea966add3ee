"""The configuration schema: every key medic reads, its default and its limits."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from exporter.config.units import ByteSize, Duration, Located, parse_duration

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_CHECK_TIMEOUT = 5.0

CheckName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveDuration = Annotated[Duration, Field(gt=0)]


def split_listen(value: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" into its parts, validating both."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"listen address {value!r} must be HOST:PORT, e.g. {DEFAULT_LISTEN}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_listen(value: str) -> str:
    split_listen(value)
    return value


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckBase(Strict):
    """What every check has: a name, how often it runs and how long it may take."""

    name: CheckName
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration = DEFAULT_CHECK_TIMEOUT
    enabled: bool = True
    critical: bool = Field(
        default=False, description="a failing critical check makes the host unhealthy"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_timeout(cls, data: Any) -> Any:
        """An unset timeout is 5s, or the interval when that is shorter."""
        if isinstance(data, dict) and "timeout" not in data and "interval" in data:
            try:
                interval = float(parse_duration(data["interval"]))
            except (TypeError, ValueError):
                return data  # the interval's own error is reported
            if 0 < interval < DEFAULT_CHECK_TIMEOUT:
                return {**data, "timeout": interval}
        return data

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> CheckBase:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)"
            )
        return self


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


class GpuCheckConfig(CheckBase):
    """Every GPU through NVML, read in a helper process that is abandoned if it hangs."""

    type: Literal["gpu"]
    expected: int = Field(default=0, ge=0, description="GPUs that should be visible; 0: any")
    processes: bool = Field(default=False, description="export per-process GPU memory")
    xid_events: bool = Field(default=True, description="count XID errors from NVML events")
    max_memory_used_ratio: Ratio = Field(
        default=1.0, description="fail when a GPU's used+reserved memory passes this ratio"
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
    | InProcessCheckConfig,
    Field(discriminator="type"),
]


class BreakerConfig(Strict):
    """A named circuit breaker's thresholds (resilience4j's names)."""

    name: CheckName
    failure_threshold: int = Field(default=5, ge=0, description="consecutive failures; 0 off")
    failure_rate_threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    sliding_window_size: int = Field(default=20, ge=1)
    minimum_number_of_calls: int = Field(default=10, ge=1)
    wait_duration_in_open: Annotated[Duration, Field(ge=0)] = 30.0
    permitted_calls_in_half_open: int = Field(default=1, ge=1)
    call_timeout: PositiveDuration | None = None


class ServerConfig(Strict):
    """Where medic listens."""

    listen: Annotated[str, AfterValidator(_check_listen)] = DEFAULT_LISTEN
    shutdown_grace: PositiveDuration = Field(
        default=3.0, description="time in-flight responses get after SIGTERM"
    )
    auth: AuthConfig | None = None
    tls: TlsConfig | None = None


def default_data_dir() -> Path:
    """/var/lib/medic for root, the XDG state directory otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/medic")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "medic"


class Config(Strict):
    """The whole of medic's configuration."""

    server: ServerConfig = Field(default_factory=lambda: ServerConfig())  # noqa: PLW0108
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    checks: list[CheckConfig] = Field(default_factory=list)
    breakers: list[BreakerConfig] = Field(default_factory=list)
    # a lambda: RecoveryConfig is defined after this class (it builds on these types)
    recovery: RecoveryConfig = Field(default_factory=lambda: RecoveryConfig())  # noqa: PLW0108
    webhook: WebhookConfig = Field(default_factory=lambda: WebhookConfig())  # noqa: PLW0108

    @model_validator(mode="after")
    def _verify_checks_exist(self) -> Config:
        names = {check.name for check in self.checks}
        unknown: list[tuple[tuple[str | int, ...], str]] = [
            (("recovery", "failures", failure, "verify", i), f"no check named {name!r}")
            for failure, spec in self.recovery.failures.items()
            for i, name in enumerate(spec.verify)
            if name not in names
        ]
        unknown += [
            (("webhook", "routes", i, "failure_type"),
             f"{route.failure_type!r} has no ladder under recovery.failures")
            for i, route in enumerate(self.webhook.routes)
            if route.failure_type not in self.recovery.failures
        ]  # fmt: skip
        if unknown:
            raise Located(unknown)
        return self

    @field_validator("breakers")
    @classmethod
    def _unique_breaker_names(cls, breakers: list[BreakerConfig]) -> list[BreakerConfig]:
        names = [b.name for b in breakers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"breaker names used twice: {', '.join(duplicates)}")
        return breakers

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, checks: list[CheckConfig]) -> list[CheckConfig]:
        first: dict[str, int] = {}
        for index, check in enumerate(checks):
            if check.name in first:
                earlier = first[check.name]
                raise ValueError(
                    f"name {check.name!r} is used by checks[{earlier}] and checks[{index}]"
                )
            first[check.name] = index
        gpu_checks = [i for i, check in enumerate(checks) if check.type == "gpu"]
        if len(gpu_checks) > 1:
            raise ValueError(f"only one gpu check is allowed (checks{gpu_checks})")
        return checks


from exporter.config.recovery import RecoveryConfig  # noqa: E402 - it builds on the types above
from exporter.config.server import (  # noqa: E402
    AuthConfig,
    TlsConfig,
    WebhookConfig,
)

ServerConfig.model_rebuild()
Config.model_rebuild()
