"""From a configured action to the object that runs it. Typed restarts and presets import
their clients (D-Bus, lightkube) only where a config uses them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from exporter.config.recovery import (
    CommandActionConfig,
    DockerActionConfig,
    HttpActionConfig,
    KubernetesActionConfig,
    ProcessActionConfig,
    SignalActionConfig,
    SupervisorActionConfig,
    SystemdActionConfig,
)
from exporter.recovery.actions import Action
from exporter.recovery.external import CommandAction, HttpAction, SignalAction
from exporter.recovery.hygiene import GpuProcesses

CLASSES: dict[type, str] = {
    SupervisorActionConfig: "exporter.recovery.supervisor:SupervisorAction",
    ProcessActionConfig: "exporter.recovery.processrestart:ProcessRestartAction",
    SystemdActionConfig: "exporter.recovery.systemd:SystemdAction",
    DockerActionConfig: "exporter.recovery.docker:DockerAction",
    KubernetesActionConfig: "exporter.recovery.kubernetes:KubernetesAction",
}
"""Typed restarts, imported when a config names one."""
TAKES_GPU = (SupervisorActionConfig, ProcessActionConfig, SystemdActionConfig, DockerActionConfig)
"""Those whose hygiene can wait for the old processes' GPU memory (kubernetes cannot)."""


def _load(where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def build(
    name: str, spec: object, *, gpu: GpuProcesses | None, label_altered: Callable[[str], None]
) -> Action | None:
    """The action for a configured command, http call, signal or typed restart; None for
    an in-process action (the embedding app's callable)."""
    action: Action | None = None
    if isinstance(spec, CommandActionConfig):
        action = CommandAction(name, spec, label_altered)
    elif isinstance(spec, HttpActionConfig):
        gentle = spec.preset is not None
        action = _load("exporter.recovery.gentle:GentleAction")(name, spec) if gentle else (
            HttpAction(name, spec))  # fmt: skip
    elif isinstance(spec, SignalActionConfig):
        action = SignalAction(name, spec)
    elif type(spec) in CLASSES:
        kind = _load(CLASSES[type(spec)])
        action = kind(name, spec, gpu=gpu) if isinstance(spec, TAKES_GPU) else kind(name, spec)
    return action
