"""Which alerts are about this host.

An alert names its host in a label: `node` or `hostname` (kube-state-metrics, node
labels), or `instance` (the scrape target, "host:port"). Labels are taken most specific
first, and the first one the alert carries decides: a kube-state-metrics alert has
`instance` (the exporter's own address) *and* `node` (the subject), and only `node` says
which host it is about. An alert that carries none of them is a cluster-wide alert:
`unlabeled` says whose it is (this host's, by default, as on a single host).

Built in, without an `identity` section: this host's names and addresses (hostname, its
short form and FQDN, every interface's address, loopback) against `node`, `hostname` and
the host part of `instance`. Configured: Alertmanager matchers, grouped by label in the
order written.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from exporter.config.identity import IdentityConfig
from exporter.webhook.matchers import Matcher, any_of, parse_matcher, render

log = logging.getLogger(__name__)

BUILT_IN_LABELS = ("node", "hostname", "instance")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
FQDN_TIMEOUT = 1.0
"""Seconds the FQDN lookup (DNS) may take at start-up; a broken resolver does not stall us."""


def host_part(instance: str) -> str:
    """ "gpu-07:9100" -> "gpu-07", "[fe80::1]:9100" -> "fe80::1"; a bare address stays."""
    if instance.startswith("["):
        return instance[1 : instance.find("]")] if "]" in instance else instance
    if instance.count(":") == 1:
        return instance.split(":", 1)[0]
    return instance


def _fqdn(hostname: str) -> str | None:
    found: list[str] = []
    worker = threading.Thread(target=lambda: found.append(socket.getfqdn(hostname)),
                              name="medic-fqdn", daemon=True)  # fmt: skip
    worker.start()
    worker.join(FQDN_TIMEOUT)
    if not found:
        log.warning("looking up this host's FQDN took over %gs; matching alerts without it",
                    FQDN_TIMEOUT)  # fmt: skip
        return None
    return found[0]


def host_names() -> frozenset[str]:
    """This host's names and addresses, lower-cased."""
    hostname = socket.gethostname()
    names = {hostname, hostname.split(".", 1)[0], *LOOPBACK}
    fqdn = _fqdn(hostname)
    if fqdn:
        names.update((fqdn, fqdn.split(".", 1)[0]))
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                names.add(address.address.split("%", 1)[0])  # fe80::1%eth0 -> fe80::1
    return frozenset(name.lower() for name in names if name)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an alert is this host's, and why."""

    mine: bool
    reason: str


class Identity:
    """Decides, from an alert's labels, whether it is about this host."""

    def __init__(
        self,
        by_label: list[tuple[str, list[Matcher]]] | None = None,
        names: Iterable[str] = (),
        unlabeled_mine: bool = True,
        configured: bool = False,
    ) -> None:
        self._by_label = by_label or []
        self._names = frozenset(n.lower() for n in names)
        self._unlabeled_mine = unlabeled_mine
        self.configured = configured

    @classmethod
    def from_config(
        cls, config: IdentityConfig | None, names: Iterable[str] | None = None
    ) -> Identity:
        """The configured identity, or the built-in one from this host's names."""
        if config is None:
            return cls(names=host_names() if names is None else names)
        groups: dict[str, list[Matcher]] = {}
        for text in config.matchers:
            matcher = parse_matcher(text)
            groups.setdefault(matcher.name, []).append(matcher)
        return cls(list(groups.items()), unlabeled_mine=config.unlabeled == "this_host",
                   configured=True)  # fmt: skip

    def check(self, labels: dict[str, str]) -> Verdict:
        """This host's alert, or not, with the label that decided."""
        if self.configured:
            for label, matchers in self._by_label:
                value = labels.get(label)
                if value:
                    mine = any(m.matches(labels) for m in matchers)
                    return Verdict(mine, f"{label}={value!r}")
        else:
            for label in BUILT_IN_LABELS:
                value = labels.get(label)
                if value:
                    host = host_part(value) if label == "instance" else value
                    return Verdict(host.lower() in self._names, f"{label}={value!r}")
        return Verdict(self._unlabeled_mine, "no host label")

    def equalities(self) -> dict[str, str]:
        """The labels the configured identity pins to one value (node="gpu-07"): what a
        silence by host would name. Empty for the built-in identity."""
        found: dict[str, str] = {}
        for label, matchers in self._by_label:
            for matcher in matchers:
                if matcher.op == "=" and label not in found:
                    found[label] = matcher.value
        return found

    def pushdown(self) -> str | None:
        """One Alertmanager filter matcher that keeps every alert check() accepts, when the
        identity can say it exactly (one label, unlabeled alerts not this host's)."""
        if not self.configured or self._unlabeled_mine or len(self._by_label) != 1:
            return None
        return any_of(self._by_label[0][1])

    def describe(self) -> str:
        """For logs: what this identity matches."""
        if self.configured:
            return ", ".join(render(m) for _, ms in self._by_label for m in ms)
        return f"{', '.join(BUILT_IN_LABELS)} naming one of {len(self._names)} host names/addresses"
