"""Read every GPU through an NVML module (nvidia-ml-py's `pynvml`, or a fake with its API).

Runs inside the helper process. Knows which NVML errors mean "this field is absent" and
which mean "NVML itself is unusable, shut it down and initialise again later".
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

# NVML return codes (nvml.h): lifecycle errors end the round and force a re-initialisation.
UNINITIALIZED, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND = 1, 9, 12
GPU_IS_LOST, LIB_RM_VERSION_MISMATCH, GPU_NOT_FOUND = 15, 18, 28
LIFECYCLE = frozenset(
    {UNINITIALIZED, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, GPU_IS_LOST,
     LIB_RM_VERSION_MISMATCH, GPU_NOT_FOUND}
)  # fmt: skip
# Field-level: not supported, no permission, function not found (old driver), and a struct
# version the driver does not know. Only that series is absent.
FIELD_ABSENT = frozenset({3, 4, 13, 25})
SUCCESS, RESET_REQUIRED = 0, 16
"""NVML_ERROR_RESET_REQUIRED: the GPU answers nothing until it is reset (a verdict)."""
HEALTH_FIELDS: dict[str, str] = {
    "recovery_action": "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION",
    "remap_correctable": "NVML_FI_DEV_REMAPPED_COR",
    "remap_uncorrectable": "NVML_FI_DEV_REMAPPED_UNC",
    "remap_pending": "NVML_FI_DEV_REMAPPED_PENDING",
    "remap_failure": "NVML_FI_DEV_REMAPPED_FAILURE",
    "ecc_volatile_corrected": "NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
    "ecc_volatile_uncorrected": "NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
    "ecc_aggregate_corrected": "NVML_FI_DEV_ECC_SBE_AGG_TOTAL",
    "ecc_aggregate_uncorrected": "NVML_FI_DEV_ECC_DBE_AGG_TOTAL",
    "retired_single_bit": "NVML_FI_DEV_RETIRED_SBE",
    "retired_double_bit": "NVML_FI_DEV_RETIRED_DBE",
    "retired_pending": "NVML_FI_DEV_RETIRED_PENDING",
    "pcie_replay": "NVML_FI_DEV_PCIE_REPLAY_COUNTER",
}
"""The health figures read in one nvmlDeviceGetFieldValues call (as DCGM reads them); a
field the GPU or driver lacks answers its own NOT_SUPPORTED and stays absent."""


class NvmlFailure(Exception):
    """An NVML error that ends the round; carries the code and the binding's class name."""

    def __init__(self, code: int, name: str, message: str, gpu: int | None = None) -> None:
        super().__init__(message)
        self.code, self.name, self.message, self.gpu = code, name, message, gpu

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"code": self.code, "name": self.name, "message": self.message, "gpu": self.gpu}


def failure(nvml: ModuleType, exc: BaseException, gpu: int | None = None) -> NvmlFailure:
    """Wrap an exception raised by the binding."""
    code = int(getattr(exc, "value", -1)) if isinstance(exc, nvml.NVMLError) else -1
    return NvmlFailure(code, type(exc).__name__, str(exc), gpu)


def _field(nvml: ModuleType, call: Any, *args: Any) -> Any:
    """Call an NVML getter; None when the field is unsupported, forbidden or unknown."""
    try:
        return call(*args)
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) in FIELD_ABSENT:
            return None
        raise


def _memory(nvml: ModuleType, handle: Any) -> dict[str, int] | None:
    """v2 (reserved apart, `used` as nvidia-smi shows it), else v1 (reserved inside used)."""
    try:
        v2 = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        return {"total": v2.total, "used": v2.used, "free": v2.free, "reserved": v2.reserved}
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) not in FIELD_ABSENT:
            raise
    v1 = _field(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    if v1 is None:
        return None
    return {"total": v1.total, "used": v1.used, "free": v1.free, "reserved": 0}


def _process_name(nvml: ModuleType, pid: int) -> str:
    try:
        name = nvml.nvmlSystemGetProcessName(pid)
        return str(name).rsplit("/", 1)[-1] or "unknown"
    except nvml.NVMLError:
        pass
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _processes(nvml: ModuleType, handle: Any) -> list[dict[str, Any]] | None:
    procs = _field(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
    if procs is None:
        return None
    return [
        {"pid": p.pid, "name": _process_name(nvml, p.pid), "used": p.usedGpuMemory} for p in procs
    ]


def _value(nvml: ModuleType, field: Any) -> int | float | None:
    """One c_nvmlFieldValue_t's value by its valueType; None when its own return failed."""
    if field.nvmlReturn != SUCCESS:
        return None
    by_type = {
        nvml.NVML_VALUE_TYPE_DOUBLE: "dVal", nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal", nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
    }  # fmt: skip
    attr = by_type.get(field.valueType)
    return None if attr is None else getattr(field.value, attr)


def _optional(nvml: ModuleType, call: Any, *args: Any) -> Any:
    """Like _field, but any error but a lifecycle or reset-required one is "absent": these
    figures are extras, and an older driver may refuse a field id it does not know
    (INVALID_ARGUMENT) for the whole call; that must not cost the round."""
    try:
        return call(*args)
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) in LIFECYCLE | {RESET_REQUIRED}:
            raise
        return None


def read_health(nvml: ModuleType, handle: Any) -> dict[str, Any]:
    """The driver's recovery action and the figures behind a verdict (row remapping, ECC,
    retired pages, PCIe replays, clock-event reasons) and the board serial; each None
    where this GPU or driver lacks it."""
    names = list(HEALTH_FIELDS)
    ids = [getattr(nvml, HEALTH_FIELDS[n], None) for n in names]
    wanted = [(n, i) for n, i in zip(names, ids, strict=True) if i is not None]
    health: dict[str, Any] = dict.fromkeys(names)
    values = _optional(nvml, nvml.nvmlDeviceGetFieldValues, handle, [i for _, i in wanted])
    for (name, _), field in zip(wanted, values or [], strict=False):
        health[name] = _value(nvml, field)
    reasons = (
        getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    )
    health["clock_event_reasons"] = _optional(nvml, reasons, handle)
    serial = _optional(nvml, nvml.nvmlDeviceGetSerial, handle)
    health["serial"] = None if serial is None else str(serial)
    return health


def read_device(nvml: ModuleType, index: int, processes: bool) -> dict[str, Any]:
    """Everything medic exports about one GPU."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    utilization = _field(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
    power_mw = _field(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
    energy_mj = _field(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
    device: dict[str, Any] = {
        "index": index,
        "uuid": str(nvml.nvmlDeviceGetUUID(handle)),
        "name": str(_field(nvml, nvml.nvmlDeviceGetName, handle) or "unknown"),
        "memory": _memory(nvml, handle),
        "utilization": None if utilization is None else utilization.gpu / 100.0,
        "temperature": _field(
            nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
        ),
        "power_w": None if power_mw is None else power_mw / 1000.0,
        "energy_j": None if energy_mj is None else energy_mj / 1000.0,
        "health": read_health(nvml, handle),
    }
    if processes:
        device["processes"] = _processes(nvml, handle)
    return device


def _reset_required(nvml: ModuleType, index: int) -> dict[str, Any]:
    """What is known of a GPU that answers NVML_ERROR_RESET_REQUIRED: its identity, where
    the driver still gives it."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = _field(nvml, nvml.nvmlDeviceGetUUID, handle)
    serial = _field(nvml, nvml.nvmlDeviceGetSerial, handle)
    return {"index": index, "uuid": str(uuid or f"gpu-{index}"), "name": "unknown",
            "memory": None, "reset_required": True,
            "health": {"serial": None if serial is None else str(serial)}}  # fmt: skip


def read_all(nvml: ModuleType, processes: bool) -> dict[str, Any]:
    """One round over every GPU. A lost GPU is reported and skipped; the others still count.

    Raises NvmlFailure for errors that make the whole round meaningless.
    """
    try:
        driver = str(_field(nvml, nvml.nvmlSystemGetDriverVersion) or "unknown")
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        raise failure(nvml, exc) from None
    devices, errors = [], []
    for index in range(count):
        try:
            devices.append(read_device(nvml, index, processes))
        except nvml.NVMLError as exc:
            err = failure(nvml, exc, index)
            if err.code == RESET_REQUIRED:
                # The GPU refuses work until it is reset: the driver's verdict, and the
                # round goes on for the others.
                devices.append(_reset_required(nvml, index))
                continue
            if err.code not in LIFECYCLE:
                raise err from None
            errors.append(err.as_dict())
    return {"driver": driver, "count": count, "gpus": devices, "errors": errors}
