"""Escalation by history, per GPU serial, in the journal: the same fault surviving N resets
escalates to a node reboot, surviving N reboots to a person; each escalation journaled,
counted and in the verdict; `medic gpu history` shows it."""

from __future__ import annotations

import json
from pathlib import Path

from exporter.cli import main
from exporter.gpu.facts import GpuDevice, GpuHealth
from exporter.gpu.history import GpuHistory
from exporter.gpu.verdict import Verdict
from exporter.gpu.xids import XidClassifier
from exporter.metrics.gpu import VerdictCollector
from exporter.storage.sqlite import DB_FILE, Database

SERIAL = "1652922000123"
GPU = GpuDevice(0, "GPU-0", "H100", "550", serial=SERIAL, health=GpuHealth(recovery_action=0))
RESET = Verdict("reset_gpu", "driver", "the driver's recovery action is 1")
FINE = Verdict("none", "none", "nothing to do")


class Boot:
    def __init__(self) -> None:
        self.id = "boot-1"

    def __call__(self) -> str:
        return self.id


def kinds(history: GpuHistory) -> list[str]:
    return [f"{e.kind}:{e.fault}" if e.fault else e.kind for e in history.entries(SERIAL)]


def test_a_fault_that_survives_resets_then_reboots_escalates(tmp_path: Path) -> None:
    db, boot = Database(tmp_path / DB_FILE), Boot()
    try:
        history = GpuHistory(db, resets=2, reboots=2, boot_id=boot)
        for verdict in (RESET, FINE, RESET, FINE, RESET):  # fault, reset, again x2
            history.observe([(GPU, verdict, {})])
        assert kinds(history) == [
            "fault:driver:reset_gpu", "reset", "fault:driver:reset_gpu", "reset",
            "fault:driver:reset_gpu", "escalation:driver:reset_gpu"]  # fmt: skip
        assert history.escalated == {SERIAL: "reboot_node"}
        assert history.escalations == {"reboot_node": 1, "inspect_hardware": 0}
        # The node reboots (a new boot id), medic starts again on the same journal.
        for _ in range(2):
            assert db.flush()  # what a stopping medic does
            boot.id += "+"
            history = GpuHistory(db, resets=2, reboots=2, boot_id=boot)
            assert history.escalated == {SERIAL: "reboot_node"}  # read back from the journal
            history.observe([(GPU, RESET, {})])  # the same fault once more
        assert kinds(history)[-5:] == [
            "reboot", "fault:driver:reset_gpu", "reboot", "fault:driver:reset_gpu",
            "escalation:driver:reset_gpu"]  # fmt: skip
        assert history.escalated == {SERIAL: "inspect_hardware"}
        assert history.escalations["inspect_hardware"] == 1
    finally:
        db.close()


def test_xids_count_as_faults_and_a_catalog_verdict_is_no_reset(tmp_path: Path) -> None:
    history = GpuHistory(None, resets=1, reboots=1, boot_id=lambda: "b")
    catalog = Verdict("reset_gpu", "catalog", "a recent XID's catalog action is reset_gpu")
    history.observe([(GPU, catalog, {95: 1})])
    history.observe([(GPU, FINE, {95: 1})])  # aged out of its window: not a reset
    history.observe([(GPU, catalog, {95: 3})])  # two more XID 95: one new fault record
    assert kinds(history) == ["fault:xid:95", "fault:xid:95"]
    assert history.escalated == {}


def test_the_verdict_shows_the_escalation() -> None:
    history = GpuHistory(None, boot_id=lambda: "b")
    history.escalated[SERIAL] = "reboot_node"
    collector = VerdictCollector(lambda: [GPU], None, XidClassifier(), 3600.0, history)
    [(_, found)] = collector.verdicts()
    assert (found.action, found.source) == ("reboot_node", "history")


def test_gpu_history_command(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    db = Database(tmp_path / "data" / DB_FILE)
    try:
        history = GpuHistory(db, resets=1, boot_id=lambda: "b")
        for verdict in (RESET, FINE, RESET):
            history.observe([(GPU, verdict, {})])
    finally:
        db.close()
    config = tmp_path / "medic.yml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    assert main(["gpu", "history", SERIAL, "--config", str(config), "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["fault", "reset", "fault", "escalation"]
    assert rows[-1]["detail"] == "driver:reset_gpu survived 1 resets and 0 reboots: reboot_node"
    assert main(["gpu", "history", "--config", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SERIAL", "WHEN", "KIND", "FAULT", "DETAIL"] and len(table) == 5


def test_a_repeated_xid_after_resets_escalates() -> None:
    """XID 95 (uncontained, a reset) with the driver asking for a reset; the reset clears
    the driver's verdict; the same XID comes back after each of N resets: a node reboot."""
    history = GpuHistory(None, resets=2, reboots=2, boot_id=lambda: "b")
    for xid95 in range(1, 4):  # the XID's count: one more each time
        history.observe([(GPU, RESET, {95: xid95})])  # the XID, the driver's verdict
        history.observe([(GPU, FINE, {95: xid95})])  # reset: the verdict cleared
    assert [k for k in kinds(history) if k.startswith(("fault:xid", "reset", "escalation"))] == [
        "fault:xid:95", "reset", "fault:xid:95", "reset", "fault:xid:95",
        "escalation:xid:95", "reset"]  # fmt: skip
    assert history.escalated == {SERIAL: "reboot_node"}
