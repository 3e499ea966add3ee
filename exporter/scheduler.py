"""Run each enabled check at its interval with APScheduler 3.x.

Jobs only measure. Each job is bounded by its check's timeout (the HealthChecker runs the
probe on an abandonable thread), so a hung probe never holds a pool slot for long and
APScheduler's "max instances reached" cannot starve other checks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.checks import HealthChecker

log = logging.getLogger(__name__)

MAX_WORKERS = 16


# APScheduler logs two INFO lines per job run, and more at start and stop. medic logs what
# matters itself, and in an app that embeds it those lines would flood the app's log (24 in
# 30 s): its scheduler and executor log through medic's own loggers, set to WARNING here,
# so errors still show and an app's own APScheduler keeps its logging as configured.
SCHEDULER_LOG = "exporter.scheduler.apscheduler"
JOBS_LOG = "exporter.scheduler.jobs"


class _Pool(ThreadPoolExecutor):  # type: ignore[misc]  # APScheduler has no type hints
    """APScheduler's thread pool, logging through JOBS_LOG."""

    def start(self, scheduler: Any, alias: str) -> None:
        """As APScheduler's, then medic's logger (run_job logs by this logger's name)."""
        super().start(scheduler, alias)
        self._logger = logging.getLogger(JOBS_LOG)


class CheckScheduler:
    """Owns the APScheduler instance that drives the HealthChecker."""

    def __init__(self, health: HealthChecker, first_run_delay: float = 0.0) -> None:
        self._health = health
        self._first_run_delay = first_run_delay
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Schedule every registered check; the first round starts right away."""
        states = self._health.states()
        workers = max(1, min(MAX_WORKERS, len(states)))
        for name in (SCHEDULER_LOG, JOBS_LOG):
            quiet = logging.getLogger(name)
            if quiet.level == logging.NOTSET:  # unless someone asked for more
                quiet.setLevel(logging.WARNING)
        scheduler = BackgroundScheduler(
            executors={"default": _Pool(workers)},
            timezone=UTC,
            logger=logging.getLogger(SCHEDULER_LOG),
        )
        scheduler.add_listener(
            self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        self._scheduler = scheduler
        for state in states:
            self.add(state.spec.name, state.spec.interval)
        scheduler.start()

    def add(self, name: str, interval: float) -> None:
        """Schedule a check (also one registered after start); its first run is now."""
        if self._scheduler is None:
            return
        self._scheduler.add_job(
            self._health.run_if_enabled,
            "interval",
            seconds=interval,
            args=[name],
            id=name,
            name=f"check {name}",
            next_run_time=datetime.now(UTC) + timedelta(seconds=self._first_run_delay),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval)),
            replace_existing=True,
        )

    def stop(self) -> None:
        """Stop scheduling; do not wait for running jobs (a hung probe must not hold exit)."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    @staticmethod
    def _on_event(event: Any) -> None:
        if isinstance(event, JobExecutionEvent) and event.code == EVENT_JOB_ERROR:
            log.error("scheduled job %s raised", event.job_id, exc_info=event.exception)
        elif isinstance(event, JobEvent) and event.code == EVENT_JOB_MISSED:
            log.warning("check %s missed its scheduled run (process was busy)", event.job_id)
        elif isinstance(event, JobEvent) and event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("check %s skipped: its previous run is still going", event.job_id)
