"""How many NVIDIA GPUs sit on the PCI bus, read from sysfs: what `expected: auto` compares
NVML's count with.

A GPU that falls off the bus (XID 79) or that the driver loses usually stays listed on the
PCI bus while NVML stops answering for it, so the two counts disagree exactly when a GPU is
missing. One config then fits every node shape of a fleet (a DaemonSet on 4- and 8-GPU
nodes). sysfs is not namespaced for PCI devices: a container sees the node's bus.
"""

from __future__ import annotations

from pathlib import Path

NVIDIA = "0x10de"
GPU_CLASSES = ("0x0300", "0x0302")
"""PCI classes of GPUs: VGA-compatible and 3D controllers (not NVSwitch bridges, not the
audio function of a display card)."""


def count_gpus(sysfs: Path = Path("/sys")) -> int | None:
    """NVIDIA GPUs on the PCI bus; None when sysfs cannot be read (then nothing is known)."""
    try:
        entries = list((sysfs / "bus" / "pci" / "devices").iterdir())
    except OSError:
        return None
    found = 0
    for entry in entries:
        try:
            vendor = (entry / "vendor").read_text(encoding="ascii").strip()
            kind = (entry / "class").read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if vendor == NVIDIA and kind[:6] in GPU_CLASSES:
            found += 1
    return found
