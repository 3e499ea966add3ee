"""Durations and byte sizes as people write them in YAML ("250ms", "15s", "10GiB")."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50,
}  # fmt: skip


def parse_duration(value: Any) -> Any:
    """Turn "1m30s", "250ms" or a number of seconds into float seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15s, 500ms or 1m, not a boolean")
    if isinstance(value, int | float):
        return _finite(float(value), value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        try:
            return _finite(float(text), value)
        except ValueError:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or units ms, s, m, h, d"
            ) from None
    return total


def _finite(seconds: float, original: Any) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {original!r}: must be a finite number of seconds")
    return seconds


def parse_size(value: Any) -> Any:
    """Turn "10GiB", "500MB" or a number of bytes into int bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 10GiB or 500MB, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"invalid size {value!r}: use bytes or units like 500MB, 10GiB")
    unit = (match.group(2) or "B").upper()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as a number or with units."""

ByteSize = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written as a number or with units."""


class Located(ValueError):
    """Several problems found by one validator, each at a location below the validated
    object (so a cross-reference error can point at the exact rung or list item)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems
