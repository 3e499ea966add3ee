"""The blast-radius guard: Prometheus as the fleet's view.

Before a disruptive rung it asks three questions, each counted per host and per fault
domain in one PromQL query: how many hosts there are, how many have this failure type
firing, how many are in a disruptive action now. A budget exceeded holds the rung; an
unanswered question is "unknown" (the configured fail mode decides).

The queries group by the host label and the budgets' domain labels, so the operator's
expressions are used as written (no matcher is spliced into them): a series' own labels
say which host and domain it belongs to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from exporter.config.fleet import FLEET, BudgetConfig, FleetConfig, GuardConfig
from exporter.webhook.auth import authorization

Counts = dict[tuple[str, ...], int]
"""Hosts per combination of domain values (in `GuardView.domains` order)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The guard's answer for one rung."""

    kind: Literal["ok", "over", "unknown"]
    detail: str
    budgets: tuple[BudgetLeft, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetLeft:
    """One budget in scope: how much of it is used, for `medic fleet status` and the log."""

    scope: str
    domain: str
    hosts: int
    affected: int
    in_action: int
    max_affected: str
    max_in_action: str
    ok: bool


def client_settings(guard: GuardConfig) -> dict[str, Any]:
    """httpx settings for the guard's Prometheus: its token, TLS (pull mode's context:
    CA, client certificate, skip-verify) and timeout; secrets read now."""
    from exporter.webhook.pull import tls_context  # noqa: PLC0415 - only with a guard

    headers = {"User-Agent": "medic-fleet-guard",
               **authorization(bearer_token=guard.bearer_token)}  # fmt: skip
    return {"headers": headers, "verify": tls_context(guard.tls), "timeout": guard.timeout}


class PrometheusCounts:
    """`count by (domains) (count by (host, domains) (expr))` through the HTTP API."""

    def __init__(self, url: str, guard: GuardConfig, host_label: str, domains: list[str]) -> None:
        self.url, self.host_label, self.domains = url.rstrip("/"), host_label, domains
        self._client = httpx.AsyncClient(**client_settings(guard))
        self.queries = 0

    def promql(self, expr: str) -> str:
        """The grouped count for an expression."""
        inner = ", ".join([self.host_label, *self.domains])
        outer = f" by ({', '.join(self.domains)})" if self.domains else ""
        return f"count{outer} (count by ({inner}) ({expr}))"

    async def count(self, expr: str) -> Counts:
        """Hosts per domain-value combination; raises on any error."""
        self.queries += 1
        answer = await self._client.get(
            f"{self.url}/api/v1/query", params={"query": self.promql(expr)}
        )
        answer.raise_for_status()
        body = answer.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus said {body.get('error') or body.get('status')}")
        data = body["data"]
        if data.get("resultType") != "vector":
            raise ValueError(f"expected a vector, got {data.get('resultType')}")
        counts: Counts = {}
        for series in data["result"]:
            key = tuple(series["metric"].get(d, "") for d in self.domains)
            counts[key] = counts.get(key, 0) + int(float(series["value"][1]))
        return counts

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class BlastRadiusGuard:
    """Holds a disruptive rung while the fleet (or this host's domain) is over budget."""

    def __init__(self, fleet: FleetConfig, prometheus_url: str) -> None:
        assert fleet.guard is not None
        self.config = fleet.guard
        self._mine = dict(fleet.domains)
        self._labels = sorted({b.domain for b in self.config.budgets if b.domain})
        self.prometheus = PrometheusCounts(prometheus_url, self.config, fleet.host_label,
                                           self._labels)  # fmt: skip

    async def check(self, failure_type: str) -> Answer:
        """ok, over (with the budget that is exceeded) or unknown (why)."""
        affected_expr = self.config.affected.replace("{failure_type}", failure_type)
        try:
            hosts, affected, acting = await asyncio.gather(
                self.prometheus.count(self.config.hosts),
                self.prometheus.count(affected_expr),
                self.prometheus.count(self.config.in_action),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return Answer("unknown", f"cannot ask Prometheus: {type(exc).__name__}: {exc}")
        budgets = tuple(self._left(b, hosts, affected, acting) for b in self.config.budgets)
        if any(b.hosts == 0 for b in budgets):
            empty = next(b for b in budgets if b.hosts == 0)
            where = "the fleet" if empty.scope == FLEET else f"{empty.scope}={empty.domain}"
            return Answer("unknown", f"Prometheus knows no hosts in {where} ({self.config.hosts})",
                          budgets)  # fmt: skip
        over = [b for b in budgets if not b.ok]
        if over:
            return Answer("over", "; ".join(describe(b, failure_type) for b in over), budgets)
        return Answer("ok", "within every budget", budgets)

    def _left(
        self, budget: BudgetConfig, hosts: Counts, affected: Counts, acting: Counts
    ) -> BudgetLeft:
        domain = self._mine[budget.domain] if budget.domain else ""
        index = self._labels.index(budget.domain) if budget.domain else -1

        def total(counts: Counts) -> int:
            return sum(n for key, n in counts.items() if index < 0 or key[index] == domain)

        n_hosts, n_affected, n_acting = total(hosts), total(affected), total(acting)
        ok = True
        if budget.max_affected is not None:
            ok &= budget.max_affected.allows(n_affected, n_hosts)
        if budget.max_in_action is not None:  # this rung would be one more
            ok &= budget.max_in_action.allows(n_acting + 1, n_hosts)
        return BudgetLeft(budget.scope, domain, n_hosts, n_affected, n_acting,
                          str(budget.max_affected or "-"), str(budget.max_in_action or "-"),
                          ok)  # fmt: skip

    async def close(self) -> None:
        """Close the Prometheus client."""
        await self.prometheus.close()


def describe(budget: BudgetLeft, failure_type: str) -> str:
    """One exceeded budget in words."""
    where = "the fleet" if budget.scope == FLEET else f"{budget.scope}={budget.domain}"
    parts = []
    if budget.max_affected != "-":
        share = 100 * budget.affected / budget.hosts if budget.hosts else 0.0
        parts.append(f"{budget.affected} of {budget.hosts} hosts ({share:.0f}%) have "
                     f"{failure_type} (budget {budget.max_affected})")  # fmt: skip
    if budget.max_in_action != "-":
        parts.append(f"{budget.in_action} in a disruptive action (budget {budget.max_in_action})")
    return f"{where}: {', '.join(parts)}"
