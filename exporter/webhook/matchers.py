"""Alertmanager-style label matchers: name="v", name!="v", name=~"re", name!~"re".

As in Alertmanager, regexes are fully anchored and a missing label matches as "".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_MATCHER = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s]*))\s*$'
)
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Matcher:
    """One condition on one label."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether the labels satisfy this matcher."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


def parse_matcher(text: str) -> Matcher:
    """Parse `name op "value"`; raises ValueError with what is wrong."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f'invalid matcher {text!r}; expected e.g. alertname="GpuMemoryHigh"')
    name, op, quoted, bare = match.groups()
    value = _UNESCAPE.sub(lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), quoted) \
        if quoted is not None else bare  # fmt: skip
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(f"(?:{value})")  # used with fullmatch: anchored both ends
        except re.error as exc:
            raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
    return Matcher(name, op, value, pattern)  # type: ignore[arg-type]


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def render(matcher: Matcher) -> str:
    """The matcher as Alertmanager writes it (`name=~"value"`)."""
    quoted = matcher.value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{matcher.name}{matcher.op}"{quoted}"'


def any_of(matchers: list[Matcher]) -> str | None:
    """One matcher that matches exactly when any of these does, when they can be said as
    one: all `=` or `=~` on the same label. Else None."""
    if not matchers or len({m.name for m in matchers}) != 1:
        return None
    if any(m.op not in ("=", "=~") for m in matchers):
        return None
    if len(matchers) == 1:
        return render(matchers[0])
    union = "|".join(f"(?:{m.value})" if m.op == "=~" else re.escape(m.value) for m in matchers)
    return render(Matcher(matchers[0].name, "=~", union))
