"""Evidence before disruption: before a disruptive rung about a GPU runs, what a reset would
wipe (volatile ECC counts, remap state, clock-event reasons, the processes on the GPU, the
XIDs seen, the verdict) is in the journal with its attempt, committed before the action
starts (the action itself reads it back from the database: the real effect)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from exporter.app import Medic
from tests.gpu.conftest import FAKE, FakeNvml
from tests.helpers import wait_until
from tests.recovery.conftest import settled

# The actions read their own attempt's evidence from the journal (sqlite3), so what they
# find is what was committed before they started; the first (non-disruptive) one fails, so
# that the ladder goes on to the disruptive one.
READ_BACK = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
row = db.execute("SELECT body FROM recovery_evidence WHERE attempt_id = ?",
                 (int(os.environ["MEDIC_ATTEMPT"]),)).fetchone()
open(sys.argv[2], "a").write((row[0] if row else "NONE") + "\\n")
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


def start(tmp_path: Path, start_medic: Callable[[str], Medic]) -> Medic:
    (tmp_path / "read_back.py").write_text(READ_BACK)
    return start_medic(f"""
checks:
  - {{name: gpu, type: gpu, interval: 1h, processes: true, nvml_module: {FAKE}}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    reset_gpu_0:
      type: command
      argv: [{sys.executable}, {tmp_path / 'read_back.py'}, {tmp_path / 'data' / 'medic.db'},
             {tmp_path / 'found'}]
    note: {{type: command, disruptive: false,
            argv: [{sys.executable}, {tmp_path / 'read_back.py'},
                   {tmp_path / 'data' / 'medic.db'}, {tmp_path / 'found'}, '1']}}
  failures:
    gpu_fault: {{ladder: [note, reset_gpu_0], settle_delay: 0s}}
""")  # fmt: skip


def test_the_evidence_is_committed_before_the_disruptive_rung(
    fake_nvml: FakeNvml, tmp_path: Path, start_medic: Callable[[str], Medic]
) -> None:
    fake_nvml.gpu(0).update(ecc={"volatile": {"corrected": 12, "uncorrected": 1}},
                            remapped_rows={"pending": 1}, throttle_reasons=0x40)  # fmt: skip
    fake_nvml.write()
    medic = start(tmp_path, start_medic)
    wait_until(lambda: medic.health.results().get("gpu"), what="the first GPU round")
    uuid = fake_nvml.gpu(0)["uuid"]
    labels = {"gpu": "0", "uuid": uuid}
    assert medic.report_failure("gpu_fault", labels=labels).accepted
    note, reset = settled(medic, 2, failure_type="gpu_fault")[:2]
    assert note.action == "note" and reset.action == "reset_gpu_0"
    lines = (tmp_path / "found").read_text().splitlines()
    assert lines[0] == "NONE"  # the non-disruptive rung takes none
    evidence = json.loads(lines[1])  # read by the action itself: it was there first
    assert evidence == medic.journal.evidence(reset.id)
    [gpu] = evidence["gpus"]  # the GPU the event names
    assert (gpu["index"], gpu["uuid"]) == (0, uuid)
    assert gpu["health"]["ecc_volatile_corrected"] == 12
    assert gpu["health"]["ecc_volatile_uncorrected"] == 1
    assert gpu["health"]["remap_pending"] == 1
    assert gpu["health"]["clock_event_reasons"] == 0x40
    assert gpu["processes"] == [{"pid": 1000, "name": "python3",
                                 "used": fake_nvml.gpu(0)["used"]}]  # fmt: skip
    assert gpu["verdict"]["action"] == "reset_gpu"  # the pending remap
    assert evidence["xids"] == []  # none seen: the list is there, and empty
    # An event about no GPU: no evidence, even for the disruptive rung.
    assert medic.report_failure("gpu_fault", labels={"host": "x"}).accepted
    settled(medic, 4, failure_type="gpu_fault")
    assert (tmp_path / "found").read_text().splitlines()[2:] == ["NONE", "NONE"]
