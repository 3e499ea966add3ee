"""Commands that survive medic: launched behind a gate, watched by pid, adopted after a crash.

A command is started through a small `sh` wrapper that first waits at a gate (its stdin).
medic commits the wrapper's pid and start time to the journal and only then opens the gate,
so a command never runs without a record that lets the next medic find it. If medic dies
before opening the gate the wrapper reads end-of-file and exits without running anything.

Once released, the wrapper leaves a `.started` file, runs the argv (never through a shell:
the operator's argv is passed as "$@"), and writes the exit status to a `.status` file.
Output goes to a `.out` file, not a pipe, so the command does not die of SIGPIPE when medic
does. After a crash the next medic probes the recorded process: still running (same pid,
same start time, same boot) means adopt it and wait; gone with a status file means it
finished while medic was down; gone with only `.started` means it was killed; no `.started`
means it never ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from exporter.recovery.episode import Launch
from exporter.recovery.types import ActionResult

OUTPUT_TAIL = 400
POLL = 0.05
"""Seconds between liveness checks where a pidfd cannot be had."""
WRAPPER = (
    'IFS= read -r gate || exit 125; [ "$gate" = go ] || exit 125; '
    ': > "$1" || exit 125; status=$2; [ -z "$3" ] || cd "$3" || exit 126; shift 3; '
    '"$@" </dev/null; code=$?; printf "%s\\n" "$code" > "$status"; exit "$code"'
)
"""$1: the .started file, $2: the .status file, $3: the directory to run in (or ""), the
rest: the operator's argv."""
SHELL = "/bin/sh"
log = logging.getLogger(__name__)
_reapers: set[asyncio.Task[int | None]] = set()


def boot_id() -> str:
    """This boot's id (a pid and start time are only unique within one boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks after boot; None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited, waiting to be reaped by whoever its parent is
        return None
    return int(fields[19])


def alive(launch: Launch) -> bool:
    """Whether the recorded process is still the one medic started."""
    return launch.boot_id == boot_id() and start_time(launch.pid) == launch.start


@dataclass(frozen=True, slots=True)
class RunFiles:
    """Where one attempt's command leaves its witness, exit status and output."""

    started: Path
    status: Path
    output: Path

    @classmethod
    def of(cls, runs: Path, attempt_id: int) -> RunFiles:
        """The files of attempt `attempt_id` under the runs directory."""
        base = runs / str(attempt_id)
        return cls(base.with_suffix(".started"), base.with_suffix(".status"),
                   base.with_suffix(".out"))  # fmt: skip

    def exit_status(self) -> int | None:
        """The command's exit status, if the wrapper wrote one."""
        try:
            return int(self.status.read_text().strip())
        except (OSError, ValueError):
            return None

    def output_tail(self) -> str:
        """The last OUTPUT_TAIL characters of what the command printed."""
        try:
            with self.output.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - OUTPUT_TAIL * 4))
                return handle.read().decode(errors="replace").strip()[-OUTPUT_TAIL:]
        except OSError:
            return ""

    def remove(self) -> None:
        """Forget the attempt's files (its outcome is in the journal)."""
        for path in (self.started, self.status, self.output):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def fate(launch: Launch | None, files: RunFiles) -> str:
    """What became of a command whose medic died: running, finished, killed or never_ran."""
    if launch is not None and alive(launch):
        return "running"
    if files.exit_status() is not None:
        return "finished"
    if files.started.exists():
        return "killed"
    return "never_ran"


def spawn(argv: list[str], files: RunFiles, env: dict[str, str], cwd: str | None) -> Launched:
    """Start the wrapper for argv, held at its gate, in a session of its own.

    os.posix_spawn, not subprocess or asyncio: both tie the child to an object whose end
    kills it or warns about it, and a command must outlive the medic that started it.
    medic reaps it by pid when it waits for it.
    """
    files.started.parent.mkdir(parents=True, exist_ok=True)
    files.remove()
    gate_in, gate_out = os.pipe()  # both close-on-exec: only the dup2'd copy reaches sh
    output = os.open(files.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        args = [SHELL, "-c", WRAPPER, "medic-action", str(files.started), str(files.status),
                cwd or "", *argv]  # fmt: skip
        actions = [(os.POSIX_SPAWN_DUP2, gate_in, 0), (os.POSIX_SPAWN_DUP2, output, 1),
                   (os.POSIX_SPAWN_DUP2, output, 2)]  # fmt: skip
        pid = os.posix_spawn(SHELL, args, env, file_actions=actions, setsid=True)
    except BaseException:
        os.close(gate_out)
        raise
    finally:
        os.close(gate_in)
        os.close(output)
    started = start_time(pid)  # fixed at fork; our unreaped child cannot be another process
    return Launched(pid, gate_out, Launch(pid, -1 if started is None else started, boot_id()))


@dataclass(slots=True)
class Launched:
    """A wrapper medic started: its pid, the write end of its gate, and who it is."""

    pid: int
    gate: int
    launch: Launch

    def release(self) -> None:
        """Open the gate: the command runs."""
        with contextlib.suppress(BrokenPipeError):
            os.write(self.gate, b"go\n")
        self.hold_back()

    def hold_back(self) -> None:
        """Close the gate (without a "go" first: the wrapper exits and nothing runs)."""
        if self.gate >= 0:
            os.close(self.gate)
            self.gate = -1

    async def wait(self) -> int | None:
        """Its exit status (negative: killed by that signal); None if not ours to reap."""
        await wait_gone(self.launch)
        while True:  # never a blocking waitpid on the loop: poll if it still runs somehow
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid:
                return os.waitstatus_to_exitcode(status)
            await asyncio.sleep(POLL)

    def kill(self) -> None:
        """SIGKILL its process group and reap it in the background."""
        kill_group(self.pid)
        task = asyncio.get_running_loop().create_task(self.wait())
        _reapers.add(task)
        task.add_done_callback(_reapers.discard)


def kill_group(pid: int) -> None:
    """SIGKILL the command's process group (its pgid is its pid: it leads its session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def wait_gone(launch: Launch) -> None:
    """Wait until a process that is not medic's child has exited."""
    try:
        fd = os.pidfd_open(launch.pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return
        fd = -1  # no pidfd (old kernel, no permission): poll /proc instead
    if fd < 0:
        while alive(launch):
            await asyncio.sleep(POLL)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    try:
        if not alive(launch):  # reused pid, or exited before the pidfd was taken
            return

        def readable() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await gone  # a pidfd becomes readable when its process exits
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def exit_result(code: int, output: str) -> ActionResult:
    """An ActionResult from a command's exit status and the tail of its output."""
    if code == 0:
        return ActionResult(True, output)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return ActionResult(False, f"killed by {name}: {output}".rstrip(": "))
    return ActionResult(False, f"exit status {code}: {output}".rstrip(": "))


async def adopt(
    recorded: Launch | None, files: RunFiles, remaining: float
) -> tuple[ActionResult, bool]:
    """Wait for a command a previous medic started (at most `remaining` seconds: its rung's
    deadline), then read its exit status. Returns the result and whether it timed out
    (then its group was killed)."""
    if recorded is not None and alive(recorded):
        log.warning("adopting pid %d, started before medic restarted", recorded.pid)
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                await wait_gone(recorded)
        except TimeoutError:
            if alive(recorded):
                kill_group(recorded.pid)
            return ActionResult(False, "adopted; no result before its timeout"), True
    code = files.exit_status()
    if code is None:
        return ActionResult(False, "adopted; it ended without an exit status"), False
    result = exit_result(code, files.output_tail())
    return ActionResult(result.ok, f"adopted after a restart: {result.detail}".rstrip(": ")), False
