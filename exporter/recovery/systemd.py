"""The `systemd` action: restart a unit over D-Bus (org.freedesktop.systemd1) and wait for
the job's result, with dbus-fast (asyncio, pure Python, maintained; dbus-next is not).

Subscribe() first (systemd emits most signals only once a client has subscribed) and match
JobRemoved before the call, so that a fast job's end is never missed. With restart hygiene
(the default), the restart is StopUnit, then the old cgroup and its GPU memory gone, then
StartUnit; without it, RestartUnit. A `done` start of a Type=simple unit means the process
was exec'd, not that it serves: verify the rung with a real request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from exporter.config.recovery import SystemdActionConfig
from exporter.recovery.actions import ActionContext, run_until_cut_off
from exporter.recovery.hygiene import GpuProcesses, capture, cgroup_pids, settle
from exporter.recovery.types import ActionResult

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
PROPERTIES = "org.freedesktop.DBus.Properties"
DENIED = (
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
)


class SystemdError(Exception):
    """A D-Bus error answer, said plainly."""


def _said(reply: Message, what: str) -> str:
    text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
    name = reply.error_name or "error"
    if name in DENIED:
        return (f"permission denied to {what}: {text or name} (run medic as root, or allow "
                f"org.freedesktop.systemd1.manage-units for this unit in polkit)")  # fmt: skip
    if name == "org.freedesktop.systemd1.NoSuchUnit":
        return f"unit not found: {text or name}"
    return f"{what}: {name}: {text}".rstrip(": ")


class _Systemd:
    """One connection's calls, and the JobRemoved results seen on it."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._ended: dict[str, str] = {}  # a job that ended before its waiter was set up
        bus.add_message_handler(self._on_message)

    def _on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL or message.member != "JobRemoved":
            return
        if message.interface != MANAGER:
            return
        _, job, _, result = message.body
        waiter = self._jobs.get(job)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)
        else:
            self._ended[job] = result

    async def call(self, what: str, member: str, signature: str = "", body: Any = (), *,
                   path: str = MANAGER_PATH, interface: str = MANAGER) -> list[Any]:  # fmt: skip
        """A method call; raises SystemdError on an error answer."""
        reply = await self._bus.call(Message(
            destination=SYSTEMD, path=path, interface=interface, member=member,
            signature=signature, body=list(body),
        ))  # fmt: skip
        if reply.message_type == MessageType.ERROR:
            raise SystemdError(_said(reply, what))
        return list(reply.body)

    async def subscribe(self) -> None:
        """Ask for JobRemoved (match rule, then Subscribe)."""
        rule = (f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',"
                f"interface='{MANAGER}',member='JobRemoved'")  # fmt: skip
        await self._bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule],
        ))  # fmt: skip
        await self.call("subscribe to systemd", "Subscribe")

    async def job(self, what: str, member: str, unit: str, mode: str) -> str:
        """Queue a job (StopUnit, StartUnit, RestartUnit) and wait for its result."""
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        [path] = await self.call(what, member, "ss", (unit, mode))
        self._jobs[path] = waiter
        if path in self._ended:
            return self._ended.pop(path)
        return await waiter

    async def prop(self, path: str, interface: str, name: str) -> Any:
        """One property's value."""
        [variant] = await self.call(
            f"read {name}", "Get", "ss", (interface, name), path=path, interface=PROPERTIES
        )
        return variant.value


class SystemdAction:
    """Restart one unit, waiting for the jobs' results, with restart hygiene between."""

    def __init__(
        self,
        name: str,
        config: SystemdActionConfig,
        gpu: GpuProcesses | None = None,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
    ) -> None:
        self.name = name
        self._config = config
        self._gpu = gpu
        self._cgroups = cgroup_root

    def _bus(self) -> MessageBus:
        bus = self._config.bus
        if bus == "system":
            return MessageBus(bus_type=BusType.SYSTEM)
        if bus == "session":
            return MessageBus(bus_type=BusType.SESSION)
        return MessageBus(bus_address=bus)

    async def _restart(self, systemd: _Systemd) -> ActionResult:
        config, unit = self._config, self._config.unit
        await systemd.subscribe()
        [path] = await systemd.call(f"load {unit}", "LoadUnit", "s", (unit,))
        unit_iface = "org.freedesktop.systemd1.Unit"
        if await systemd.prop(path, unit_iface, "LoadState") == "not-found":
            return ActionResult(False, f"unit not found: {unit}")
        service = "org.freedesktop.systemd1.Service"
        hygiene = config.hygiene
        if not (hygiene.tree or hygiene.gpu_memory):
            result = await systemd.job(f"restart {unit}", "RestartUnit", unit, config.job_mode)
            seen = "no hygiene asked"
        else:
            old_pid = int(await systemd.prop(path, service, "MainPID"))
            cgroup = str(await systemd.prop(path, service, "ControlGroup"))
            tree = capture([old_pid, *cgroup_pids(self._cgroups, cgroup)])
            stop = await systemd.job(f"stop {unit}", "StopUnit", unit, config.job_mode)
            if stop != "done":
                return ActionResult(False, f"the stop job of {unit} ended '{stop}'")
            clean, seen = await run_until_cut_off(
                lambda cut_off: settle(tree, hygiene, self._gpu, cut_off=cut_off)
            )
            if not clean:
                return ActionResult(False, f"stopped {unit}; {seen}; not started")
            result = await systemd.job(f"start {unit}", "StartUnit", unit, config.job_mode)
        if result != "done":
            return ActionResult(False, f"the job restarting {unit} ended '{result}' ({seen})")
        state = await systemd.prop(path, unit_iface, "ActiveState")
        sub = await systemd.prop(path, unit_iface, "SubState")
        pid = await systemd.prop(path, service, "MainPID")
        detail = f"restarted {unit}: {state} ({sub}), MainPID {pid}; {seen}"
        return ActionResult(state == "active", detail)

    async def run(self, ctx: ActionContext) -> ActionResult:
        """Restart the unit; say what each job ended as, and what runs now."""
        if ctx.dry_run:
            return ActionResult(True, f"would restart {self._config.unit} over D-Bus")
        try:
            bus = await self._bus().connect()
        except Exception as exc:  # OSError, dbus-fast's AuthError, a bad address
            return ActionResult(False, f"cannot reach the D-Bus {self._config.bus} bus: {exc}")
        try:
            return await self._restart(_Systemd(bus))
        except SystemdError as exc:
            return ActionResult(False, str(exc))
        finally:
            bus.disconnect()
