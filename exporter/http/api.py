"""The recovery API: history, statistics, reset, and failures reported by operators."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from exporter.app import Medic
from exporter.config import is_loopback
from exporter.config.units import parse_duration
from exporter.recovery.engine import Submission
from exporter.recovery.types import FailureEvent, Outcome
from exporter.webhook.auth import Authenticator

REFUSED = ("queue_full", "journal_down", "stopped")
MAX_OFFSET = 2**53
"""Beyond any journal's size, and within SQLite's 64-bit integers (beyond them: 500)."""


def committed(submission: Submission, timeout: float) -> bool:
    """Whether the submission's claim is in the journal (waits up to timeout)."""
    if submission.persisted is None:
        return True
    try:
        return submission.persisted.result(timeout=timeout)
    except TimeoutError:
        return False


class FailureReport(BaseModel):
    """A failure an operator or a script reports by hand."""

    model_config = ConfigDict(extra="forbid")

    failure_type: str
    detail: str = Field(default="", max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    dedup_key: str | None = Field(default=None, max_length=512)


def guard(authenticator: Authenticator | None) -> Callable[[Request], None]:
    """Without auth, state-changing endpoints answer callers on this host only (with auth,
    exporter.http.guard has checked the credentials before any route)."""

    def check(request: Request) -> None:
        if authenticator is None and not is_loopback(request.client.host if request.client else ""):
            raise HTTPException(403, "without server.auth this endpoint only answers locally")

    return check


def parse_since(value: str | None) -> float | None:
    """Epoch seconds, or a duration back from now ("1h", "30m")."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        try:
            return time.time() - float(parse_duration(value))
        except ValueError as exc:
            raise HTTPException(400, f"since: {exc}") from None
    return number


def recovery_router(medic: Medic, authenticator: Authenticator | None = None) -> APIRouter:
    """Routes under /api/v1 for the recovery engine."""
    router = APIRouter(prefix="/api/v1")
    require_caller = guard(authenticator)

    @router.get("/recoveries")
    def recoveries(
        failure_type: str | None = None,
        outcome: Annotated[str | None, Query(description="e.g. succeeded, exhausted")] = None,
        since: Annotated[str | None, Query(description="epoch seconds or 1h, 30m")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Recovery attempts, newest first."""
        if outcome is not None and outcome not in {o.value for o in Outcome}:
            raise HTTPException(400, f"outcome: unknown value {outcome!r}")
        attempts, total = medic.journal.attempts(
            failure_type=failure_type, outcome=outcome, since=parse_since(since),
            limit=limit, offset=offset,
        )  # fmt: skip
        following = offset + len(attempts)
        return {
            "attempts": [a.as_dict() for a in attempts],
            "total": total,
            "next_offset": following if following < total else None,
        }

    @router.get("/recoveries/stats")
    def stats() -> dict[str, Any]:
        """Attempts, successes, failures and the last attempt, per failure type and action."""
        return {"stats": medic.journal.stats(), "cooldowns": medic.recovery.cooldowns()}

    @router.post("/recoveries/reset")
    def reset(request: Request) -> dict[str, str]:
        """Forget cooldowns and handled episodes; close the actions' breakers."""
        require_caller(request)
        medic.recovery.reset()
        return {"status": "reset"}

    @router.post("/failures", status_code=202)
    def report(request: Request, body: FailureReport) -> dict[str, str]:
        """Run a failure type's ladder now, through the same gates as an alert."""
        require_caller(request)
        event = FailureEvent(
            body.failure_type, "api", body.labels, dedup_key=body.dedup_key, detail=body.detail
        )
        submission = medic.recovery.submit(event)
        if submission.result == "unknown_failure_type":
            raise HTTPException(400, submission.detail)
        if submission.result in REFUSED:
            raise HTTPException(503, submission.detail, headers={"Retry-After": "10"})
        if not committed(submission, timeout=5):  # accepted only once the journal holds it
            raise HTTPException(503, "the journal is not committing", {"Retry-After": "10"})
        return {"result": submission.result, "detail": submission.detail}

    @router.get("/fleet")
    def fleet() -> dict[str, Any]:
        """What the fleet stage holds on this host, its slots and the guard's last answer."""
        return fleet_state(medic)

    @router.post("/fleet/release")
    def release(request: Request, body: Release) -> dict[str, Any]:
        """Let held rungs (one episode's, or all) go past the guard; a full semaphore still
        makes them wait."""
        require_caller(request)
        if medic.fleet is None:
            raise HTTPException(404, "this medic has no fleet section")
        who = request.client.host if request.client else "api"
        released = medic.recovery.release_held(body.episode, f"{body.who or 'a person'} ({who})")
        if body.episode is not None and not released:
            raise HTTPException(404, f"episode {body.episode} has no held rung")
        return {"released": released}

    return router


class Release(BaseModel):
    """Which held rungs a person releases."""

    model_config = ConfigDict(extra="forbid")

    episode: int | None = Field(default=None, description="one episode; none: every held rung")
    who: str | None = Field(default=None, max_length=128, description="for the log")


def fleet_state(medic: Medic) -> dict[str, Any]:
    """The fleet stage's state on this host, as plain data."""
    gate = medic.fleet
    if gate is None:
        return {"configured": False}
    answer = gate.last_answer
    return {
        "configured": True,
        "held": [
            {
                "episode": h.episode,
                "failure_type": h.failure_type,
                "action": h.action,
                "outcome": h.outcome.value,
                "detail": h.detail,
                "since": h.since,
            }
            for h in list(gate.held.values())
        ],
        "slots_held": len(gate.slots),
        "guard": None
        if answer is None
        else {
            "answer": answer.kind,
            "detail": answer.detail,
            "budgets": [dataclasses.asdict(b) for b in answer.budgets],
        },
    }
