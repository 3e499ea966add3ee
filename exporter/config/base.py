"""Types every config section shares: the strict base model, names, durations, listen
addresses and the default data directory. Imports nothing else of the config package."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from exporter.config.units import Duration

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


def check_listen(value: str) -> str:
    """Validator: a HOST:PORT string."""
    split_listen(value)
    return value


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def default_data_dir() -> Path:
    """/var/lib/medic for root, the XDG state directory otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/medic")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "medic"
