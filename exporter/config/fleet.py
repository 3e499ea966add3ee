"""The fleet section: this host's place in the fleet, the blast-radius guard (Prometheus)
and the strict semaphore (etcd) that every disruptive rung passes."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from exporter.config.base import PositiveDuration, Strict
from exporter.config.server import BasicAuthConfig, SecretConfig
from exporter.config.webhook import ClientTlsConfig, Url

LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
FLEET = "fleet"
"""The scope name of the whole fleet (every other scope names a fault domain's label)."""


class Limit(Strict):
    """An absolute count, or a share of the hosts in scope ("50%")."""

    count: int | None = None
    percent: float | None = None

    def allows(self, value: int, hosts: int) -> bool:
        """Whether `value` of `hosts` stays within this limit."""
        if self.count is not None:
            return value <= self.count
        assert self.percent is not None
        return hosts > 0 and value * 100 <= self.percent * hosts

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent:g}%"


def _limit(value: object) -> object:
    if isinstance(value, Limit | dict):
        return value
    if isinstance(value, bool):
        raise ValueError('a limit is a count (3) or a share of the hosts ("50%")')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a count cannot be negative")
        return {"count": value}
    if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)):
        percent = float(match.group(1))
        if percent > 100:
            raise ValueError(f"{value!r}: a share is at most 100%")
        return {"percent": percent}
    raise ValueError(f'{value!r}: a limit is a count (3) or a share of the hosts ("50%")')


LimitValue = Annotated[Limit, BeforeValidator(_limit)]


class BudgetConfig(Strict):
    """One budget: over the whole fleet, or over the hosts that share this host's value of
    the `domain` label (its rack, NVLink domain, pool, zone …)."""

    domain: LabelName | None = Field(
        default=None, description="a fault domain's label; none: the whole fleet"
    )
    max_affected: LimitValue | None = Field(
        default=None, description="hosts with this failure type firing, this one included"
    )
    max_in_action: LimitValue | None = Field(
        default=None, description="other hosts in a disruptive action now (a soft, scraped view)"
    )

    @property
    def scope(self) -> str:
        """`fleet`, or the domain label."""
        return self.domain or FLEET


class GuardConfig(Strict):
    """Before a disruptive rung, ask Prometheus how much of the fleet is affected or
    mid-remediation; hold the rung while a budget is exceeded."""

    prometheus_url: Url | None = Field(default=None, description="default: recovery.prometheus_url")
    hosts: str = Field(
        default='up{job="medic"}', description="one series per host of the fleet (PromQL)"
    )
    affected: str = Field(
        default='ALERTS{alertstate="firing",medic_failure_type="{failure_type}"}',
        description="series of hosts that have the failure type ({failure_type} is replaced)",
    )
    in_action: str = Field(
        default="medic_recovery_disruptive_in_progress > 0",
        description="series of hosts in a disruptive action now",
    )
    budgets: list[BudgetConfig] = Field(min_length=1)
    on_error: Literal["hold", "proceed"] = Field(
        default="hold",
        description="when Prometheus does not answer: hold the rung (fail closed) or let it run",
    )
    recheck: PositiveDuration = Field(default=15.0, description="how often a held rung asks again")
    timeout: PositiveDuration = 5.0
    bearer_token: SecretConfig | None = None
    tls: ClientTlsConfig | None = None

    @model_validator(mode="after")
    def _domains_named(self) -> GuardConfig:
        for budget in self.budgets:
            if budget.max_affected is None and budget.max_in_action is None:
                raise ValueError(
                    f"budget for {budget.scope}: give max_affected, max_in_action or both"
                )
        return self


class SemaphoreConfig(Strict):
    """At most N hosts in a disruptive action at once, per scope, as lease-backed slots in
    etcd: a slot is taken with a lease before the rung and given back after; a medic that
    dies loses its slot when the lease expires."""

    endpoints: list[Url] = Field(min_length=1, description="etcd client URLs, any member")
    prefix: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*$")] = "/medic/fleet"
    slots: dict[LabelName, Annotated[int, Field(ge=1)]] = Field(
        min_length=1, description="`fleet`: the whole fleet; any other key: a fault domain's label"
    )
    ttl: Annotated[int, Field(ge=2, le=3600)] = Field(
        default=30, description="seconds a dead holder keeps its slot (lease TTL)"
    )
    poll: PositiveDuration = Field(default=1.0, description="how often a waiting rung looks again")
    hold_after: PositiveDuration = Field(
        default=300.0, description="a rung that waited this long for a slot is held (alerted)"
    )
    on_error: Literal["hold", "proceed"] = Field(
        default="hold", description="when no etcd member answers"
    )
    timeout: PositiveDuration = Field(default=2.0, description="per request to etcd")
    tls: ClientTlsConfig | None = None
    auth: BasicAuthConfig | None = Field(default=None, description="etcd's user and password")


class FleetConfig(Strict):
    """This host in the fleet, and the limits every disruptive rung passes."""

    host: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="this host's name for the semaphore (default: the hostname)"
    )
    domains: dict[LabelName, Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=dict, description="this host's fault domains: label → value"
    )
    host_label: LabelName = Field(default="instance", description="the label naming a host")
    guard: GuardConfig | None = None
    semaphore: SemaphoreConfig | None = None

    @model_validator(mode="after")
    def _domains_known(self) -> FleetConfig:
        named = [b.domain for b in self.guard.budgets if b.domain] if self.guard else []
        named += [s for s in self.semaphore.slots if s != FLEET] if self.semaphore else []
        missing = sorted({d for d in named if d not in self.domains})
        if missing:
            raise ValueError(
                f"fleet.domains has no value for {', '.join(missing)}: say which "
                f"{missing[0]} this host is in (e.g. domains: {{{missing[0]}: r12}})"
            )
        if self.host_label in self.domains:
            raise ValueError(f"{self.host_label} names a host, not a fault domain")
        return self
