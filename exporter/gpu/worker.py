"""The NVML helper process: `python -m exporter.gpu.worker [--events] --nvml-module NAME`.

Collect mode answers one JSON line per request line on stdin. Events mode waits for XID
events and writes one JSON line per event. Both exit when stdin closes, which is how medic
lets go of a helper that hangs in the driver: it is never killed while inside NVML (some
drivers fault when that happens); it exits by itself once the call returns.
Imports only the standard library and the NVML module, to start fast and small.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import threading
from types import ModuleType
from typing import Any, TextIO

from exporter.gpu.reader import LIBRARY_NOT_FOUND, LIFECYCLE, NvmlFailure, failure, read_all

EVENT_WAIT_MS = 1000  # short waits keep the loop responsive to stdin closing


def _send(out: TextIO, message: dict[str, Any], lock: threading.Lock | None = None) -> None:
    line = json.dumps(message, separators=(",", ":")) + "\n"
    if lock is None:
        out.write(line)
        out.flush()
        return
    with lock:
        out.write(line)
        out.flush()


class Collector:
    """Keeps NVML initialised between rounds; shuts it down after a lifecycle error."""

    def __init__(self, nvml: ModuleType) -> None:
        self.nvml = nvml
        self.initialised = False

    def collect(self, processes: bool) -> dict[str, Any]:
        try:
            if not self.initialised:
                try:
                    self.nvml.nvmlInit()
                except self.nvml.NVMLError as exc:
                    raise failure(self.nvml, exc) from None
                self.initialised = True
            reply = read_all(self.nvml, processes)
        except NvmlFailure as err:
            if err.code in LIFECYCLE:
                self._shutdown()
            return {"ok": False, "error": err.as_dict(), "lifecycle": err.code in LIFECYCLE}
        if reply["errors"]:
            self._shutdown()  # a GPU fell off: re-initialise before the next round
        return {"ok": True, **reply}

    def _shutdown(self) -> None:
        if self.initialised:
            with contextlib.suppress(Exception):  # already broken; nothing more to release
                self.nvml.nvmlShutdown()
        self.initialised = False


def serve_collect(nvml: ModuleType, stdin: TextIO, stdout: TextIO) -> None:
    """Answer requests until stdin closes."""
    collector = Collector(nvml)
    for line in stdin:
        try:
            request = json.loads(line)
        except ValueError:
            _send(stdout, {"ok": False, "error": {"code": -1, "name": "BadRequest"}})
            continue
        if request.get("op") == "collect":
            reply = collector.collect(bool(request.get("processes")))
            gpus = reply.pop("gpus", None) if reply["ok"] else None
            if gpus is None:
                _send(stdout, reply)
            else:
                # A line per GPU after the reply: the parent parses each apart, so a busy
                # host's thousands of processes never hold its GIL in one 2 ms json.loads.
                _send(stdout, {**reply, "gpus_follow": len(gpus)})
                for gpu in gpus:
                    _send(stdout, gpu)
            if not reply["ok"] and reply["error"].get("code") == LIBRARY_NOT_FOUND:
                return  # no NVML on this host: no helper stays (medic asks again later)
        else:
            _send(stdout, {"ok": False, "error": {"code": -1, "name": "UnknownOp"}})
    collector._shutdown()


def serve_events(nvml: ModuleType, stdin: TextIO, stdout: TextIO) -> None:
    """Report XID critical errors as they happen, until stdin closes."""
    closed = threading.Event()
    lock = threading.Lock()

    def watch_stdin() -> None:
        for _ in stdin:
            pass
        closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    backoff = 1.0
    while not closed.is_set():
        try:
            event_set, uuids = _register(nvml)
        except nvml.NVMLError as exc:
            error = failure(nvml, exc).as_dict()
            _send(stdout, {"status": "down", "error": error}, lock)
            if error.get("code") == LIBRARY_NOT_FOUND:
                return  # no NVML on this host: exit (the watcher asks again later)
            closed.wait(backoff)
            backoff = min(backoff * 2, 300.0)
            continue
        backoff = 1.0
        _send(stdout, {"status": "up", "gpus": len(uuids)}, lock)
        try:
            _wait_loop(
                nvml, event_set=event_set, uuids=uuids, closed=closed, stdout=stdout, lock=lock
            )
        except nvml.NVMLError as exc:
            _send(stdout, {"status": "down", "error": failure(nvml, exc).as_dict()}, lock)
            closed.wait(backoff)  # e.g. a GPU was lost: re-register after a pause
        finally:
            try:
                nvml.nvmlEventSetFree(event_set)
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass


def _register(nvml: ModuleType) -> tuple[Any, dict[str, int]]:
    nvml.nvmlInit()
    event_set = nvml.nvmlEventSetCreate()
    uuids: dict[str, int] = {}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuids[str(nvml.nvmlDeviceGetUUID(handle))] = index
        try:
            nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != 3:  # not supported on this GPU: skip it
                raise
    return event_set, uuids


def _wait_loop(
    nvml: ModuleType,
    *,
    event_set: Any,
    uuids: dict[str, int],
    closed: threading.Event,
    stdout: TextIO,
    lock: threading.Lock,
) -> None:
    while not closed.is_set():
        try:
            data = nvml.nvmlEventSetWait(event_set, EVENT_WAIT_MS)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == 10:  # NVML_ERROR_TIMEOUT: nothing happened
                continue
            raise
        if data.eventType != nvml.nvmlEventTypeXidCriticalError:
            continue
        uuid = str(nvml.nvmlDeviceGetUUID(data.device))
        event = {"xid": int(data.eventData), "uuid": uuid, "gpu": uuids.get(uuid, -1)}
        _send(stdout, event, lock)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the helper process."""
    parser = argparse.ArgumentParser(prog="python -m exporter.gpu.worker")
    parser.add_argument("--nvml-module", default="pynvml")
    parser.add_argument("--events", action="store_true")
    args = parser.parse_args(argv)
    nvml = importlib.import_module(args.nvml_module)
    if args.events:
        serve_events(nvml, sys.stdin, sys.stdout)
    else:
        serve_collect(nvml, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    from exporter.helper import helper_main

    helper_main(main)
