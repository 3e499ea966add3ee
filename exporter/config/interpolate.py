"""`${VAR}` and `${VAR:-default}` in config values, from the environment.

Substitution happens inside YAML scalars after parsing, so a variable's value is always
data: it can never add keys or change the file's structure. A plain (unquoted) scalar is
typed again after substitution (`workers: ${WORKERS:-4}` is the number 4); a quoted one
stays a string. `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

from exporter.config.errors import Problem

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_KEEP_AS_STRING = {"tag:yaml.org,2002:timestamp"}


def _substitute(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """The text with references replaced, and what was wrong with any of them."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        inner = match.group(1)
        parsed = _NAME.match(inner) if inner is not None else None
        if parsed is None:
            shown = whole if inner is not None else "${ without a closing }"
            problems.append(f"invalid reference {shown}; write ${{NAME}} or ${{NAME:-default}}")
            return whole
        name, default = parsed.group(1), parsed.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                problems.append(
                    f"environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"
                )
                return whole
            return default
        return value

    return _REFERENCE.sub(replace, text), problems


def interpolate(root: yaml.Node | None, env: Mapping[str, str]) -> list[Problem]:
    """Replace references in every scalar value of the tree, in place; the problems found."""
    problems: list[Problem] = []
    resolver = yaml.resolver.Resolver()

    def walk(node: yaml.Node, loc: str) -> None:
        if isinstance(node, yaml.ScalarNode):
            if "${" not in node.value:
                return
            value, found = _substitute(node.value, env)
            problems.extend(Problem(loc, text, node.start_mark.line + 1) for text in found)
            node.value = value
            if node.style is None:  # plain: its type comes from what it now says
                tag = resolver.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
                node.tag = "tag:yaml.org,2002:str" if tag in _KEEP_AS_STRING else tag
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{loc}.{key.value}" if loc else str(key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{loc}[{index}]")

    if root is not None:
        walk(root, "")
    return problems


def construct(root: yaml.Node | None) -> object:
    """Python data from a (possibly interpolated) node tree, as yaml.safe_load builds it."""
    if root is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()
