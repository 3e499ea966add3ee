"""Targets: rungs on one target never run at once, whichever failure type asks, and the
target's cooldown and budget of disruptive actions hold across failure types. Counted by
the real effect: the lines the restart command appends to a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from exporter.app import Medic
from tests.recovery.conftest import attempts, settled

TYPES = ("vram_exhaustion", "model_loading_failure", "hardware_optimization_failure")


def config(restarts: Path, targets: str = "") -> str:
    ladders = "".join(f"    {t}: {{ladder: [restart_vllm], settle_delay: 0s}}\n" for t in TYPES)
    return f"""
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart_vllm:
      type: command
      target: vllm.service
      argv: [sh, -c, "echo restart >> {restarts} && sleep 1"]
{targets}  failures:
{ladders}"""


def outcomes(medic: Medic) -> list[str]:
    return sorted(a.outcome.value for a in attempts(medic) if a.action == "restart_vllm")


def test_three_failure_types_restart_one_target_once(
    start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    restarts = tmp_path / "restarts"
    medic = start_medic(config(restarts))
    for failure_type in TYPES:  # within the same second: an XID, a missing file, VRAM
        assert medic.report_failure(failure_type).accepted
    found = settled(medic, 3)
    assert restarts.read_text().splitlines() == ["restart"]
    assert outcomes(medic) == ["skipped_target_busy", "skipped_target_busy", "succeeded"]
    busy = [a for a in found if a.outcome.value == "skipped_target_busy"]
    assert all(a.detail.startswith("vllm.service is being acted on by episode ") for a in busy)
    counted = medic.recovery.snapshot()["attempts"]
    assert sum(n for (_, action, outcome), n in counted.items()
               if action == "restart_vllm" and outcome == "skipped_target_busy") == 2  # fmt: skip


def test_the_targets_budget_holds_over_its_window(
    start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    restarts = tmp_path / "restarts"
    limits = "  targets:\n    vllm.service: {budget: {actions: 1, per: 1h}}\n"
    medic = start_medic(config(restarts, limits))
    assert medic.report_failure("vram_exhaustion").accepted
    settled(medic, 1)
    assert medic.report_failure("model_loading_failure").accepted  # another type, later
    [*_, second] = settled(medic, 2)
    assert second.outcome.value == "skipped_target_budget"
    assert second.detail == "vllm.service had 1 disruptive actions in 3600s"
    assert restarts.read_text().splitlines() == ["restart"]


def test_the_target_rests_after_a_disruption(
    start_medic: Callable[[str], Medic], tmp_path: Path
) -> None:
    restarts = tmp_path / "restarts"
    medic = start_medic(config(restarts, "  targets:\n    vllm.service: {cooldown: 15m}\n"))
    assert medic.report_failure("vram_exhaustion").accepted
    settled(medic, 1)
    assert medic.report_failure("hardware_optimization_failure").accepted
    [*_, second] = settled(medic, 2)
    assert second.outcome.value == "skipped_target_cooldown"
    assert second.detail.startswith("vllm.service rests for ")
    assert restarts.read_text().splitlines() == ["restart"]
