"""The identity section: which alerts are about this host."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from exporter.config.base import Strict


def _identity_matcher(value: str) -> str:
    from exporter.webhook.matchers import parse_matcher  # noqa: PLC0415 - no import cycle

    matcher = parse_matcher(value)
    if matcher.op not in ("=", "=~"):
        raise ValueError(f"{value!r}: an identity names this host: use = or =~, not {matcher.op}")
    if not matcher.value:
        raise ValueError(f"{value!r}: an empty value would name every host without the label")
    return value


class IdentityConfig(Strict):
    """Alerts about this host. The matchers are grouped by label in the order written; the
    first of those labels that an alert carries decides: it is this host's alert when a
    matcher on that label matches. An alert with none of the labels follows `unlabeled`."""

    matchers: list[Annotated[str, AfterValidator(_identity_matcher)]] = Field(min_length=1)
    unlabeled: Literal["this_host", "other_host"] = Field(
        default="this_host",
        description="alerts that carry none of the matchers' labels (cluster-wide alerts)",
    )
