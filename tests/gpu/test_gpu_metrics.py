"""GPU series through a real server and a real medic process, against the fake NVML."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.gpu.torch_memory import TorchMemoryCheck
from exporter.gpu.xid import XidWatcher
from tests.gpu.conftest import FAKE, FakeNvml
from tests.helpers import MedicProcess, serving, wait_until
from tests.test_server import value, wait_for_metric


def gpu_config(tmp_path: Path, **options: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in options.items())
    return (
        f"data_dir: {tmp_path / 'data'}\n"
        "checks:\n"
        "  - {name: host_memory, type: host_memory, interval: 1s, min_available_ratio: 0}\n"
        f"  - {{name: gpu, type: gpu, expected: 2, nvml_module: {FAKE}{extra}}}\n"
    )


def test_every_gpu_series_with_the_fakes_values(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    medic = Medic(parse_config(gpu_config(tmp_path, processes="true"), env={}))
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        text = httpx.get(f"{url}/metrics").text
    assert value(text, "medic_nvml_up") == 1
    assert value(text, "medic_gpu_count") == 2
    assert value(text, "medic_gpu_expected") == 2
    assert value(text, "medic_check_success", check="gpu") == 1
    for index in (0, 1):
        raw = fake_nvml.gpu(index)
        gpu = {"gpu": str(index), "uuid": raw["uuid"]}
        assert value(text, "medic_gpu_memory_total_bytes", **gpu) == raw["total"]
        assert value(text, "medic_gpu_memory_used_bytes", **gpu) == raw["used"]
        assert value(text, "medic_gpu_memory_free_bytes", **gpu) == raw["free"]
        assert value(text, "medic_gpu_memory_reserved_bytes", **gpu) == raw["reserved"]
        assert value(text, "medic_gpu_utilization_ratio", **gpu) == raw["utilization"] / 100
        assert value(text, "medic_gpu_temperature_celsius", **gpu) == raw["temperature"]
        assert value(text, "medic_gpu_power_watts", **gpu) == raw["power_mw"] / 1000
        assert value(text, "medic_gpu_energy_joules_total", **gpu) == raw["energy_mj"] / 1000
        info = {**gpu, "name": raw["name"], "driver_version": "550.54.15"}
        assert value(text, "medic_gpu_info", **info) == 1
        proc = raw["processes"][0]
        labels = {**gpu, "pid": str(proc["pid"]), "process_name": proc["name"]}
        assert value(text, "medic_gpu_process_memory_bytes", **labels) == proc["used"]


def test_processes_are_off_by_default(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    medic = Medic(parse_config(gpu_config(tmp_path), env={}))
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        assert "medic_gpu_process_memory_bytes" not in httpx.get(f"{url}/metrics").text


def test_xid_events_are_counted_per_gpu_and_code(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    medic = Medic(parse_config(gpu_config(tmp_path), env={}))
    with serving(medic) as url:
        wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, what="ready")
        wait_until(lambda: medic.xid is not None and medic.xid._up, what="XID watcher up")
        fake_nvml.state["xid_events"] = [{"gpu": 1, "xid": 79}, {"gpu": 1, "xid": 79},
                                         {"gpu": 0, "xid": 48}]  # fmt: skip
        fake_nvml.write()
        uuid1, uuid0 = fake_nvml.gpu(1)["uuid"], fake_nvml.gpu(0)["uuid"]

        def counted() -> bool:  # events arrive one by one; wait for all three
            text = httpx.get(f"{url}/metrics").text
            xid79 = value(
                text,
                "medic_gpu_xid_errors_total",
                gpu="1",
                uuid=uuid1,
                xid="79",
                bucket="reboot_node",
            )  # fallen off the bus: RESTART_BM
            xid48 = value(
                text,
                "medic_gpu_xid_errors_total",
                gpu="0",
                uuid=uuid0,
                xid="48",
                bucket="reset_gpu",
            )  # double-bit ECC, alone: RESET_GPU
            return (xid79, xid48) == (2, 1)

        wait_until(counted, what="XID 79 twice on GPU 1 and XID 48 once on GPU 0")


def test_xid_counting_goes_on_while_collection_fails(fake_nvml: FakeNvml) -> None:
    changes: list[int] = []
    watcher = XidWatcher(FAKE, on_change=lambda: changes.append(1))
    watcher.start()
    try:
        wait_until(lambda: watcher._up, what="XID watcher up")
        fake_nvml.state["hang"] = ["nvmlDeviceGetMemoryInfo"]  # collection would hang now
        fake_nvml.state["xid_events"] = [{"gpu": 0, "xid": 31}]
        fake_nvml.write()
        wait_until(lambda: changes, what="the XID to be counted and announced")
        assert watcher.counts() == {(0, fake_nvml.gpu(0)["uuid"], 31): 1}
        assert changes == [1]
    finally:
        watcher.stop()


def test_a_hung_nvml_leaves_metrics_serving_and_the_check_stuck(
    fake_nvml: FakeNvml, tmp_path: Path
) -> None:
    text = gpu_config(tmp_path, interval="1s", timeout="500ms")
    medic = Medic(parse_config(text, env={}))
    with serving(medic) as url:
        wait_for_metric(url, "medic_gpu_count", 2)
        fake_nvml.state["hang"] = ["nvmlDeviceGetUtilizationRates"]
        fake_nvml.write()
        stuck = wait_for_metric(url, "medic_check_stuck", 1, check="gpu")
        assert value(stuck, "medic_check_success", check="gpu") == 0
        assert value(stuck, "medic_gpu_count") is None  # no stale GPU series while stuck
        with httpx.Client(timeout=1.0) as client:  # a bound, not a timing assertion
            for _ in range(50):
                assert client.get(f"{url}/metrics").status_code == 200
        health = httpx.get(f"{url}/api/v1/health").json()
        gpu = next(c for c in health["checks"] if c["name"] == "gpu")
        assert gpu["stuck"] is True and gpu["reason"] in ("timeout", "stuck")
        fake_nvml.state["hang"] = []
        fake_nvml.write()
        wait_for_metric(url, "medic_check_stuck", 0, check="gpu")
        wait_for_metric(url, "medic_gpu_count", 2)


def test_a_lost_gpu_drops_from_metrics_and_comes_back(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    medic = Medic(parse_config(gpu_config(tmp_path, interval="1s"), env={}))
    uuid = fake_nvml.gpu(1)["uuid"]
    with serving(medic) as url:
        wait_for_metric(url, "medic_gpu_count", 2)
        fake_nvml.gpu(1)["lost"] = True
        fake_nvml.write()
        text = wait_for_metric(url, "medic_gpu_count", 1)
        assert value(text, "medic_gpu_memory_total_bytes", gpu="1", uuid=uuid) is None
        assert value(text, "medic_check_success", check="gpu") == 0
        fake_nvml.gpu(1)["lost"] = False
        fake_nvml.write()
        text = wait_for_metric(url, "medic_gpu_count", 2)
        assert value(text, "medic_gpu_memory_total_bytes", gpu="1", uuid=uuid) is not None


def test_sigterm_exits_promptly_while_nvml_hangs(
    fake_nvml: FakeNvml, tmp_path: Path, medic_process: Callable[..., MedicProcess]
) -> None:
    config = tmp_path / "medic.yml"
    config.write_text(gpu_config(tmp_path, interval="1s", timeout="300ms"))
    fake_nvml.state["hang"] = ["nvmlDeviceGetCount"]
    fake_nvml.write()
    proc = medic_process(["--config", str(config)])
    url = proc.wait_listening()
    wait_for_metric(url, "medic_check_stuck", 1, check="gpu")
    assert proc.terminate(timeout=5) == 0


def test_torch_memory_only_where_cuda_is_already_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert TorchMemoryCheck()().facts == ()  # standalone: torch is never imported
    assert "torch" not in sys.modules

    cuda = types.SimpleNamespace(
        is_initialized=lambda: False,
        device_count=lambda: 2,
        memory_allocated=lambda i: (i + 1) * 2**30,
        memory_reserved=lambda i: (i + 2) * 2**30,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert TorchMemoryCheck()().facts == ()  # imported, but this process never used CUDA
    cuda.is_initialized = lambda: True
    facts = TorchMemoryCheck()().facts
    assert [(f.device, f.allocated, f.reserved) for f in facts] == [  # type: ignore[attr-defined]
        ("cuda:0", 2**30, 2 * 2**30),
        ("cuda:1", 2 * 2**30, 3 * 2**30),
    ]
