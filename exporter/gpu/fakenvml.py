"""A stand-in for nvidia-ml-py's `pynvml` on machines without a GPU (tests, demos).

It has the binding's functions with the same signatures, and re-exports the binding's own
constants, error classes and ctypes structs, so code written against it runs unchanged on
real NVML. Its state is a JSON file named by $MEDIC_FAKE_NVML, read on every call, so a test
can change it while medic runs (a round stays fast at thousands of processes: see _state):

    {"driver": "550.54.15", "memory_v2": true, "init_error": null, "library": true,
     "hang": ["nvmlDeviceGetMemoryInfo"],
     "gpus": [{"uuid": "GPU-…", "name": "NVIDIA H100 80GB HBM3", "total": 85899345920,
               "used": 1073741824, "free": 84222648320, "reserved": 603979776,
               "utilization": 37, "temperature": 45, "power_mw": 250000, "energy_mj": 1200000,
               "unsupported": ["temperature"], "lost": false, "present": true,
               "processes": [{"pid": 4242, "name": "python3", "used": 1073741824}],
               "serial": "1652922000123", "recovery_action": 0, "reset_required": false,
               "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": 0,
                                 "failure": 0},
               "ecc": {"volatile": {"corrected": 0, "uncorrected": 0},
                       "aggregate": {"corrected": 0, "uncorrected": 0}},
               "retired_pages": {"single_bit": [], "double_bit": []},
               "throttle_reasons": 0, "pcie_replay": 0}],
     "xid_events": [{"gpu": 0, "xid": 79}]}

A GPU field left out of its entry (recovery_action, remapped_rows, ecc, ...) or named in
"unsupported" answers NOT_SUPPORTED, as on a GPU or driver without it; "reset_required"
makes every call on that GPU fail with NVML_ERROR_RESET_REQUIRED, as the driver does.

A function listed in "hang" blocks until it is removed from the list (a wedged driver).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pynvml as _real

# The binding's own names, so `except fake.NVMLError_GpuIsLost` is the real class.
NVMLError = _real.NVMLError
for _name in dir(_real):
    if _name.startswith(("NVML_", "NVMLError_", "nvmlMemory_v", "nvmlEventType", "c_nvml")):
        globals()[_name] = getattr(_real, _name)
nvmlMemory_v2 = _real.nvmlMemory_v2
nvmlEventTypeXidCriticalError = _real.nvmlEventTypeXidCriticalError
NVML_TEMPERATURE_GPU = _real.NVML_TEMPERATURE_GPU

ENV = "MEDIC_FAKE_NVML"
_LIB = {"initialised": False}  # the binding keeps this state in the C library


_CACHE: dict[str, Any] = {"key": None, "raw": None, "state": None, "names": {}}
SETTLED = 1.0
"""Seconds after its last change from which the file's metadata alone says it is unchanged
(a write within the file system's timestamp granularity could keep size and mtime)."""


def _state() -> dict[str, Any]:
    """The state file as of this call: a test that rewrites it is seen at the next call.
    A file settled for SETTLED seconds costs one stat() per call; a newer one is read and
    parsed again only when its bytes changed (a round at 4,000 GPU processes makes 4,000
    calls: re-reading a 400 kB file on each took 11.5 s)."""
    path = os.environ.get(ENV)
    if not path:
        return {"gpus": []}
    info = os.stat(path)
    key = (path, info.st_ino, info.st_size, info.st_mtime_ns)
    if key == _CACHE["key"]:
        state: dict[str, Any] = _CACHE["state"]
        return state
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw != _CACHE["raw"]:
        parsed = json.loads(raw)
        _CACHE["state"], _CACHE["raw"], _CACHE["names"] = parsed, raw, _names(parsed)
    settled = time.time() - info.st_mtime_ns / 1e9 > SETTLED
    _CACHE["key"] = key if settled else None
    state = _CACHE["state"]
    return state


def _names(state: dict[str, Any]) -> dict[int, str]:
    """pid -> process name over every visible GPU (the first GPU that lists a pid names it)."""
    names: dict[int, str] = {}
    for gpu in _visible(state):
        for proc in gpu.get("processes", []):
            names.setdefault(proc["pid"], str(proc["name"]))
    return names


def _enter(function: str, needs_init: bool = True) -> dict[str, Any]:
    state = _state()
    while function in state.get("hang", []):
        time.sleep(0.02)
        state = _state()
    if needs_init and not _LIB["initialised"]:
        raise NVMLError(_real.NVML_ERROR_UNINITIALIZED)
    return state


@dataclass(frozen=True)
class _Device:
    index: int
    uuid: str


@dataclass
class _EventSet:
    devices: set[str] = field(default_factory=set)
    seen: int = 0


def _visible(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in state.get("gpus", []) if g.get("present", True)]


def _gpu(handle: _Device, field_name: str | None = None) -> dict[str, Any]:
    state = _state()
    for gpu in _visible(state):
        if gpu["uuid"] == handle.uuid:
            if gpu.get("lost"):
                raise NVMLError(_real.NVML_ERROR_GPU_IS_LOST)
            if gpu.get("reset_required") and field_name not in ("handle", "uuid", "serial"):
                raise NVMLError(_real.NVML_ERROR_RESET_REQUIRED)
            if field_name is not None and field_name in gpu.get("unsupported", []):
                raise NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
            return gpu
    raise NVMLError(_real.NVML_ERROR_GPU_IS_LOST)


def nvmlInit() -> None:
    """Initialise; fails like the binding when the library or driver is missing."""
    state = _enter("nvmlInit", needs_init=False)
    if not state.get("library", True):
        raise NVMLError(_real.NVML_ERROR_LIBRARY_NOT_FOUND)
    if state.get("init_error"):
        raise NVMLError(int(state["init_error"]))
    _LIB["initialised"] = True


def nvmlShutdown() -> None:
    """Release NVML."""
    _enter("nvmlShutdown")
    _LIB["initialised"] = False


def nvmlSystemGetDriverVersion() -> str:
    """The driver version string."""
    return str(_enter("nvmlSystemGetDriverVersion").get("driver", "550.54.15"))


def nvmlDeviceGetCount() -> int:
    """Number of visible GPUs."""
    return len(_visible(_enter("nvmlDeviceGetCount")))


def nvmlDeviceGetHandleByIndex(index: int) -> _Device:
    """A handle for the GPU at index."""
    gpus = _visible(_enter("nvmlDeviceGetHandleByIndex"))
    if not 0 <= index < len(gpus):
        raise NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
    handle = _Device(index, gpus[index]["uuid"])
    _gpu(handle, "handle")
    return handle


def nvmlDeviceGetUUID(handle: _Device) -> str:
    """The GPU-… UUID."""
    _enter("nvmlDeviceGetUUID")
    return str(_gpu(handle, "uuid")["uuid"])


def nvmlDeviceGetName(handle: _Device) -> str:
    """The product name."""
    _enter("nvmlDeviceGetName")
    return str(_gpu(handle, "name").get("name", "NVIDIA Fake GPU"))


def nvmlDeviceGetMemoryInfo(handle: _Device, version: int | None = None) -> Any:
    """v1 (reserved counted in used) or v2 (reserved apart), as the real structs."""
    state = _enter("nvmlDeviceGetMemoryInfo")
    gpu = _gpu(handle, "memory")
    if not version:
        return _real.c_nvmlMemory_t(gpu["total"], gpu["free"], gpu["used"] + gpu["reserved"])
    if not state.get("memory_v2", True):
        raise NVMLError(_real.NVML_ERROR_FUNCTION_NOT_FOUND)
    if version != _real.nvmlMemory_v2:
        raise NVMLError(_real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
    return _real.c_nvmlMemory_v2_t(version, gpu["total"], gpu["reserved"], gpu["free"], gpu["used"])


def nvmlDeviceGetUtilizationRates(handle: _Device) -> Any:
    """GPU and memory-controller utilisation in percent."""
    _enter("nvmlDeviceGetUtilizationRates")
    gpu = _gpu(handle, "utilization")
    return _real.c_nvmlUtilization_t(gpu.get("utilization", 0), gpu.get("memory_util", 0))


def nvmlDeviceGetTemperature(handle: _Device, sensor: int) -> int:
    """Core temperature in °C."""
    _enter("nvmlDeviceGetTemperature")
    if sensor != _real.NVML_TEMPERATURE_GPU:
        raise NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
    return int(_gpu(handle, "temperature").get("temperature", 40))


def nvmlDeviceGetPowerUsage(handle: _Device) -> int:
    """Power draw in milliwatts."""
    _enter("nvmlDeviceGetPowerUsage")
    return int(_gpu(handle, "power").get("power_mw", 100_000))


def nvmlDeviceGetTotalEnergyConsumption(handle: _Device) -> int:
    """Energy since the driver loaded, in millijoules."""
    _enter("nvmlDeviceGetTotalEnergyConsumption")
    return int(_gpu(handle, "energy").get("energy_mj", 0))


class _ProcessInfo:
    def __init__(self, pid: int, used: int | None) -> None:
        self.pid, self.usedGpuMemory = pid, used
        self.gpuInstanceId = self.computeInstanceId = 0xFFFFFFFF


def nvmlDeviceGetComputeRunningProcesses(handle: _Device) -> list[_ProcessInfo]:
    """Compute processes; usedGpuMemory is None when the driver cannot tell."""
    _enter("nvmlDeviceGetComputeRunningProcesses")
    procs = _gpu(handle, "processes").get("processes", [])
    return [_ProcessInfo(p["pid"], p.get("used")) for p in procs]


def nvmlSystemGetProcessName(pid: int) -> str:
    """Name of a process using a GPU."""
    _enter("nvmlSystemGetProcessName")
    name: str | None = _CACHE["names"].get(pid)
    if name is None:
        raise NVMLError(_real.NVML_ERROR_NOT_FOUND)
    return name


def _present(handle: _Device, key: str) -> Any:
    """The GPU's value for a field, or NOT_SUPPORTED when its entry leaves it out."""
    gpu = _gpu(handle, key)
    if key not in gpu:
        raise NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
    return gpu[key]


def nvmlDeviceGetSerial(handle: _Device) -> str:
    """The board serial number (the same across re-imaging and driver changes)."""
    _enter("nvmlDeviceGetSerial")
    return str(_present(handle, "serial"))


def nvmlDeviceGetRemappedRows(device: _Device) -> tuple[int, int, int, int]:
    """(correctable, uncorrectable, pending, failure) row remappings (Ampere and newer)."""
    _enter("nvmlDeviceGetRemappedRows")
    rows = _present(device, "remapped_rows")
    return (int(rows.get("correctable", 0)), int(rows.get("uncorrectable", 0)),
            int(rows.get("pending", 0)), int(rows.get("failure", 0)))  # fmt: skip


def nvmlDeviceGetTotalEccErrors(handle: _Device, errorType: int, counterType: int) -> int:
    """ECC error count: corrected or uncorrected, volatile (since the driver loaded) or
    aggregate (the GPU's lifetime)."""
    _enter("nvmlDeviceGetTotalEccErrors")
    ecc = _present(handle, "ecc")
    counter = {_real.NVML_VOLATILE_ECC: "volatile", _real.NVML_AGGREGATE_ECC: "aggregate"}
    kind = {_real.NVML_MEMORY_ERROR_TYPE_CORRECTED: "corrected",
            _real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "uncorrected"}  # fmt: skip
    if counterType not in counter or errorType not in kind:
        raise NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
    return int(ecc.get(counter[counterType], {}).get(kind[errorType], 0))


def nvmlDeviceGetRetiredPages(device: _Device, sourceFilter: int) -> list[int]:
    """Addresses of the pages retired for one cause (pre-Ampere page retirement)."""
    _enter("nvmlDeviceGetRetiredPages")
    pages = _present(device, "retired_pages")
    cause = {_real.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: "single_bit",
             _real.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: "double_bit"}  # fmt: skip
    if sourceFilter not in cause:
        raise NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
    return [int(a) for a in pages.get(cause[sourceFilter], [])]


def nvmlDeviceGetCurrentClocksEventReasons(handle: _Device) -> int:
    """Why the clocks are held down now: a bit mask of nvmlClocksEventReason*."""
    _enter("nvmlDeviceGetCurrentClocksEventReasons")
    return int(_present(handle, "throttle_reasons"))


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: _Device) -> int:
    """The older name of nvmlDeviceGetCurrentClocksEventReasons."""
    return nvmlDeviceGetCurrentClocksEventReasons(handle)


def nvmlDeviceGetPcieReplayCounter(handle: _Device) -> int:
    """PCIe replays since the driver loaded."""
    _enter("nvmlDeviceGetPcieReplayCounter")
    return int(_present(handle, "pcie_replay"))


_FIELDS: dict[int, tuple[str, str | None]] = {
    _real.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: ("recovery_action", None),
    _real.NVML_FI_DEV_REMAPPED_COR: ("remapped_rows", "correctable"),
    _real.NVML_FI_DEV_REMAPPED_UNC: ("remapped_rows", "uncorrectable"),
    _real.NVML_FI_DEV_REMAPPED_PENDING: ("remapped_rows", "pending"),
    _real.NVML_FI_DEV_REMAPPED_FAILURE: ("remapped_rows", "failure"),
    _real.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: ("ecc", "volatile.corrected"),
    _real.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: ("ecc", "volatile.uncorrected"),
    _real.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: ("ecc", "aggregate.corrected"),
    _real.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: ("ecc", "aggregate.uncorrected"),
    _real.NVML_FI_DEV_RETIRED_SBE: ("retired_pages", "single_bit"),
    _real.NVML_FI_DEV_RETIRED_DBE: ("retired_pages", "double_bit"),
    _real.NVML_FI_DEV_RETIRED_PENDING: ("retired_pages", "pending"),
    _real.NVML_FI_DEV_PCIE_REPLAY_COUNTER: ("pcie_replay", None),
}


def _part(found: Any, part: str) -> Any:
    """A field's value inside a GPU entry's dict: a dotted path; a list counts its items
    (retired page addresses); a missing key in a present dict is 0."""
    for key in part.split("."):
        found = found.get(key, 0) if isinstance(found, dict) else 0
    if isinstance(found, list):
        return len(found)
    return int(bool(found)) if isinstance(found, bool) else found


def nvmlDeviceGetFieldValues(handle: _Device, fieldIds: list[int]) -> Any:
    """The binding's array of c_nvmlFieldValue_t: each with its own nvmlReturn (a field
    this GPU lacks is NOT_SUPPORTED there, the call itself succeeds) and an unsigned int."""
    _enter("nvmlDeviceGetFieldValues")
    gpu = _gpu(handle, "field_values")
    if gpu.get("field_values_error"):  # a driver that refuses the whole call
        raise NVMLError(int(gpu["field_values_error"]))
    values = (_real.c_nvmlFieldValue_t * len(fieldIds))()
    for i, field_id in enumerate(fieldIds):
        values[i].fieldId = field_id
        values[i].timestamp = int(time.time() * 1e6)
        key, part = _FIELDS.get(field_id, ("", None))
        found = gpu.get(key) if key and key not in gpu.get("unsupported", []) else None
        if isinstance(found, dict):
            found = _part(found, str(part))
        if found is None:
            values[i].nvmlReturn = _real.NVML_ERROR_NOT_SUPPORTED
            continue
        values[i].nvmlReturn = _real.NVML_SUCCESS
        values[i].valueType = _real.NVML_VALUE_TYPE_UNSIGNED_INT
        values[i].value.uiVal = int(found)
    return values


def nvmlEventSetCreate() -> _EventSet:
    """An empty event set; it sees only events recorded after it was created."""
    state = _enter("nvmlEventSetCreate")
    return _EventSet(seen=len(state.get("xid_events", [])))


def nvmlDeviceRegisterEvents(handle: _Device, eventTypes: int, eventSet: _EventSet) -> None:
    """Subscribe the set to a device's events."""
    _enter("nvmlDeviceRegisterEvents")
    _gpu(handle, "events")
    eventSet.devices.add(handle.uuid)


class _EventData:
    def __init__(self, device: _Device, event_type: int, data: int) -> None:
        self.device, self.eventType, self.eventData = device, event_type, data
        self.gpuInstanceId = self.computeInstanceId = 0xFFFFFFFF


def nvmlEventSetWait(eventSet: _EventSet, timeoutms: int) -> _EventData:
    """The next event, or NVMLError_Timeout after timeoutms."""
    deadline = time.monotonic() + timeoutms / 1000
    while True:
        state = _enter("nvmlEventSetWait")
        events = state.get("xid_events", [])
        gpus = _visible(state)
        while eventSet.seen < len(events):
            event = events[eventSet.seen]
            eventSet.seen += 1
            index = int(event["gpu"])
            if index < len(gpus) and gpus[index]["uuid"] in eventSet.devices:
                device = _Device(index, gpus[index]["uuid"])
                return _EventData(device, _real.nvmlEventTypeXidCriticalError, int(event["xid"]))
        if time.monotonic() >= deadline:
            raise NVMLError(_real.NVML_ERROR_TIMEOUT)
        time.sleep(0.01)


def nvmlEventSetFree(eventSet: _EventSet) -> None:
    """Release an event set."""
    _enter("nvmlEventSetFree")


def make_state(count: int, total: int = 80 * 2**30, **overrides: Any) -> dict[str, Any]:
    """A state with `count` healthy GPUs, for tests, benchmarks and demos."""
    gpus = []
    for i in range(count):
        reserved, used = 512 * 2**20, (i + 1) * 2**30
        gpus.append(
            {
                "uuid": f"GPU-{i:08x}-fake-4000-8000-{i:012x}",
                "name": "NVIDIA H100 80GB HBM3",
                "total": total,
                "used": used,
                "free": total - used - reserved,
                "reserved": reserved,
                "utilization": 10 * i % 100,
                "temperature": 40 + i,
                "power_mw": 100_000 + 1000 * i,
                "energy_mj": 5_000_000 * (i + 1),
                "processes": [{"pid": 1000 + i, "name": "python3", "used": used}],
                # A healthy Hopper: every health field supported, nothing to do.
                "serial": f"16529220{i:05d}",
                "recovery_action": 0,
                "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": 0, "failure": 0},
                "ecc": {
                    "volatile": {"corrected": 0, "uncorrected": 0},
                    "aggregate": {"corrected": 0, "uncorrected": 0},
                },
                "retired_pages": {"single_bit": [], "double_bit": [], "pending": False},
                "throttle_reasons": 0,
                "pcie_replay": 0,
            }
        )
    return {"driver": "550.54.15", "gpus": gpus, "xid_events": [], **overrides}
