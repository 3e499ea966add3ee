"""Journal retention, and a medic whose data directory cannot hold a journal."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from exporter.app import Medic
from exporter.config import parse_config
from exporter.recovery.journal import Journal
from exporter.recovery.types import Outcome, RecoveryAttempt
from exporter.storage.sqlite import Database
from tests.helpers import FakeClock, serving, wait_until
from tests.recovery.conftest import recording


def record(journal: Journal, started: float) -> None:
    journal.record(RecoveryAttempt(0, "network_error", "noop", "app", started,
                                   Outcome.SUCCEEDED, ended=started))  # fmt: skip


def test_retention_by_age_and_by_count(tmp_path: Path, monkeypatch) -> None:
    from exporter.recovery import journal as journal_module

    monkeypatch.setattr(journal_module, "PRUNE_STEP", 1)  # trim at every new attempt
    clock = FakeClock()
    db = Database(tmp_path / "medic.db")
    journal = Journal(db, clock, max_attempts=2)
    journal.open()
    now = clock.time()
    for age in (40 * 86400, 31 * 86400, 3600, 60, 1):
        record(journal, now - age)
    journal.tombstone("old")
    journal.prune(max_age=30 * 86400)
    db.settle()
    _, total = journal.attempts()
    assert total == 2
    starts = sorted(row[0] for row in db.query("SELECT started FROM recovery_attempts"))
    assert starts == [now - 60, now - 1]  # the newest two of those within 30 days
    db.close()


def test_retention_never_drops_a_rung_still_in_flight(tmp_path: Path, monkeypatch) -> None:
    from exporter.recovery import journal as journal_module

    monkeypatch.setattr(journal_module, "PRUNE_STEP", 1)
    clock = FakeClock()
    db = Database(tmp_path / "medic.db")
    journal = Journal(db, clock, max_attempts=3)
    journal.open()
    journal.record(
        RecoveryAttempt(0, "network_error", "restart", "alert", clock.time() - 40 * 86400)
    )
    for n in range(20):  # a flood of later attempts, and an age beyond max_age
        record(journal, clock.time() - n)
    journal.prune(max_age=30 * 86400)
    db.settle()
    outcomes = [row[0] for row in db.query("SELECT outcome FROM recovery_attempts ORDER BY id")]
    assert outcomes == ["running", "succeeded", "succeeded", "succeeded"]  # a restart needs it
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


def test_a_flood_keeps_the_journal_within_its_bound_and_closed_episodes_leave_memory(
    start_medic, monkeypatch
) -> None:
    from exporter.recovery import journal as journal_module
    from exporter.recovery.types import FailureEvent

    monkeypatch.setattr(journal_module, "MEMORY_CLOSED", 300)
    medic = start_medic("""
recovery:
  cooldown: {base: 0s}
  queue_size: 5000
  max_waiting_per_type: 5000
  rate_limit: {actions: 100000}
  retention: {max_count: 500, max_episodes: 800}
  actions:
    noop: {type: in_process}
  failures:
    network_error: {ladder: [noop]}
""")
    ran = recording(medic)
    db = medic.db
    assert db is not None

    def rows(table: str) -> int:
        return int(db.query(f"SELECT COUNT(*) FROM {table}")[0][0])

    most = {"recovery_attempts": 0, "recovery_episodes": 0}
    for n in range(3000):
        submitted = medic.recovery.submit(FailureEvent("network_error", "api", {}, f"k{n}"))
        assert submitted.accepted
        if n % 250 == 0:
            most = {table: max(seen, rows(table)) for table, seen in most.items()}
    assert medic.recovery.wait_idle(30)
    db.settle()
    most = {table: max(seen, rows(table)) for table, seen in most.items()}
    assert len(ran) == 3000
    # Trimmed as it goes: never more than the bound plus one step (plus what is open).
    step = journal_module.PRUNE_STEP
    assert most["recovery_attempts"] <= 500 + step, most
    assert most["recovery_episodes"] <= 800 + step + 5000, most  # open ones always stay
    assert rows("recovery_attempts") <= 500 + step and rows("recovery_episodes") <= 800 + step
    # Closed episodes left memory; the journal still answers dedup for them...
    assert medic.recovery.claims.closed_in_memory <= 300
    again = medic.recovery.submit(FailureEvent("network_error", "api", {}, "k2500"))
    assert again.result == "duplicate"
    # ...until retention drops them: the documented dedup horizon (max_episodes).
    gone = medic.recovery.submit(FailureEvent("network_error", "api", {}, "k10"))
    assert gone.result == "accepted"
    assert medic.recovery.wait_idle(10)
    assert ran.count("k2500") == 1 and ran.count("k10") == 2


def test_history_escapes_control_characters_from_action_output(tmp_path: Path) -> None:
    from exporter import cli_history
    from exporter.config import Config

    db = Database(tmp_path / "medic.db")
    journal = Journal(db, FakeClock())
    journal.open()
    hostile = "ok\x1b]0;pwned\x07\x1b[2J\r\nnext\x9b"
    journal.record(RecoveryAttempt(0, "network_error", "noop", "app", 1.0, Outcome.FAILED,
                                   ended=2.0, detail=hostile))  # fmt: skip
    db.flush()
    db.close()
    out = cli_history.history(Config(data_dir=tmp_path), None, None, 10)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out
    assert "ok\\x1b]0;pwned\\x07\\x1b[2J" in out
    as_json = json.loads(cli_history.history(Config(data_dir=tmp_path), None, None, 10, "json"))
    assert as_json["total"] == 1 and as_json["attempts"][0]["detail"] == hostile


def test_after_a_restart_the_journal_still_answers_for_keys_memory_does_not_hold(
    start_medic, monkeypatch
) -> None:
    from exporter.recovery import journal as journal_module
    from exporter.recovery.bloom import Forgotten
    from exporter.recovery.types import FailureEvent

    monkeypatch.setattr(journal_module, "MEMORY_CLOSED", 50)
    config = """
recovery:
  cooldown: {base: 1h}
  queue_size: 1000
  max_waiting_per_type: 1000
  actions:
    noop: {type: in_process}
  failures:
    network_error: {ladder: [noop]}
"""
    first = start_medic(config)
    first.actions.register("noop", lambda: True)
    for n in range(400):
        assert first.recovery.submit(FailureEvent("network_error", "api", {}, f"r{n}")).accepted
    assert first.recovery.wait_idle(20)
    first.stop()
    assert first.db is not None
    first.db.close()
    again = start_medic(config)  # the same data directory
    assert again.recovery.claims.closed_in_memory <= 51
    for key in ("r0", "r7", "r200", "r399"):  # old ones only the journal holds, and new
        result = again.recovery.submit(FailureEvent("network_error", "api", {}, key)).result
        assert result == "duplicate", key
    assert again.recovery.submit(FailureEvent("network_error", "api", {}, "new")).accepted
    # The filter: a certain "no" for keys never added, "maybe" for every key added.
    seen = Forgotten(1000)
    for n in range(1000):
        seen.add(f"s{n}")
    assert all(f"s{n}" in seen for n in range(1000))
    assert sum(f"other{n}" in seen for n in range(10_000)) < 300  # about 1% false "maybe"
