"""`medic history` and `medic stats`: the journal as readable tables."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from exporter.clock import SystemClock
from exporter.config import Config
from exporter.config.units import parse_duration
from exporter.recovery.journal import Journal
from exporter.storage.sqlite import DB_FILE, Database


class NoJournal(Exception):
    """There is no journal in the configured data directory."""


def _journal(config: Config) -> tuple[Database, Journal]:
    path = Path(config.data_dir) / DB_FILE
    if not path.exists():
        raise NoJournal(f"no journal at {path} (has medic run with this data directory?)")
    db = Database(path)
    return db, Journal(db, SystemClock())


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def printable(text: str) -> str:
    """text with control characters escaped (\\x1b, \\n ...): a command's output or an
    alert's detail never moves the cursor, recolours or retitles the reader's terminal."""
    return text.translate(_CONTROL)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line.rstrip(), *(b.rstrip() for b in body)])


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def history(
    config: Config,
    since: str | None,
    failure_type: str | None,
    limit: int,
    output: str = "table",
) -> str:
    """The newest attempts as a table, or (output "json") as a JSON document with the
    attempts and the total (`json.dumps` escapes control characters itself)."""
    db, journal = _journal(config)
    try:
        horizon = time.time() - float(parse_duration(since)) if since else None
        attempts, total = journal.attempts(failure_type=failure_type, since=horizon, limit=limit)
    finally:
        db.close()
    if output == "json":
        body = {"attempts": [a.as_dict() for a in attempts], "total": total}
        return json.dumps(body, indent=2)
    rows = [
        [
            str(a.id), _when(a.started), a.failure_type, a.action, a.outcome.value,
            "-" if a.ended is None else f"{a.ended - a.started:.1f}s",
            printable(a.detail or "")[:60],
        ]
        for a in attempts
    ]  # fmt: skip
    table = _table(["ID", "STARTED", "FAILURE", "ACTION", "OUTCOME", "TOOK", "DETAIL"], rows)
    return f"{table}\n({len(attempts)} of {total} attempts)"


def stats(config: Config) -> str:
    """Attempts, successes and failures per failure type and action."""
    db, journal = _journal(config)
    try:
        rows = journal.stats()
    finally:
        db.close()
    return _table(
        ["FAILURE", "ACTION", "ATTEMPTS", "SUCCEEDED", "FAILED", "LAST"],
        [[r["failure_type"], r["action"], str(r["attempts"]), str(r["successes"]),
          str(r["failures"]), _when(r["last_attempt"])] for r in rows],
    )  # fmt: skip


def gpu_history(config: Config, serial: str | None, output: str = "table") -> str:
    """Each GPU's faults, resets, reboots and escalations, oldest first."""
    path = Path(config.data_dir) / DB_FILE
    if not path.exists():
        raise NoJournal(f"no journal at {path} (has medic run with this data directory?)")
    db = Database(path)
    try:
        tables = {name for (name,) in db.query("SELECT name FROM sqlite_master")}
        rows = [] if "gpu_history" not in tables else db.query(
            "SELECT serial, at, kind, fault, detail FROM gpu_history "
            "WHERE ? IS NULL OR serial = ? ORDER BY id", (serial, serial))  # fmt: skip
    finally:
        db.close()
    if output == "json":
        return json.dumps([{"serial": r[0], "at": r[1], "kind": r[2], "fault": r[3],
                            "detail": r[4]} for r in rows], indent=2)  # fmt: skip
    if not rows:
        return f"no history for GPU {serial}" if serial else "no GPU history yet"
    return _table(["SERIAL", "WHEN", "KIND", "FAULT", "DETAIL"],
                  [[r[0], _when(r[1]), r[2], r[3], r[4]] for r in rows])  # fmt: skip
