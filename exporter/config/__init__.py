"""Load medic's configuration from YAML and the environment, validated all at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from exporter.config import preflight, references
from exporter.config.base import default_data_dir, is_loopback, split_listen
from exporter.config.checks import (
    CheckConfig,
    DiskCheckConfig,
    GpuCheckConfig,
    HostMemoryCheckConfig,
    PathCheckConfig,
    TorchCheckConfig,
)
from exporter.config.errors import ConfigError, Problem, located, problems_from
from exporter.config.interpolate import construct, interpolate
from exporter.config.models import BreakerConfig, Config
from exporter.config.server import ServerConfig

__all__ = [
    "ENV_OVERRIDES",
    "BreakerConfig",
    "CheckConfig",
    "Config",
    "ConfigError",
    "DiskCheckConfig",
    "GpuCheckConfig",
    "HostMemoryCheckConfig",
    "Inspection",
    "PathCheckConfig",
    "Problem",
    "ServerConfig",
    "TorchCheckConfig",
    "default_config",
    "inspect_config",
    "is_loopback",
    "load_config",
    "parse_config",
    "read_config_text",
    "split_listen",
    "summarize",
]

ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MEDIC_LISTEN": ("server", "listen"),
    "MEDIC_DATA_DIR": ("data_dir",),
    "MEDIC_LOG_LEVEL": ("log_level",),
}
"""Environment variables that override a config key (they win over the file)."""


def _default_raw(data_dir: str) -> dict[str, Any]:
    return {
        "checks": [
            {"name": "host_memory", "type": "host_memory"},
            {"name": "gpu", "type": "gpu"},
            {"name": "disk_root", "type": "disk", "path": "/"},
            {"name": "disk_data", "type": "disk", "path": data_dir},
        ]
    }


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    origin: dict[tuple[str, ...], str] = {}
    for var, path in ENV_OVERRIDES.items():
        if not env.get(var):
            continue
        section = data
        for key in path[:-1]:
            nested = section.get(key)
            if not isinstance(nested, dict):
                nested = section[key] = {}
            section = nested
        section[path[-1]] = env[var]
        origin[path] = var
    return origin


def _duplicate_keys(node: yaml.Node | None, loc: str = "") -> list[Problem]:
    """PyYAML keeps the last of two equal keys silently; a config with both is a mistake."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            where = f"{loc}.{key.value}" if loc else str(key.value)
            if key.value in seen:
                problems.append(Problem(where, "duplicate key", key.start_mark.line + 1))
            seen.add(key.value)
            problems += _duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{loc}[{index}]")
    return problems


@dataclass
class Inspection:
    """What reading a config found: the config (None when unusable), every problem, and
    warnings about things that are valid but probably not meant."""

    config: Config | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def inspect_config(
    text: str,
    source: str | None = None,
    env: Mapping[str, str] | None = None,
    files: bool = False,
) -> Inspection:
    """Validate YAML text and report everything at once: schema, the checks between
    sections and, with `files`, the secret and TLS files `medic run` will need to read."""
    env = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        problems = _duplicate_keys(root) + interpolate(root, env)
        data = construct(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return Inspection(None, [Problem("", f"invalid YAML: {reason}", line)])
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return Inspection(None, [Problem("", "the top level must be a mapping of keys", 1)])
    origin = _apply_env(data, env)
    config: Config | None = None
    unfilled = {p.location for p in problems}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        # A value whose reference could not be filled in is reported once, as such.
        problems += [
            p for p in problems_from(exc, data, root, Config, origin) if p.location not in unfilled
        ]
        # A section that failed its schema stops pydantic before the checks between
        # sections: run them on the data, so every problem comes out in this one run.
        seen = {(p.location, p.message) for p in problems}
        for loc, message in references.everything(data):
            problem = located(loc, message, root)
            if (problem.location, problem.message) not in seen and problem.location not in unfilled:
                seen.add((problem.location, problem.message))
                problems.append(problem)
    found = preflight.inspect(data, root, env, files=files, empty=root is None)
    problems += found.problems
    problems.sort(key=lambda p: (p.line is None, p.line or 0))  # in the file's order
    return Inspection(None if problems else config, problems, found.warnings)


def parse_config(
    text: str, source: str | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML text; raise ConfigError listing every problem found.

    `${VAR}` and `${VAR:-default}` in values are taken from env (default: os.environ).
    """
    inspection = inspect_config(text, source, env)
    if inspection.config is None:
        raise ConfigError(inspection.problems, source)
    return inspection.config


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The built-in configuration: host memory, and disk space on / and on the data directory."""
    env = os.environ if env is None else env
    data_dir = env.get("MEDIC_DATA_DIR") or str(default_data_dir())
    data = _default_raw(data_dir)
    origin = _apply_env(data, env)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, data, None, Config, origin), "defaults") from None


def read_config_text(path: str | Path) -> str:
    """The config file's text; ConfigError if it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([Problem("", f"cannot read config file: {reason}")], str(path)) from None


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    warnings: list[Problem] | None = None,
) -> Config:
    """Read and validate a config file, or return the built-in default when path is None.

    Warnings (valid, probably not meant: an empty file, relative paths) are appended to
    `warnings` when given.
    """
    if path is None:
        return default_config(env)
    inspection = inspect_config(read_config_text(path), str(path), env)
    if inspection.config is None:
        raise ConfigError(inspection.problems, str(path))
    if warnings is not None:
        warnings.extend(inspection.warnings)
    return inspection.config


def summarize(config: Config) -> str:
    """A few lines saying what this config will do."""
    lines = [
        f"listen: {config.server.listen}",
        f"data_dir: {config.data_dir}",
        f"checks: {len(config.checks)}",
    ]
    for check in config.checks:
        state = "" if check.enabled else " (disabled)"
        target = f" {check.path}" if isinstance(check, DiskCheckConfig | PathCheckConfig) else ""
        lines.append(
            f"  - {check.name}: {check.type}{target} every {check.interval:g}s, "
            f"timeout {check.timeout:g}s{state}"
        )
    if config.breakers:
        lines.append(f"breakers: {', '.join(b.name for b in config.breakers)}")
    if config.identity is None:
        lines.append("identity: built in (this host's names and addresses)")
    else:
        lines.append(f"identity: {', '.join(config.identity.matchers)} "
                     f"(alerts naming no host: {config.identity.unlabeled})")  # fmt: skip
    webhook = config.webhook
    if webhook.routes:
        lines.append(f"webhook routes: {len(webhook.routes)}")
    if webhook.pull is not None:
        lines.append(f"pull: {', '.join(webhook.pull.alertmanagers)} "
                     f"every {webhook.pull.interval:g}s")  # fmt: skip
    return "\n".join(lines)
