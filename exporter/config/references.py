"""Checks between sections: names used twice, and names that point at nothing.

They read plain data (the YAML as parsed, or a model dumped back to it) and tolerate any
shape, so `parse_config` can run them even when a section failed its own schema: then a
file's duplicate names and dangling references are reported in the same run as its schema
problems, not one round later. The models' validators call the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Found = list[tuple[tuple[str | int, ...], str]]
"""(location, message) pairs; the location is relative to the data passed in."""

BUILTIN_ACTIONS = ("clear_gpu_cache", "system_health_check")
"""Actions medic provides itself; the other seed names are bound by the config."""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def check_names(checks: Any) -> Found:
    """Check names used twice (location: the later entry's name), and more than one gpu
    check (location: the list)."""
    found: Found = []
    first: dict[str, int] = {}
    gpu: list[int] = []
    for index, check in enumerate(_items(checks)):
        entry = _mapping(check)
        name = entry.get("name")
        if isinstance(name, str):
            if name in first:
                found.append(((index, "name"), f"{name!r} is also the name of "
                                               f"checks[{first[name]}]"))  # fmt: skip
            else:
                first[name] = index
        if entry.get("type") == "gpu":
            gpu.append(index)
    if len(gpu) > 1:
        found.append(((), f"only one gpu check is allowed (checks{gpu})"))
    return found


def breaker_names(breakers: Any) -> Found:
    """Breaker names used twice (location: the list)."""
    names = [b.get("name") for b in _items(breakers) if isinstance(b, Mapping)]
    twice = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    return [((), f"breaker names used twice: {', '.join(twice)}")] if twice else []


def _rung_action(rung: Any) -> Any:
    return rung if isinstance(rung, str) else _mapping(rung).get("action")


def actions(recovery: Any) -> Found:
    """Built-in actions redefined, and ladder rungs naming no action (location: recovery)."""
    section = _mapping(recovery)
    defined = _mapping(section.get("actions"))
    known = set(BUILTIN_ACTIONS) | set(defined)
    hint = f" (built in: {', '.join(BUILTIN_ACTIONS)}; define others under actions)"
    found: Found = [
        (("actions", name), f"{name!r} is built in and cannot be redefined")
        for name in defined
        if name in BUILTIN_ACTIONS
    ]
    for failure, spec in _mapping(section.get("failures")).items():
        if _mapping(spec).get("verify_query") and not section.get("prometheus_url"):
            found.append((("failures", failure, "verify_query"),
                          "needs recovery.prometheus_url to be evaluated"))  # fmt: skip
        for index, rung in enumerate(_items(_mapping(spec).get("ladder"))):
            action = _rung_action(rung)
            if isinstance(action, str) and action not in known:
                found.append((("failures", failure, "ladder", index, "action"),
                              f"unknown action {action!r}{hint}"))  # fmt: skip
    return found


def verify_and_routes(config: Any) -> Found:
    """verify: naming no check, and routes, check triggers and a gpu check's apps naming a
    failure type with no ladder."""
    root = _mapping(config)
    names = {_mapping(c).get("name") for c in _items(root.get("checks"))}
    failures = _mapping(_mapping(root.get("recovery")).get("failures"))
    found: Found = []
    for failure, spec in failures.items():
        for index, name in enumerate(_items(_mapping(spec).get("verify"))):
            if isinstance(name, str) and name not in names:
                found.append((("recovery", "failures", failure, "verify", index),
                              f"no check named {name!r}"))  # fmt: skip
    kinds = {_mapping(c).get("name"): _mapping(c).get("type") for c in _items(root.get("checks"))}
    for index, check in enumerate(_items(root.get("checks"))):
        source = _mapping(check).get("skip_while_progressing")
        if isinstance(source, str) and kinds.get(source) != "metrics":
            found.append((("checks", index, "skip_while_progressing"),
                          f"no metrics check named {source!r}"))  # fmt: skip
        wanted = _mapping(check).get("trigger")
        if isinstance(wanted, str) and wanted not in failures:
            found.append((("checks", index, "trigger"),
                          f"{wanted!r} has no ladder under recovery.failures"))  # fmt: skip
        for app_index, app in enumerate(_items(_mapping(check).get("apps"))):
            wanted = _mapping(app).get("failure_type")
            if isinstance(wanted, str) and wanted not in failures:
                found.append((("checks", index, "apps", app_index, "failure_type"),
                              f"{wanted!r} has no ladder under recovery.failures"))  # fmt: skip
    for index, route in enumerate(_items(_mapping(root.get("webhook")).get("routes"))):
        wanted = _mapping(route).get("failure_type")
        if isinstance(wanted, str) and wanted not in failures:
            found.append((("webhook", "routes", index, "failure_type"),
                          f"{wanted!r} has no ladder under recovery.failures"))  # fmt: skip
    return found


def everything(config: Any) -> Found:
    """Every cross-section problem of a whole config, located from its root."""
    root = _mapping(config)
    found = [(("checks", *loc), msg) for loc, msg in check_names(root.get("checks"))]
    found += [(("breakers", *loc), msg) for loc, msg in breaker_names(root.get("breakers"))]
    found += [(("recovery", *loc), msg) for loc, msg in actions(root.get("recovery"))]
    return found + verify_and_routes(root)
