"""/metrics while something misbehaves on the host, and memory and journal size under a
long flood of distinct episodes.

    .venv/bin/python -m bench.hostile [--duration 10] [--flood-minutes 10]

A real `medic run` on 127.0.0.1. wrk scrapes /metrics at concurrency 1 for `duration`
seconds, idle and then during each of:

- 500 slowloris sockets (each trickles a header byte now and then, never a whole head);
- a 64 MiB header line, sent again and again;
- a 10,000-alert notification (4 MiB), posted again and again, each with new alerts;
- 100 event-stream subscribers reading while wrk floods the webhook; the webhook's
  throughput is measured with and without the subscribers, side by side.

Then the flood: wrk posts notifications of 10 new firing alerts plus the resolution of 5 of
the previous notification's, for `flood-minutes` (1,000,000 distinct episodes in 10 minutes
at the default rate), and medic's RSS and journal size are sampled every 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from bench.scrape import latency_ms, start_medic, stop, wrk
from bench.webhook import BODY, LUA, post_load

CONFIG = """
data_dir: {data}
log_level: error
checks:
  - {{name: host_memory, type: host_memory, min_available_ratio: 0}}
server:
  limits: {{max_connections: 1024, max_subscribers: 128}}
recovery:
  queue_size: 100000
  max_waiting_per_type: 100000
  cooldown: {{base: 1h}}
  retention: {{max_count: 10000, max_episodes: 100000}}
  actions:
    restart: {{type: command, argv: ["true"]}}
  failures:
    generation_pipeline_error: {{ladder: [restart]}}
webhook:
  max_body_bytes: 8MiB
  routes:
    - matchers: ['alertname="LabFlagHigh"']
      failure_type: generation_pipeline_error
"""
FLOOD_LUA = """
local template = [==[{alert}]==]
local head = [==[{head}]==]
local counter = 0
local function alert(n, status)
  local fp = string.format("%016x", n)
  local out = template:gsub("3fd52ad045646600", fp)
  return (out:gsub('"status":"firing"', '"status":"' .. status .. '"'))
end
request = function()
  counter = counter + 1
  local parts = {{}}
  for i = 0, 9 do parts[#parts + 1] = alert(counter * 16 + i + {offset}, "firing") end
  if counter > 1 then
    for i = 0, 4 do parts[#parts + 1] = alert((counter - 1) * 16 + i + {offset}, "resolved") end
  end
  local body = head .. table.concat(parts, ",") .. "]}}"
  return wrk.format("POST", "/api/v1/alerts", {{["Content-Type"] = "application/json"}}, body)
end
"""


def host_port(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def scrape(base: str, duration: int) -> dict[str, float]:
    return wrk(f"{base}/metrics", 1, duration, {}, [])


class Background:
    """Something a thread does until the with-block ends."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError


class Slowloris(Background):
    """`count` sockets that send a request line and then a header byte every few seconds,
    reopening the ones medic closes."""

    def __init__(self, base: str, count: int) -> None:
        super().__init__()
        self._addr = host_port(base)
        self._count = count
        self.opened = 0

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self._addr, timeout=2)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            self.opened += 1
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        socks = [s for s in (self._open() for _ in range(self._count)) if s is not None]
        while not self._stop.wait(2):
            for n, sock in enumerate(list(socks)):
                try:
                    sock.sendall(b"a")
                except OSError:
                    sock.close()
                    socks[n] = self._open() or sock
        for sock in socks:
            sock.close()


class Repeat(Background):
    """Run fn again and again on a thread until stopped; counts the runs."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__()
        self._fn = fn
        self.runs = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._fn()
            self.runs += 1


def big_header(base: str) -> None:
    """One request with a 64 MiB header line (medic answers 431 after 16 KiB)."""
    with socket.create_connection(host_port(base), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        chunk = b"a" * (1 << 20)
        for _ in range(64):
            sock.sendall(chunk)
        sock.recv(1024)


def big_notification(base: str, counter: list[int]) -> None:
    """One 10,000-alert notification with alerts never seen before."""
    import httpx

    template = json.loads(BODY.read_text())
    first = template["alerts"][0]
    counter[0] += 1
    body = copy.deepcopy(template)
    body["alerts"] = [
        dict(first, fingerprint=f"{counter[0]:06x}{n:010x}", labels=dict(first["labels"], n=str(n)))
        for n in range(10_000)
    ]
    httpx.post(f"{base}/api/v1/alerts", json=body, timeout=60)


SUBSCRIBERS = """
import asyncio, sys
async def one(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /api/v1/events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
    while await r.read(65536):
        pass
async def main(port, n):
    await asyncio.gather(*(one(port) for _ in range(n)), return_exceptions=True)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def journal_mib(data: Path) -> float:
    return sum(p.stat().st_size for p in data.glob("medic.db*")) / 2**20


def scenarios(root: Path, duration: int, only: set[str]) -> None:
    data = root / "data"
    config = root / "medic.yml"
    config.write_text(CONFIG.format(data=data))
    proc, base = start_medic(config)
    try:
        idle = scrape(base, duration)
        print(f"idle: /metrics p99 {idle['p99_ms']:.2f} ms", flush=True)
        if "slowloris" in only:
            slowloris(base, duration)
        if "header" in only:
            header(base, duration)
        if "notification" in only:
            notification(base, duration)
        if "subscribers" in only:
            subscribers(root, base, duration, proc.pid)
    finally:
        stop(proc)


def slowloris(base: str, duration: int) -> None:
    """/metrics while 500 sockets trickle header bytes."""
    with Slowloris(base, 500) as loris:
        time.sleep(1)
        during = scrape(base, duration)
    print(f"500 slowloris sockets ({loris.opened} opened): /metrics p99 "
          f"{during['p99_ms']:.2f} ms, errors {during['errors']:.0f}", flush=True)  # fmt: skip


def header(base: str, duration: int) -> None:
    """/metrics while 64 MiB header lines keep coming."""
    with Repeat(lambda: big_header(base)) as sent:
        during = scrape(base, duration)
    print(f"64 MiB header x{sent.runs}: /metrics p99 {during['p99_ms']:.2f} ms", flush=True)


def notification(base: str, duration: int) -> None:
    """/metrics while 10,000-alert notifications keep coming."""
    counter = [0]
    with Repeat(lambda: big_notification(base, counter)) as posts:
        during = scrape(base, duration)
    print(f"10,000-alert notification x{posts.runs}: /metrics p99 "
          f"{during['p99_ms']:.2f} ms", flush=True)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def subscribers(root: Path, base: str, duration: int, pid: int) -> None:
    """The webhook's throughput with and without 100 event-stream readers, alternating;
    and medic's own CPU time per notification in each (the readers, a load generator on
    the same two cores, take CPU that medic then lacks: that is the floor)."""
    body = json.dumps(json.loads(BODY.read_text()), separators=(",", ":"))
    rates: dict[str, list[float]] = {"without": [], "with": []}
    costs: dict[str, list[float]] = {"without": [], "with": []}
    p99s: dict[str, list[float]] = {"without": [], "with": []}
    readers_cpu: list[float] = []
    for n in range(3):  # alternate: the machine drifts
        for mode in ("without", "with"):
            script = root / f"flood-{mode}-{n}.lua"
            script.write_text(LUA.format(body=body, offset=(n * 2 + len(mode)) * 10**9))
            readers = None
            if mode == "with":
                readers = subprocess.Popen([sys.executable, "-c", SUBSCRIBERS,
                                            str(host_port(base)[1]), "100"])  # fmt: skip
                time.sleep(1)
            argv = ["wrk", "-t1", "-c1", f"-d{duration}s", "--latency", f"{base}/metrics"]
            scraper = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            before = cpu_seconds(pid)
            rps, _ = post_load(f"{base}/api/v1/alerts", script, duration)
            costs[mode].append((cpu_seconds(pid) - before) / (rps * duration) * 1e6)
            out, _ = scraper.communicate(timeout=duration + 30)
            if readers is not None:
                readers_cpu.append(cpu_seconds(readers.pid) / (duration + 1))
                readers.kill()
                readers.wait()
            p99s[mode].append(latency_ms(out)["p99"])
            rates[mode].append(rps)
            print(f"  round {n + 1} {mode} 100 subscribers: {rps:,.0f} notifications/s, "
                  f"medic {costs[mode][-1]:.0f} us CPU each", flush=True)  # fmt: skip
    without, with_ = (statistics.median(rates[m]) for m in ("without", "with"))
    cost_without, cost_with = (statistics.median(costs[m]) for m in ("without", "with"))
    print(f"webhook flood: median {without:,.0f}/s without subscribers, {with_:,.0f}/s "
          f"with 100 reading ({with_ / without:.2f}x); medic's CPU per notification "
          f"{cost_without:.0f} -> {cost_with:.0f} us ({cost_with / cost_without:.2f}x); the "
          f"readers used {statistics.median(readers_cpu):.0%} of a core; /metrics p99 "
          f"meanwhile {statistics.median(p99s['with']):.2f} ms (during the flood alone "
          f"{statistics.median(p99s['without']):.2f} ms)", flush=True)  # fmt: skip


def flood(root: Path, minutes: float) -> None:
    data = root / "flood-data"
    config = root / "flood.yml"
    config.write_text(CONFIG.format(data=data))
    template = json.loads(BODY.read_text())
    alert = json.dumps(template["alerts"][0], separators=(",", ":"))
    head = json.dumps({k: v for k, v in template.items() if k != "alerts"},
                      separators=(",", ":"))[:-1] + ',"alerts":['  # fmt: skip
    script = root / "flood.lua"
    script.write_text(FLOOD_LUA.format(alert=alert, head=head, offset=10**12))
    proc, base = start_medic(config)
    seconds = int(minutes * 60)
    samples: list[tuple[float, float, float]] = []
    try:
        argv = ["wrk", "-t1", "-c4", f"-d{seconds}s", "-s", str(script), f"{base}/api/v1/alerts"]
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        while load.poll() is None:
            samples.append((time.monotonic() - started, rss_mib(proc.pid), journal_mib(data)))
            time.sleep(5)
        out = load.stdout.read() if load.stdout else ""
    finally:
        stop(proc)
    db = sqlite3.connect(data / "medic.db")
    episodes = db.execute("SELECT MAX(id) FROM recovery_episodes").fetchone()[0] or 0
    rows = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("recovery_attempts", "recovery_episodes")}  # fmt: skip
    db.close()
    after = [s for s in samples if s[0] >= 60]
    rss = [s[1] for s in after] or [samples[-1][1]]
    print(f"flood {minutes:g} min: {episodes:,} episodes claimed (ids), requests: "
          f"{out.split('requests in')[0].split()[-1] if 'requests in' in out else '?'}; "
          f"RSS after the first minute {min(rss):.1f}-{max(rss):.1f} MiB "
          f"(spread {max(rss) - min(rss):.1f}); journal at most "
          f"{max(s[2] for s in samples):.1f} MiB; rows at the end {rows}", flush=True)  # fmt: skip
    for t, r, j in samples[:: max(1, len(samples) // 12)]:
        print(f"  t={t:5.0f}s rss={r:6.1f} MiB journal={j:6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--flood-minutes", type=float, default=10)
    parser.add_argument("--skip-scenarios", action="store_true")
    parser.add_argument("--only", default="slowloris,header,notification,subscribers",
                        help="scenarios to run, comma-separated")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_scenarios:
            scenarios(Path(tmp), args.duration, set(args.only.split(",")))
        if args.flood_minutes > 0:
            flood(Path(tmp), args.flood_minutes)


if __name__ == "__main__":
    main()
