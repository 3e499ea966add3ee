"""Turn pydantic's validation errors into lines a person can act on, with YAML line numbers."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from exporter.config import checks
from exporter.config.units import Located


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration, and where."""

    location: str
    message: str
    line: int | None = None

    def render(self, source: str | None = None) -> str:
        """`file:line: location: message`, leaving out the parts that are unknown."""
        where = source or ""
        if source and self.line is not None:
            where = f"{source}:{self.line}"
        prefix = f"{where}: " if where else ""
        return (
            f"{prefix}{self.location}: {self.message}" if self.location else prefix + self.message
        )


class ConfigError(Exception):
    """A configuration that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(p.render(source) for p in self.problems))


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _clean_loc(loc: Sequence[str | int], data: Any) -> list[str | int]:
    """Drop the discriminator tags pydantic puts in union locations (checks.2.disk.path)."""
    clean: list[str | int] = []
    node = data
    tag_allowed = True
    for part in loc:
        # A tagged union's tag comes right after the entry (checks.2.disk...,
        # actions.notify.http...) and is the entry's `type`; what follows it is a field,
        # even one that shares the tag's name (checks.2.path.path).
        if tag_allowed and isinstance(node, Mapping) and node.get("type") == part:
            tag_allowed = False
            continue
        tag_allowed = True
        clean.append(part)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return clean


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """1-based line of the YAML node (or the key, for unknown keys) that loc points at."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _fields_at(model: type[BaseModel], loc: Sequence[str | int], data: Any) -> list[str]:
    """Known keys of the section an unknown key was found in, for "did you mean" hints."""
    if len(loc) >= 2 and loc[0] == "checks" and isinstance(loc[1], int):
        entries = data.get("checks") if isinstance(data, Mapping) else None
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        by_type: dict[str, type[BaseModel]] = {
            "host_memory": checks.HostMemoryCheckConfig,
            "disk": checks.DiskCheckConfig,
            "path": checks.PathCheckConfig,
            "gpu": checks.GpuCheckConfig,
            "torch": checks.TorchCheckConfig,
            "in_process": checks.InProcessCheckConfig,
            "http": checks.HttpCheckConfig,
            "tcp": checks.TcpCheckConfig,
            "metrics": checks.MetricsCheckConfig,
            "log": checks.LogCheckConfig,
            "request": checks.RequestCheckConfig,
            "process": checks.ProcessCheckConfig,
        }
        return list(by_type[kind].model_fields) if kind in by_type else []
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        field = current.model_fields.get(str(part)) if current else None
        annotation = field.annotation if field else None
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        current = annotation if is_model else None  # type: ignore[assignment]
    return list(current.model_fields) if current else []


NAME_RULE = "must start with a letter or _ and use only letters, digits, _ . - (max 64)"
PATTERNS = {
    r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$": NAME_RULE,
    r"^https?://": "must be an http:// or https:// URL",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "must be an environment variable name (letters, digits, _;"
    " not starting with a digit)",
    r"^[A-Za-z_][A-Za-z0-9_.]*$": "must be a dotted Python module name",
    r"^[a-z][a-z0-9_]{0,63}$": "must be lower snake case: a-z, digits and _, starting with"
    " a letter (max 64)",
}
"""What each pattern in the schema means, said the way its field's rule reads."""


_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "missing": lambda _ctx: "required",
    "greater_than": lambda ctx: f"must be greater than {ctx['gt']}",
    "greater_than_equal": lambda ctx: f"must be at least {ctx['ge']}",
    "less_than_equal": lambda ctx: f"must be at most {ctx['le']}",
    "union_tag_invalid": lambda ctx: (
        f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    ),
    "union_tag_not_found": lambda _ctx: "missing 'type'",
    "string_pattern_mismatch": lambda ctx: PATTERNS.get(
        str(ctx.get("pattern")), f"must match the pattern {ctx.get('pattern')}"
    ),
}


def _message(error: Mapping[str, Any], known: list[str]) -> str:
    kind, ctx = error["type"], dict(error.get("ctx") or {})
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        hint = difflib.get_close_matches(key, known, n=1)
        return "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind in _MESSAGES:
        return _MESSAGES[kind](ctx)
    text = str(error["msg"]).removeprefix("Value error, ")
    return text[:1].lower() + text[1:]


def located(loc: Sequence[str | int], message: str, root: yaml.Node | None) -> Problem:
    """A Problem at a location given as path parts, with its YAML line when known."""
    return Problem(_format_loc(loc), message, _line_of(root, loc))


def problems_from(
    exc: ValidationError,
    data: Any,
    root: yaml.Node | None,
    model: type[BaseModel],
    env_origin: Mapping[tuple[str, ...], str] | None = None,
) -> list[Problem]:
    """Every validation error as a Problem with a clean location and, when known, its line."""
    problems = []
    for error in exc.errors():
        located = (error.get("ctx") or {}).get("error")
        if isinstance(located, Located):
            base = _clean_loc(error["loc"], data)
            for suffix, text in located.problems:
                where = [*base, *suffix]
                problems.append(Problem(_format_loc(where), text, _line_of(root, where)))
            continue
        loc = _clean_loc(error["loc"], data)
        message = _message(error, _fields_at(model, loc, data))
        if loc and loc[-1] == "[key]":  # a mapping key that is not an allowed name
            loc, message = loc[:-1], f"invalid name: {message}"
        origin = (env_origin or {}).get(tuple(str(p) for p in loc))
        if origin:
            message += f" (from environment variable {origin})"
        # A bad or missing type tag is best shown on the check's `type:` line.
        line_loc = [*loc, "type"] if error["type"].startswith("union_tag") else loc
        line = None if origin else _line_of(root, line_loc)
        problems.append(Problem(_format_loc(loc), message, line))
    return problems
