"""The fake must keep nvidia-ml-py's API: same names, same parameters, same error classes."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pynvml
import pytest

from exporter.gpu import fakenvml

GPU_CODE = Path(__file__).parents[2] / "exporter" / "gpu"


def fake_functions() -> list[str]:
    return [
        name
        for name, value in vars(fakenvml).items()
        if name.startswith("nvml") and inspect.isfunction(value)
    ]


@pytest.mark.parametrize("name", fake_functions())
def test_each_fake_function_has_the_real_signature(name: str) -> None:
    real = getattr(pynvml, name)
    fake = getattr(fakenvml, name)
    real_params = list(inspect.signature(real).parameters)
    fake_params = list(inspect.signature(fake).parameters)
    assert fake_params == real_params, f"{name}: fake {fake_params} != real {real_params}"


def test_every_nvml_name_medic_uses_exists_in_both() -> None:
    used: set[str] = set()
    for path in ("reader.py", "worker.py"):
        used |= set(re.findall(r"\bnvml\.((?:nvml|NVML)\w+)", (GPU_CODE / path).read_text()))
    assert used, "no NVML names found; the scan is broken"
    for name in sorted(used):
        assert hasattr(pynvml, name), f"real pynvml lacks {name}"
        assert hasattr(fakenvml, name), f"fake lacks {name}"


def test_errors_constants_and_structs_are_the_real_ones() -> None:
    assert fakenvml.NVMLError is pynvml.NVMLError
    assert fakenvml.NVMLError_GpuIsLost is pynvml.NVMLError_GpuIsLost  # type: ignore[attr-defined]
    assert fakenvml.nvmlMemory_v2 == pynvml.nvmlMemory_v2 == 0x02000028
    assert isinstance(pynvml.NVMLError(15), pynvml.NVMLError_GpuIsLost)


def test_real_binding_without_a_driver_raises_library_not_found() -> None:
    with pytest.raises(pynvml.NVMLError) as info:
        pynvml.nvmlInit()
    assert info.value.value == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
