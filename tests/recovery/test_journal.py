"""Journal retention, and a medic whose data directory cannot hold a journal."""

from __future__ import annotations

from pathlib import Path

import httpx

from exporter.app import Medic
from exporter.config import parse_config
from exporter.recovery.journal import Journal
from exporter.recovery.types import Outcome, RecoveryAttempt
from exporter.storage.sqlite import Database
from tests.helpers import FakeClock, serving, wait_until


def record(journal: Journal, started: float) -> None:
    journal.record(RecoveryAttempt(0, "network_error", "noop", "app", started,
                                   Outcome.SUCCEEDED, ended=started))  # fmt: skip


def test_retention_by_age_and_by_count(tmp_path: Path) -> None:
    clock = FakeClock()
    db = Database(tmp_path / "medic.db")
    journal = Journal(db, clock)
    journal.open()
    now = clock.time()
    for age in (40 * 86400, 31 * 86400, 3600, 60, 1):
        record(journal, now - age)
    journal.tombstone("old")
    journal.prune(max_age=30 * 86400, max_count=2)
    db.flush()
    _, total = journal.attempts()
    assert total == 2
    starts = sorted(row[0] for row in db.query("SELECT started FROM recovery_attempts"))
    assert starts == [now - 60, now - 1]  # the newest two of those within 30 days
    db.close()


def test_an_unusable_data_dir_keeps_medic_serving_with_the_journal_in_memory(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    medic = Medic(parse_config(f"""
data_dir: {blocker}
recovery:
  actions:
    noop: {{type: in_process}}
  failures:
    network_error: {{ladder: [noop]}}
""", env={}))  # fmt: skip
    assert medic.db is None
    medic.actions.register("noop", lambda: True)
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        assert "recovery journal cannot write" in httpx.get(f"{url}/-/ready").text
        assert "medic_recovery_journal_up 0.0" in httpx.get(f"{url}/metrics").text
        assert medic.report_failure("network_error").accepted
        assert medic.recovery.wait_idle(10)
        body = httpx.get(f"{url}/api/v1/recoveries").json()
        assert [a["outcome"] for a in body["attempts"]] == ["succeeded"]  # from memory
