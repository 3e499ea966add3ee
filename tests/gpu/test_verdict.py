"""The driver's verdict and NVIDIA's XID catalog: each source alone and combined, the driver
outranking the table, unknown XIDs taking the safe default; the health fields read through
the fake NVML (faithful to nvidia-ml-py) and exported, absent where unsupported."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.gpu import fakenvml
from exporter.gpu.facts import GpuDevice, GpuHealth
from exporter.gpu.reader import read_all
from exporter.gpu.verdict import ACTIONS, verdict
from exporter.gpu.xids import XidClassifier, catalog
from tests.gpu.conftest import FAKE, FakeNvml
from tests.helpers import serving, wait_until
from tests.test_server import value


def device(**health: int | None) -> GpuDevice:
    return GpuDevice(0, "GPU-0", "H100", "550", health=GpuHealth(**health) if health else None)


@pytest.mark.parametrize(("facts", "buckets", "action", "source"), [
    ({"recovery_action": 0}, [], "none", "none"),
    ({"recovery_action": 1}, [], "reset_gpu", "driver"),
    ({"recovery_action": 2}, [], "reboot_node", "driver"),
    ({"recovery_action": 4}, [], "drain_and_reset", "driver"),
    ({"recovery_action": 7}, [], "reboot_node", "driver"),
    ({"recovery_action": 99}, [], "inspect_hardware", "driver"),  # a newer driver's value
    ({"remap_pending": 1}, [], "reset_gpu", "row_remap"),
    ({"remap_failure": 1, "remap_pending": 1}, [], "inspect_hardware", "row_remap"),
    ({}, ["restart_app"], "restart_app", "catalog"),
    ({}, ["reset_gpu", "restart_app"], "reset_gpu", "catalog"),  # the field is unsupported
    ({}, ["ignore"], "none", "none"),
    # The driver outranks the table: its field says nothing is needed of the GPU...
    ({"recovery_action": 0}, ["reset_gpu", "reboot_node"], "none", "none"),
    # ...but the application that hit the fault still restarts.
    ({"recovery_action": 0}, ["restart_app", "reset_gpu"], "restart_app", "catalog"),
    ({"recovery_action": 2}, ["restart_app"], "reboot_node", "driver"),
])  # fmt: skip
def test_each_source_alone_and_combined(
    facts: dict[str, int], buckets: list[str], action: str, source: str
) -> None:
    found = verdict(device(**facts), buckets)
    assert (found.action, found.source) == (action, source), found.detail


def test_reset_required_outranks_a_quiet_field() -> None:
    reset = GpuDevice(0, "GPU-0", "unknown", "550", reset_required=True)
    assert verdict(reset).action == "reset_gpu"
    assert verdict(reset).source == "reset_required"


def test_the_catalog_is_nvidias_with_safe_defaults(caplog: pytest.LogCaptureFixture) -> None:
    rows = catalog()
    assert len(rows) == 172 and rows[31].mnemonic == "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT"
    restart_app = [x for x, e in rows.items() if e.immediate == "RESTART_APP"]
    assert len(restart_app) == 48  # the catalog's most common immediate action (the notes)
    classify = XidClassifier({31: "ignore"})
    assert [classify.bucket(x) for x in (13, 31, 43, 48, 79, 94, 95, 154, 168)] == [
        "restart_app", "ignore", "ignore", "reset_gpu", "reboot_node", "restart_app",
        "reset_gpu", "inspect_hardware", "inspect_hardware"]  # fmt: skip
    assert classify.bucket(999) == "inspect_hardware"  # unknown: a person, never an action
    assert classify.bucket(999) == "inspect_hardware"
    said = [r.message for r in caplog.records if "999" in r.message]
    assert said == ["XID 999 is not in NVIDIA's catalog (edition 2025-10-29): filed as "
                    "inspect_hardware"]  # once  # fmt: skip


def test_health_fields_are_read_and_absent_where_unsupported(fake_nvml: FakeNvml) -> None:
    gpu0, gpu1 = fake_nvml.gpu(0), fake_nvml.gpu(1)
    gpu0.update(recovery_action=1, pcie_replay=7, throttle_reasons=0x48,
                remapped_rows={"correctable": 2, "uncorrectable": 1, "pending": 1},
                ecc={"volatile": {"corrected": 5, "uncorrected": 1}},
                retired_pages={"double_bit": [0x1000, 0x2000]})  # fmt: skip
    for key in ("recovery_action", "remapped_rows", "ecc", "retired_pages", "serial"):
        del gpu1[key]  # an older GPU and driver: NOT_SUPPORTED for each
    fake_nvml.write()
    fakenvml.nvmlInit()
    try:
        first, second = read_all(fakenvml, processes=False)["gpus"]
    finally:
        fakenvml.nvmlShutdown()
    assert first["health"] == {
        "recovery_action": 1, "remap_correctable": 2, "remap_uncorrectable": 1,
        "remap_pending": 1, "remap_failure": 0, "ecc_volatile_corrected": 5,
        "ecc_volatile_uncorrected": 1, "ecc_aggregate_corrected": 0,
        "ecc_aggregate_uncorrected": 0, "retired_single_bit": 0, "retired_double_bit": 2,
        "retired_pending": 0, "pcie_replay": 7, "clock_event_reasons": 0x48,
        "serial": gpu0["serial"],
    }  # fmt: skip
    absent = {k for k, v in second["health"].items() if v is None}
    assert absent == {"recovery_action", "remap_correctable", "remap_uncorrectable",
                      "remap_pending", "remap_failure", "ecc_volatile_corrected",
                      "ecc_volatile_uncorrected", "ecc_aggregate_corrected",
                      "ecc_aggregate_uncorrected", "retired_single_bit", "retired_double_bit",
                      "retired_pending", "serial"}  # fmt: skip


def first_round(tmp_path: Path) -> tuple[Medic, str]:
    """A medic with a gpu check on the fake's 2 GPUs: /metrics after its first round."""
    medic = Medic(parse_config(f"""
data_dir: {tmp_path / 'data'}
checks:
  - {{name: gpu, type: gpu, expected: 2, nvml_module: {FAKE}, interval: 1h}}
""", env={}))  # fmt: skip
    with serving(medic) as url:
        wait_until(lambda: medic.health.results().get("gpu"), what="the first round")
        return medic, httpx.get(f"{url}/metrics").text


def test_a_gpu_that_requires_a_reset_is_one_verdict_and_the_round_goes_on(
    fake_nvml: FakeNvml, tmp_path: Path
) -> None:
    fake_nvml.gpu(1)["reset_required"] = True
    fake_nvml.write()
    medic, text = first_round(tmp_path)
    result = medic.health.results()["gpu"]
    uuid0, uuid1 = fake_nvml.gpu(0)["uuid"], fake_nvml.gpu(1)["uuid"]
    assert not result.ok and "GPU 1 requires a reset" in result.reason
    assert value(text, "medic_gpu_reset_required", gpu="1", uuid=uuid1) == 1
    assert value(text, "medic_gpu_reset_required", gpu="0", uuid=uuid0) == 0
    assert (value(text, "medic_gpu_memory_total_bytes", gpu="0", uuid=uuid0) or 0) > 0  # read
    for gpu, uuid, wanted in (("0", uuid0, "none"), ("1", uuid1, "reset_gpu")):
        one_hot = {a: value(text, "medic_gpu_recovery_action", gpu=gpu, uuid=uuid, action=a)
                   for a in ACTIONS}  # fmt: skip
        assert one_hot == {a: float(a == wanted) for a in ACTIONS}


def test_the_verdict_series_follow_the_xids_and_the_driver(
    fake_nvml: FakeNvml, tmp_path: Path
) -> None:
    """XID 95 (uncontained, RESET_GPU in the table) on GPU 0 whose driver has no recovery
    field: the catalog decides; on GPU 1 the driver's field says none: it outranks."""
    del fake_nvml.gpu(0)["recovery_action"]
    fake_nvml.write()
    medic = Medic(parse_config(f"""
data_dir: {tmp_path / 'data'}
checks:
  - {{name: gpu, type: gpu, expected: 2, nvml_module: {FAKE}, interval: 200ms}}
""", env={}))  # fmt: skip
    uuid0, uuid1 = fake_nvml.gpu(0)["uuid"], fake_nvml.gpu(1)["uuid"]
    with serving(medic) as url:
        wait_until(lambda: medic.xid is not None and medic.xid._up, what="XID watcher up")
        fake_nvml.state["xid_events"] = [{"gpu": 0, "xid": 95}, {"gpu": 1, "xid": 95}]
        fake_nvml.write()

        def action(gpu: str, uuid: str) -> str | None:
            text = httpx.get(f"{url}/metrics").text
            for name in ACTIONS:
                if value(text, "medic_gpu_recovery_action", gpu=gpu, uuid=uuid,
                         action=name) == 1:  # fmt: skip
                    return name
            return None

        wait_until(lambda: action("0", uuid0) == "reset_gpu", what="GPU 0: the catalog's")
        assert action("1", uuid1) == "none"  # the driver's field outranks the table
        fake_nvml.gpu(1)["recovery_action"] = 2  # the driver now asks for a reboot
        fake_nvml.write()
        wait_until(lambda: action("1", uuid1) == "reboot_node", what="GPU 1: the driver's")


def test_the_figures_behind_the_verdict_are_exported(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.gpu(0).update(remapped_rows={"correctable": 3, "pending": 1}, pcie_replay=9,
                            throttle_reasons=0x40, ecc={"aggregate": {"uncorrected": 2}},
                            retired_pages={"single_bit": [1, 2, 3]})  # fmt: skip
    for key in ("remapped_rows", "ecc", "retired_pages", "pcie_replay", "throttle_reasons"):
        del fake_nvml.gpu(1)[key]
    fake_nvml.write()
    _, text = first_round(tmp_path)
    g0 = {"gpu": "0", "uuid": fake_nvml.gpu(0)["uuid"]}
    g1 = {"gpu": "1", "uuid": fake_nvml.gpu(1)["uuid"]}
    assert value(text, "medic_gpu_remapped_rows", **g0, kind="correctable") == 3
    assert value(text, "medic_gpu_row_remap_pending", **g0) == 1
    assert value(text, "medic_gpu_row_remap_failure", **g0) == 0
    assert value(text, "medic_gpu_ecc_errors_total", **g0, kind="uncorrected",
                 counter="aggregate") == 2  # fmt: skip
    assert value(text, "medic_gpu_retired_pages", **g0, cause="single_bit") == 3
    assert value(text, "medic_gpu_pcie_replays_total", **g0) == 9
    assert value(text, "medic_gpu_clock_event_reasons", **g0, reason="hw_thermal_slowdown") == 1
    assert value(text, "medic_gpu_clock_event_reasons", **g0, reason="sw_power_cap") == 0
    for name in ("medic_gpu_remapped_rows", "medic_gpu_ecc_errors_total",
                 "medic_gpu_retired_pages", "medic_gpu_pcie_replays_total",
                 "medic_gpu_clock_event_reasons"):  # fmt: skip
        assert not [line for line in text.splitlines()
                    if line.startswith(name) and f'uuid="{g1["uuid"]}"' in line], name  # fmt: skip


def test_a_driver_refusing_the_field_call_costs_only_those_figures(fake_nvml: FakeNvml) -> None:
    fake_nvml.gpu(0)["field_values_error"] = 2  # INVALID_ARGUMENT: an unknown field id
    fake_nvml.write()
    fakenvml.nvmlInit()
    try:
        reply = read_all(fakenvml, processes=False)
    finally:
        fakenvml.nvmlShutdown()
    first, second = reply["gpus"]
    assert first["memory"] is not None and first["health"]["recovery_action"] is None
    assert first["health"]["serial"] == fake_nvml.gpu(0)["serial"]  # the other calls answer
    assert second["health"]["recovery_action"] == 0
