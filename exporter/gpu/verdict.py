"""One recovery verdict per GPU, merged from what the driver says and what the XID catalog
says, with the driver outranking the catalog (the notes, "The driver outranks a table").

The driver speaks through its recovery-action field (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION),
NVML_ERROR_RESET_REQUIRED, and row remapping (a failure is an RMA criterion; a pending
remap is applied at the next reset). When the field is readable, a GPU-level action (reset,
reboot) comes from the driver alone: the catalog then adds only `restart_app`, the verdict
on the application that hit the fault, which the driver's field does not cover. Without the
field (older drivers and GPUs) the catalog's buckets for the XIDs seen recently decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from exporter.gpu.facts import GpuDevice

Action = Literal[
    "none", "restart_app", "drain_p2p", "drain_and_reset", "reset_gpu", "bus_reset",
    "recover_imex_domain", "reboot_node", "inspect_hardware",
]  # fmt: skip
ACTIONS: tuple[str, ...] = get_args(Action)
"""The gauge's `action` values, mildest first (the order of severity)."""

DRIVER_ACTIONS: dict[int, Action] = {
    0: "none", 1: "reset_gpu", 2: "reboot_node", 3: "drain_p2p", 4: "drain_and_reset",
    5: "recover_imex_domain", 6: "bus_reset", 7: "reboot_node",
}  # fmt: skip
"""NVML_GPU_RECOVERY_ACTION_* (nvidia-ml-py 13.x); a newer value is inspect_hardware."""

BUCKET_ACTIONS: dict[str, Action] = {
    "restart_app": "restart_app", "reset_gpu": "reset_gpu", "reboot_node": "reboot_node",
    "inspect_hardware": "inspect_hardware", "ignore": "none",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Verdict:
    """What this GPU needs, and who said so (driver, reset_required, row_remap, catalog)."""

    action: Action
    source: str
    detail: str


def _worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: ACTIONS.index(v.action))


def verdict(device: GpuDevice, buckets: Iterable[str] = ()) -> Verdict:
    """The GPU's verdict from its device facts and the buckets of its recent XIDs."""
    health = device.health
    said = [Verdict("none", "none", "nothing to do")]
    if device.reset_required:
        said.append(Verdict("reset_gpu", "reset_required", "NVML answers RESET_REQUIRED"))
    field = None if health is None else health.recovery_action
    if field is not None:
        action = DRIVER_ACTIONS.get(field, "inspect_hardware")
        said.append(Verdict(action, "driver", f"the driver's recovery action is {field}"))
    if health is not None and health.remap_failure:
        said.append(Verdict("inspect_hardware", "row_remap", "a row remapping failed (RMA)"))
    elif health is not None and health.remap_pending:
        said.append(Verdict("reset_gpu", "row_remap", "a row remap waits for a reset"))
    for bucket in set(buckets):
        action = BUCKET_ACTIONS.get(bucket, "inspect_hardware")
        if field is not None and action not in ("restart_app", "none"):
            continue  # the driver's own field outranks the table for the GPU
        said.append(Verdict(action, "catalog", f"a recent XID's catalog action is {bucket}"))
    return _worst(said)
