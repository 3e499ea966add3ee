"""The filesystem helper process: `python -m exporter.fsworker`.

statvfs, stat and a one-byte read can block in the kernel for as long as a mount is hung
(a dead NFS server, a FUSE daemon that stopped answering), in uninterruptible sleep that no
signal ends. In medic's own process such a thread keeps the process from exiting after
SIGTERM; here it only keeps this helper, which medic abandons (SIGKILL, delivered when the
call returns) and replaces. When medic exits, stdin closes and the helper ends; one blocked
in the kernel already has its SIGKILL pending. (Not PR_SET_PDEATHSIG: it fires when the
*thread* that started the helper ends, and checks run on short-lived threads.)

One JSON request per line on stdin, one answer per line on stdout; exits when stdin
closes. Standard library only, to start fast and small.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from typing import Any


def statvfs(path: str) -> dict[str, Any]:
    """Size and free space of the filesystem holding path, and path's real location."""
    try:
        real = os.path.realpath(path)
        st = os.statvfs(path)
    except OSError as exc:
        return {"ok": False, "strerror": exc.strerror or str(exc)}
    return {"ok": True, "realpath": real, "size": st.f_blocks * st.f_frsize,
            "avail": st.f_bavail * st.f_frsize}  # fmt: skip


def inspect(path: str, kind: str, min_size: int, readable: bool, non_empty: bool) -> dict[str, Any]:
    """Whether path is there as the kind of thing it should be, and what is wrong."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"present": False, "problems": ["missing"]}
    except OSError as exc:
        return {"present": False, "problems": [f"cannot stat: {exc.strerror or exc}"]}
    is_dir = stat.S_ISDIR(st.st_mode)
    if kind == "file" and is_dir:
        return {"present": False, "problems": ["is a directory, expected a file"]}
    if kind == "dir" and not is_dir:
        return {"present": False, "problems": ["is not a directory"]}
    problems = []
    if not is_dir and st.st_size < min_size:
        problems.append(f"size {st.st_size} bytes is below {min_size}")
    try:
        if is_dir and (readable or non_empty):
            with os.scandir(path) as entries:
                if non_empty and next(entries, None) is None:
                    problems.append("directory is empty")
        elif readable:
            with open(path, "rb") as handle:
                handle.read(1)
    except OSError as exc:
        problems.append(f"cannot read: {exc.strerror or exc}")
    return {"present": True, "problems": problems}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer."""
    op = request.get("op")
    if op == "statvfs":
        return statvfs(str(request["path"]))
    if op == "inspect":
        return inspect(str(request["path"]), str(request["kind"]), int(request["min_size"]),
                       bool(request["readable"]), bool(request["non_empty"]))  # fmt: skip
    return {"ok": False, "strerror": f"unknown op {op!r}"}


def watch_parent(parent: int, every: float = 1.0) -> None:
    """Exit as soon as medic is gone (this process was re-parented), even while the main
    thread is blocked in a killable call (a FIFO, a soft mount) that stdin's EOF cannot
    interrupt."""
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve requests until stdin closes (or medic, --parent PID, goes away)."""
    args = argv if argv is not None else sys.argv[1:]
    parent = int(args[1]) if len(args) == 2 and args[0] == "--parent" else os.getppid()
    # The pid medic passed, not getppid() now: medic may already be gone when this starts.
    threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    for line in sys.stdin:
        reply = answer(json.loads(line))
        sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    from exporter.helper import helper_main

    helper_main(main)  # also ignores SIGINT: a Ctrl-C to medic's group is medic's
