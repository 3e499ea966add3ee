"""Pull mode: poll Alertmanager's API v2 for the active alerts about this host.

Every `interval`, one `GET /api/v2/alerts?active=true&silenced=false&inhibited=false` with
`filter=` matchers from the intake (identity and routes: Intake.filters) and `pull.filters`,
to the last peer that answered (on an error, the next one: any peer of an HA cluster will
do). Each alert
goes through the same intake as a pushed one (identity, route, claim) with the same episode
identity, so push and pull can both be on without duplicates. An alert is offered once per
appearance; it is offered again only if its claim was refused or did not commit. An alert
missing from successful polls for `grace` (resolved, silenced, inhibited) closes its
episode; a failed poll changes nothing.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import httpx
from pydantic import ValidationError

from exporter.clock import Clock
from exporter.config.webhook import ClientTlsConfig, PullConfig
from exporter.histogram import Histogram
from exporter.webhook.auth import authorization
from exporter.webhook.intake import Answer, Intake
from exporter.webhook.models import PULLED, Alert, PulledAlert

log = logging.getLogger(__name__)

COMMIT_WAIT = 5.0
"""Seconds a poll waits for an accepted alert's claim to commit (else: offered again)."""
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESULTS = ("accepted", "duplicate", "ignored", "resolved", "refused")


class PullError(Exception):
    """No peer answered a poll."""


def tls_context(tls: ClientTlsConfig | None) -> ssl.SSLContext | bool:
    """What httpx verifies a server with: the system CAs, or the configured CA, client
    certificate and (when asked) no verification at all."""
    if tls is None:
        return True
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.insecure_skip_verify:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def http_client(config: PullConfig) -> httpx.Client:
    """An httpx client with the configured auth, TLS and timeout (secrets read now)."""
    headers = {"Accept": "application/json", "User-Agent": "medic",
               **authorization(config.bearer_token, config.basic_auth)}  # fmt: skip
    return httpx.Client(headers=headers, verify=tls_context(config.tls),
                        timeout=config.timeout, follow_redirects=False)  # fmt: skip


@dataclass
class PullStats:
    """What the poller did, for /metrics and the alertmanager_pull check."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    durations: Histogram = field(default_factory=lambda: Histogram(POLL_BUCKETS))
    last_success: float = 0.0
    last_alerts: int = 0
    failing: int = 0
    """Polls in a row that no peer answered."""
    last_error: str = ""
    version: int = 0


class Puller:
    """Polls Alertmanager on its own thread and offers what it finds to the intake."""

    def __init__(
        self,
        config: PullConfig,
        intake: Intake,
        *,
        clock: Clock,
        client: httpx.Client | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._intake = intake
        self._clock = clock
        self._client = client or http_client(config)
        self._on_change = on_change
        self._peers = list(config.alertmanagers)
        self._current = 0
        server_name = config.tls.server_name if config.tls else None
        self._extensions = {"sni_hostname": server_name} if server_name else {}
        pushed = [*intake.filters(), *config.filters]
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("active", "true"), ("silenced", "false"), ("inhibited", "false"),
            *(("filter", m) for m in pushed),
        ]  # fmt: skip
        if config.receiver:
            params.append(("receiver", config.receiver))
        self.params = httpx.QueryParams(params)
        self._seen: dict[str, tuple[float, Alert]] = {}  # key -> (last seen, the alert)
        self._lock = threading.Lock()
        self.stats = PullStats()
        for peer in self._peers:
            for result in ("success", "error"):
                self.stats.requests[(peer, result)] = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Poll now and then every interval, on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="medic-pull", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling: a poll in flight (bounded by the timeout) is not waited for; the
        thread closes its client when it leaves. Without a thread, close it now."""
        self._stop.set()
        if self._thread is None:
            self._client.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                began = self._clock.monotonic()
                try:
                    self.poll()
                except Exception:
                    log.exception("an Alertmanager poll failed unexpectedly")
                elapsed = self._clock.monotonic() - began
                self._stop.wait(max(0.0, self.config.interval - elapsed))
        finally:
            self._client.close()

    # --- one poll -----------------------------------------------------------------------
    def poll(self) -> list[Answer]:
        """One poll: fetch, offer new alerts, close the gone ones; the answers for new ones."""
        began = time.perf_counter()
        try:
            pulled = self.fetch()
        except PullError as exc:
            self._record(began, failed=str(exc))
            return []
        now = self._clock.time()
        answers: list[Answer] = []
        current: set[str] = set()
        for item in pulled:
            key = item.episode
            current.add(key)
            known = self._seen.get(key)
            if known is not None:  # offered before: only note that it is still there
                self._seen[key] = (now, known[1])
                continue
            alert = item.as_alert()
            answer = self._intake.one(alert)
            self._count(answer)
            answers.append(answer)
            if answer.result != "refused" and _committed(answer.persisted):
                self._seen[key] = (now, alert)
        for key, (seen, alert) in list(self._seen.items()):
            if key not in current and now - seen >= self.config.grace:
                del self._seen[key]
                self._count(self._intake.one(alert.model_copy(update={"status": "resolved"})))
        self._record(began, alerts=len(pulled))
        return answers

    def fetch(self) -> list[PulledAlert]:
        """The active alerts from the first peer that answers, starting with the last good
        one; raises PullError when none does."""
        errors = []
        for offset in range(len(self._peers)):
            index = (self._current + offset) % len(self._peers)
            peer = self._peers[index]
            try:
                response = self._client.get(
                    f"{peer}/api/v2/alerts", params=self.params, extensions=self._extensions
                )
                if response.status_code != 200:
                    raise PullError(f"HTTP {response.status_code}: {response.text[:200]}")
                pulled = PULLED.validate_json(response.content)
            except (httpx.HTTPError, PullError, ValidationError) as exc:
                errors.append(f"{peer}: {type(exc).__name__}: {str(exc)[:200]}")
                self._count_request(peer, "error")
                continue
            self._count_request(peer, "success")
            if index != self._current:
                log.warning("polling Alertmanager at %s now (the previous peer failed)", peer)
                self._current = index
            return pulled
        raise PullError("; ".join(errors))

    # --- accounting ---------------------------------------------------------------------
    def _count_request(self, peer: str, result: str) -> None:
        with self._lock:
            self.stats.requests[(peer, result)] += 1

    def _count(self, answer: Answer) -> None:
        with self._lock:
            self.stats.alerts[answer.result] += 1

    def _record(self, began: float, *, alerts: int = 0, failed: str = "") -> None:
        elapsed = time.perf_counter() - began
        with self._lock:
            stats = self.stats
            stats.durations.observe(elapsed)
            if failed:
                if not stats.failing:
                    log.error("no Alertmanager peer answered: %s", failed)
                stats.failing += 1
                stats.last_error = failed
            else:
                if stats.failing:
                    log.warning("Alertmanager answers again after %d failed polls", stats.failing)
                stats.failing, stats.last_success, stats.last_alerts = 0, self._clock.time(), alerts
            stats.version += 1
        if self._on_change is not None:
            self._on_change()

    def check(self) -> tuple[str, ...]:
        """The alertmanager_pull check's problems: none until `fail_after` polls in a row
        got no answer."""
        with self._lock:
            failing, error = self.stats.failing, self.stats.last_error
        if failing >= self.config.fail_after:
            return (f"no Alertmanager peer answered the last {failing} polls: {error}",)
        return ()


def _committed(persisted: Future[bool] | None) -> bool:
    """Whether a claim is in the journal (waits up to COMMIT_WAIT on this thread)."""
    if persisted is None:
        return True
    try:
        return persisted.result(timeout=COMMIT_WAIT)
    except TimeoutError:
        return False
