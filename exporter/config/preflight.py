"""What `medic check-config` looks at beyond the schema.

The files `medic run` will have to read (secrets, TLS keys and certificates), and what is
valid but probably not meant (an empty file, relative paths). It reads the data as parsed,
so it runs even when the schema found problems, and reports in the same run.
"""

from __future__ import annotations

import difflib
import getpass
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from exporter.config.errors import Problem, located

SECRET_KEYS = ("bearer_token", "password")
"""Keys whose value is a secret: {file: ...} or {env: ...}."""
FILE_KEYS = ("cert_file", "key_file", "client_ca_file", "ca_file")
"""Keys naming a file medic reads at start (TLS)."""
PATH_CHECKS = ("disk", "path")


@dataclass
class Found:
    """Problems (medic run would refuse or fail) and warnings (it would run, oddly)."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


Loc = tuple[str | int, ...]


def _entries(node: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Any, Any]]:
    """Every key of every mapping in the parsed data, with its location and value."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield (*loc, key), key, value
            yield from _entries(value, (*loc, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _entries(item, (*loc, index))


def _files(data: Any) -> Iterator[tuple[Loc, str, bool]]:
    """(location, path, is_secret) of every file the config makes medic read."""
    for loc, key, value in _entries(data):
        if key in SECRET_KEYS and isinstance(value, Mapping):
            if isinstance(value.get("file"), str):
                yield (*loc, "file"), value["file"], True
        elif key in FILE_KEYS and isinstance(value, str):
            yield loc, value, False


def _env_secrets(data: Any) -> Iterator[tuple[Loc, str]]:
    """(location, variable) of every secret read from the environment."""
    for loc, key, value in _entries(data):
        if key in SECRET_KEYS and isinstance(value, Mapping) and isinstance(value.get("env"), str):
            yield (*loc, "env"), value["env"]


def _unreadable(path: str, secret: bool) -> str | None:
    """Why medic could not use the file, or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror} (checked as user {getpass.getuser()})"
    if secret and not head.rstrip(b"\r\n"):
        return f"secret file {path} is empty"
    return None


def _relative(data: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    checks = data.get("checks")
    for index, check in enumerate(checks if isinstance(checks, list) else []):
        if isinstance(check, Mapping) and check.get("type") in PATH_CHECKS:
            path = check.get("path")
            if isinstance(path, str) and path and not os.path.isabs(path):
                yield ("checks", index, "path"), path
    data_dir = data.get("data_dir")
    if isinstance(data_dir, str) and data_dir and not os.path.isabs(data_dir):
        yield ("data_dir",), data_dir


def _near_builtin(data: Mapping[str, Any]) -> Iterator[tuple[Loc, str, str]]:
    """User-defined failure types one typo away from a built-in name."""
    from exporter.config.recovery import FAILURE_TYPES  # noqa: PLC0415 - no cycle at import

    recovery = data.get("recovery")
    failures = recovery.get("failures") if isinstance(recovery, Mapping) else None
    for name in failures if isinstance(failures, Mapping) else {}:
        if isinstance(name, str) and name not in FAILURE_TYPES:
            close = difflib.get_close_matches(name, FAILURE_TYPES, n=1, cutoff=0.85)
            if close:
                yield ("recovery", "failures", name), name, close[0]


def inspect(
    data: Mapping[str, Any],
    root: yaml.Node | None,
    env: Mapping[str, str],
    *,
    files: bool,
    empty: bool,
) -> Found:
    """Files medic run would fail to read (when `files`) and warnings, for parsed data."""
    found = Found()
    if empty:
        found.warnings.append(Problem(
            "", "the file has no settings: medic would run no checks and remediate nothing "
            "(the built-in default checks apply only when no config file is given)",
        ))  # fmt: skip
    for loc, name, builtin in _near_builtin(data):
        found.warnings.append(located(
            loc, f"{name!r} is not a built-in failure type (did you mean {builtin!r}?); "
            "fine if it is one of your own", root,
        ))  # fmt: skip
    for loc, path in _relative(data):
        found.warnings.append(located(
            loc, f"relative path {path!r} is resolved against the directory medic starts in "
            "(/ under systemd); give an absolute path", root,
        ))  # fmt: skip
    if files:
        for loc, path, secret in _files(data):
            reason = _unreadable(path, secret)
            if reason is not None:
                found.problems.append(located(loc, reason, root))
        for loc, name in _env_secrets(data):
            if name not in env:
                found.problems.append(
                    located(loc, f"environment variable {name} is not set here", root)
                )
    return found
