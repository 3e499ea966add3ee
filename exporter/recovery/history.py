"""Reading the journal's attempts back: filtered pages and per-action statistics, from the
file while it is healthy, else from the journal's in-memory mirror."""

from __future__ import annotations

from typing import Any

from exporter.recovery.types import Outcome, RecoveryAttempt
from exporter.storage.sqlite import Database

FAILED = ("failed", "timeout", "not_recovered", "exhausted")
COLUMNS = (
    "id, failure_type, action, source, fingerprint, starts_at, dedup_key, started, ended, "
    "outcome, detail, dry_run, episode_id, rung"
)


def attempt_from_row(row: tuple[Any, ...]) -> RecoveryAttempt:
    """A RecoveryAttempt from a row of COLUMNS."""
    (id_, failure_type, action, source, fingerprint, starts_at, dedup_key, started, ended,
     outcome, detail, dry_run, episode_id, rung) = row  # fmt: skip
    try:
        state = Outcome(outcome)
    except ValueError:
        state = Outcome.FAILED
    return RecoveryAttempt(
        id=id_, failure_type=failure_type, action=action, source=source, started=started,
        outcome=state, ended=ended, detail=detail, dry_run=bool(dry_run),
        fingerprint=fingerprint, starts_at=starts_at, dedup_key=dedup_key,
        episode_id=episode_id, rung=rung,
    )  # fmt: skip


def attempts(
    db: Database | None,
    recent: list[RecoveryAttempt],
    *,
    failure_type: str | None,
    outcome: str | None,
    since: float | None,
    limit: int,
    offset: int,
) -> tuple[list[RecoveryAttempt], int]:
    """Newest first, filtered, paginated; (page, total matching)."""
    if db is None or not db.healthy:
        matching = [
            a for a in reversed(recent)
            if (failure_type is None or a.failure_type == failure_type)
            and (outcome is None or a.outcome.value == outcome)
            and (since is None or a.started >= since)
        ]  # fmt: skip
        return matching[offset : offset + limit], len(matching)
    db.flush(timeout=2.0)
    # Only constant column names are formatted into SQL; every value is a bound parameter.
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("failure_type", failure_type), ("outcome", outcome)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("started >= ?")
        params.append(since)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    # A range count on a covering index: milliseconds at a million rows (BENCHMARKS.md).
    total = db.query(f"SELECT COUNT(*) FROM recovery_attempts{clause}", params)[0][0]  # noqa: S608
    rows = db.query(
        # Newest by start time: every filter then walks one index backwards (schema.py).
        f"SELECT {COLUMNS} FROM recovery_attempts{clause} "  # noqa: S608
        "ORDER BY started DESC, id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [attempt_from_row(row) for row in rows], int(total)


def stats(db: Database | None, recent: list[RecoveryAttempt]) -> list[dict[str, Any]]:
    """Per failure type and action: attempts, successes, failures, last attempt."""
    if db is not None and db.healthy:
        db.flush(timeout=2.0)
        rows = db.query(
            "SELECT failure_type, action, COUNT(*), SUM(outcome = 'succeeded'), "  # noqa: S608
            f"SUM(outcome IN {FAILED}), MAX(started) FROM recovery_attempts "
            "GROUP BY failure_type, action ORDER BY failure_type, action"
        )
    else:
        table: dict[tuple[str, str], list[Any]] = {}
        for a in recent:
            row = table.setdefault((a.failure_type, a.action), [0, 0, 0, 0.0])
            row[0] += 1
            row[1] += a.outcome is Outcome.SUCCEEDED
            row[2] += a.outcome.value in FAILED
            row[3] = max(row[3], a.started)
        rows = [(ft, action, *values) for (ft, action), values in sorted(table.items())]
    return [
        {"failure_type": ft, "action": action, "attempts": int(n), "successes": int(ok or 0),
         "failures": int(bad or 0), "last_attempt": last}
        for ft, action, n, ok, bad, last in rows
    ]  # fmt: skip
