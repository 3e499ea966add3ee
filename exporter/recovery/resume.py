"""What a start does with the episodes the last medic left open.

A queued episode is queued again. A running one continues its ladder where it stood; its
rung in flight, if any, decides how:

- a command whose process still runs (same pid, start time and boot): **adopted**, waited
  for, then verified; never started again beside itself;
- a command that finished while medic was down (its exit status is on disk): taken as
  finished, then verified;
- a command the journal proves never ran (no pid recorded, or its gate never opened): run now;
- anything else (an in-process or HTTP action, a command killed midway): **interrupted**, it
  may have run, so it is not started again; `recovery.interrupted` decides what follows.
"""

from __future__ import annotations

from pathlib import Path

from exporter.config.recovery import CommandActionConfig, RecoveryConfig
from exporter.recovery import launch
from exporter.recovery.episode import Episode
from exporter.recovery.types import QUEUED, Outcome

_FATES = {"running": "adopted", "finished": "finished_while_down", "killed": "interrupted",
          "never_ran": "never_ran"}  # fmt: skip


def plan(episode: Episode, config: RecoveryConfig, runs: Path) -> str:
    """Decide (in episode.resume) what happens to the episode's rung in flight; returns how
    the episode is resumed, for the metrics."""
    if episode.state == QUEUED:
        return "requeued"
    attempt = episode.attempt
    if attempt is None:
        return "continued"
    if attempt.outcome is not Outcome.RUNNING:
        how = "interrupted"  # closed as such by a medic that stopped during an in-process action
    elif isinstance(config.actions.get(attempt.action), CommandActionConfig):
        how = _FATES[launch.fate(episode.launch, launch.RunFiles.of(runs, attempt.id))]
    else:
        how = "interrupted"
    episode.resume = how
    return how


def stale_run_files(runs: Path, keep: set[int]) -> list[Path]:
    """Files of finished attempts a crash left in the runs directory."""
    if not runs.is_dir():
        return []
    found = []
    for path in runs.iterdir():
        stem = path.name.split(".", 1)[0]
        if stem.isdigit() and int(stem) not in keep:
            found.append(path)
    return found
