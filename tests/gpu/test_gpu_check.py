"""GpuCheck against the fake NVML in real helper processes, and the real binding here."""

from __future__ import annotations

import pytest

from exporter.checks.runner import CallStuck, CallTimeout
from exporter.gpu import check as check_module
from exporter.gpu.check import GpuCheck
from exporter.gpu.facts import GpuDevice, NvmlState
from exporter.helper import WorkerProcess
from tests.gpu.conftest import FAKE, FakeNvml
from tests.helpers import FakeClock, wait_until


def devices(observation) -> list[GpuDevice]:
    return [f for f in observation.facts if isinstance(f, GpuDevice)]


def nvml_state(observation) -> NvmlState:
    return next(f for f in observation.facts if isinstance(f, NvmlState))


@pytest.fixture
def check():
    created: list[GpuCheck] = []

    def make(**options) -> GpuCheck:
        options.setdefault("nvml_module", FAKE)
        options.setdefault("timeout", 5.0)
        gpu = GpuCheck(**options)
        created.append(gpu)
        return gpu

    yield make
    for gpu in created:
        gpu.close()


def test_every_field_with_memory_v2_adding_up(fake_nvml: FakeNvml, check) -> None:
    observation = check(expected=2)()
    assert observation.problems == ()
    state = nvml_state(observation)
    assert (state.up, state.count, state.expected, state.driver) == (True, 2, 2, "550.54.15")
    first, second = devices(observation)
    raw = fake_nvml.gpu(1)
    assert second.uuid == raw["uuid"] and second.index == 1
    assert second.name == "NVIDIA H100 80GB HBM3" and second.driver == "550.54.15"
    memory = (second.memory_total, second.memory_used, second.memory_free, second.memory_reserved)
    assert memory == (raw["total"], raw["used"], raw["free"], raw["reserved"])
    for gpu in (first, second):
        assert gpu.memory_used + gpu.memory_free + gpu.memory_reserved == gpu.memory_total  # type: ignore[operator]
    assert second.utilization == raw["utilization"] / 100
    assert second.temperature == raw["temperature"]
    assert second.power_watts == raw["power_mw"] / 1000
    assert second.energy_joules == raw["energy_mj"] / 1000
    assert second.processes is None  # per-process memory is opt-in


def test_memory_v1_fallback_counts_reserved_inside_used(fake_nvml: FakeNvml, check) -> None:
    fake_nvml.state["memory_v2"] = False
    fake_nvml.write()
    gpu = devices(check()())[0]
    raw = fake_nvml.gpu(0)
    assert gpu.memory_reserved == 0
    assert gpu.memory_used == raw["used"] + raw["reserved"]
    assert gpu.memory_used + gpu.memory_free == gpu.memory_total  # type: ignore[operator]


def test_unsupported_fields_are_absent_and_the_rest_stays(fake_nvml: FakeNvml, check) -> None:
    fake_nvml.gpu(0)["unsupported"] = ["temperature", "power", "energy"]
    fake_nvml.write()
    observation = check()()
    assert observation.problems == ()
    gpu = devices(observation)[0]
    assert (gpu.temperature, gpu.power_watts, gpu.energy_joules) == (None, None, None)
    assert gpu.memory_total is not None and gpu.utilization is not None


def test_process_memory_when_enabled(fake_nvml: FakeNvml, check) -> None:
    fake_nvml.gpu(0)["processes"] = [
        {"pid": 4242, "name": "/usr/bin/python3", "used": 3 * 2**30},
        {"pid": 4243, "name": "tts-worker", "used": None},
    ]
    fake_nvml.write()
    gpu = devices(check(processes=True)())[0]
    assert gpu.processes is not None
    assert [(p.pid, p.name, p.used) for p in gpu.processes] == [
        (4242, "python3", 3 * 2**30),
        (4243, "tts-worker", None),
    ]


def test_nvml_missing_on_this_machine_is_not_a_failure_unless_gpus_are_expected(check) -> None:
    observation = check(nvml_module="pynvml")()  # the real binding; this machine has no driver
    assert nvml_state(observation).up is False
    assert observation.problems == () and devices(observation) == []
    expecting = check(nvml_module="pynvml", expected=4)()
    assert expecting.problems[0].startswith("NVML unavailable: NVMLError_LibraryNotFound")


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "Uninitialized"),
        (9, "DriverNotLoaded"),
        (15, "GpuIsLost"),
        (18, "LibRmVersionMismatch"),
        (28, "GpuNotFound"),
    ],
)
def test_init_lifecycle_errors_fail_the_round_and_back_off(
    fake_nvml: FakeNvml, check, code: int, name: str
) -> None:
    clock = FakeClock()
    gpu = check(clock=clock, expected=2)
    fake_nvml.state["init_error"] = code
    fake_nvml.write()
    observation = gpu()
    assert nvml_state(observation).up is False and devices(observation) == []
    assert f"NVMLError_{name}" in observation.problems[0]
    fake_nvml.state["init_error"] = None
    fake_nvml.write()
    during_backoff = gpu()  # NVML is not touched again before the backoff ends
    assert nvml_state(during_backoff).up is False
    assert "next try in 1s" in during_backoff.problems[0]
    clock.advance(1.5)
    recovered = gpu()
    assert recovered.problems == () and nvml_state(recovered).count == 2


def test_a_lost_gpu_drops_its_series_and_returns_after_reinit(fake_nvml: FakeNvml, check) -> None:
    gpu = check(expected=2)
    assert len(devices(gpu())) == 2
    fake_nvml.gpu(1)["lost"] = True
    fake_nvml.write()
    lost = gpu()
    assert [d.index for d in devices(lost)] == [0]
    assert nvml_state(lost).count == 1
    assert any("GPU 1: NVMLError_GpuIsLost" in p for p in lost.problems)
    assert any("1 GPUs answer, 2 expected" in p for p in lost.problems)
    fake_nvml.gpu(1)["lost"] = False
    fake_nvml.write()
    back = gpu()
    assert back.problems == () and len(devices(back)) == 2


def test_a_gpu_that_disappears_lowers_the_count(fake_nvml: FakeNvml, check) -> None:
    gpu = check(expected=2)
    fake_nvml.gpu(0)["present"] = False
    fake_nvml.write()
    observation = gpu()
    assert nvml_state(observation).count == 1
    assert [d.uuid for d in devices(observation)] == [fake_nvml.gpu(1)["uuid"]]


def test_memory_threshold(fake_nvml: FakeNvml, check) -> None:
    raw = fake_nvml.gpu(1)
    raw["used"], raw["free"] = raw["total"] - raw["reserved"] - 2**20, 2**20
    fake_nvml.write()
    observation = check(max_memory_used_ratio=0.9)()
    assert observation.problems == ("GPU 1 memory 100% used, above 90%",)


def test_a_hung_call_is_abandoned_stuck_capped_and_recovers(fake_nvml: FakeNvml, check) -> None:
    gpu = check(timeout=0.5, max_stuck=2)
    assert len(devices(gpu())) == 2  # helper started and NVML initialised
    fake_nvml.state["hang"] = ["nvmlDeviceGetMemoryInfo"]
    fake_nvml.write()
    with pytest.raises(CallTimeout):
        gpu()
    assert gpu.stuck()
    with pytest.raises(CallTimeout):  # a fresh helper, which hangs as well
        gpu()
    with pytest.raises(CallStuck, match="2 NVML helpers are stuck"):
        gpu()  # no third helper piles up behind the driver
    fake_nvml.state["hang"] = []
    fake_nvml.write()
    wait_until(lambda: not gpu.stuck(), what="abandoned helpers to return and exit")
    assert len(devices(gpu())) == 2


def test_close_does_not_wait_for_a_round_stuck_in_the_driver(fake_nvml: FakeNvml, check) -> None:
    import threading
    import time

    gpu = check(timeout=30.0)
    assert len(devices(gpu())) == 2
    fake_nvml.state["hang"] = ["nvmlDeviceGetCount"]
    fake_nvml.write()
    outcome: list[object] = []

    def one_round() -> None:
        try:
            outcome.append(gpu())
        except Exception as exc:  # what the round ends with once its helper is let go
            outcome.append(exc)

    round_thread = threading.Thread(target=one_round, daemon=True)
    round_thread.start()
    wait_until(gpu._lock.locked, what="the round to be waiting on the helper")
    started = time.monotonic()
    gpu.close()
    assert time.monotonic() - started < 1.0  # not the round's 30 s timeout
    fake_nvml.state["hang"] = []
    fake_nvml.write()
    round_thread.join(10)
    assert outcome, "the round did not end after close()"


def test_close_during_a_helper_start_lets_that_helper_go(
    fake_nvml: FakeNvml, check, monkeypatch
) -> None:
    gpu = check()
    started: list[WorkerProcess] = []

    def start_while_closing(*args, **kwargs) -> WorkerProcess:
        worker = WorkerProcess(*args, **kwargs)
        started.append(worker)
        gpu.close()  # shutdown lands between the round's closed-check and the new helper
        return worker

    monkeypatch.setattr(check_module, "WorkerProcess", start_while_closing)
    with pytest.raises(CallStuck, match="closed"):
        gpu()
    wait_until(lambda: not started[0].alive(), what="the helper to be let go and exit")


def pci_bus(root, devices: dict[str, tuple[str, str]]):
    """A sysfs tree with PCI devices: address -> (vendor, class)."""
    for address, (vendor, kind) in devices.items():
        entry = root / "bus" / "pci" / "devices" / address
        entry.mkdir(parents=True)
        (entry / "vendor").write_text(vendor + "\n")
        (entry / "class").write_text(kind + "\n")
    return root


NODE = {
    "0000:17:00.0": ("0x10de", "0x030200"),  # H100: 3D controller
    "0000:65:00.0": ("0x10de", "0x030200"),
    "0000:ca:00.0": ("0x10de", "0x030000"),  # a display GPU: VGA compatible
    "0000:ca:00.1": ("0x10de", "0x040300"),  # its audio function: not a GPU
    "0000:05:00.0": ("0x10de", "0x068000"),  # NVSwitch: a bridge, not a GPU
    "0000:00:02.0": ("0x8086", "0x030000"),  # the host's Intel graphics
}


def test_the_pci_bus_counts_nvidia_gpus_only(tmp_path) -> None:
    from exporter.gpu.pci import count_gpus

    assert count_gpus(pci_bus(tmp_path, NODE)) == 3
    assert count_gpus(tmp_path / "missing") is None


def test_expected_auto_takes_the_count_from_the_pci_bus(
    fake_nvml: FakeNvml, check, tmp_path
) -> None:
    # Three GPUs on the bus, two answer through NVML (fake_nvml has two): one is missing,
    # with the same config on every node shape.
    gpu = check(expected="auto", sysfs=pci_bus(tmp_path, NODE))
    observation = gpu()
    state = nvml_state(observation)
    assert (state.count, state.expected) == (2, 3)
    assert "2 GPUs answer, 3 expected" in observation.problems
