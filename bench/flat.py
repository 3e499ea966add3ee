"""Costs that stay flat as the work grows (issue 19), each beside its same-run anchor.

    .venv/bin/python -m bench.flat [--only metrics,intake,journal,rss] [--duration 5]
                                   [--rows 1000000]

- metrics: /metrics c1 p50/p99 at ~100 and ~5,000 series while check results arrive every
  second (each fake GPU's utilization, temperature and power change every second),
  beside node_exporter and nginx serving medic's exact 5,000-series bytes; medic's idle
  CPU at both sizes.
- intake: webhook notifications/s at c16 alone, with a back-to-back scraper on medic, and
  with the same scraper on nginx (the floor: what the scraper's own CPU costs), beside a
  bare Starlette endpoint.
- journal: with `--rows` attempts and as many closed episodes: start -> ready and RSS
  beside an empty journal; the history API's p50/p99 for every filter beside the same SQL
  run directly; webhook p99 at 50/s quiet, during a stats-query loop and during a prune of
  2 x `--rows` rows, with the 503s counted; SQLite's own commit rate.
- rss: `medic run` on its default config on this host (no NVML) with all its children,
  beside node_exporter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from bench import anchors
from bench.scrape import PROMETHEUS_ACCEPT, get, start_medic, stop, wrk
from bench.webhook import BODY, LUA, post_load
from bench.webhook import CONFIG as WEBHOOK_BASE

FIRING = BODY.read_text()
FINGERPRINT = "3fd52ad045646600"
JSON = {"Content-Type": "application/json"}


def header() -> None:
    cpus = os.cpu_count()
    model = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    print(f"# bench.flat {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {cpus} CPUs "
          f"({model}), Python {platform.python_version()}")  # fmt: skip
    print(f"machine floor (fixed Python workload): {anchors.machine_floor_ms():.1f} ms")


def spawn(
    config: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, float]:
    """`medic run` on a free port; (process, base URL, seconds from spawn to /-/ready)."""
    began = time.monotonic()
    proc, base = start_medic(config, env)
    return proc, base, time.monotonic() - began


def settle(pid: int, quiet: float = 0.05, timeout: float = 120.0) -> None:
    """Wait until the process uses under `quiet` of a core over a second (bounded)."""
    proc = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(proc.cpu_times()[:2])
        time.sleep(1.0)
        if sum(proc.cpu_times()[:2]) - before < quiet:
            return


def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core the process used over `seconds`."""
    proc = psutil.Process(pid)
    before = sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    return (sum(proc.cpu_times()[:2]) - before) / seconds


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


# --- /metrics ---------------------------------------------------------------------------
def metrics_config(root: Path, processes: int) -> tuple[Path, dict[str, str]]:
    """Checks that report every second; with `processes` > 0, a GPU check (the fake NVML,
    8 GPUs) with that many processes per GPU."""
    from exporter.gpu import fakenvml

    lines = [f"data_dir: {root / 'data'}", "log_level: warning", "checks:",
             "  - {name: host_memory, type: host_memory, min_available_ratio: 0, "
             "interval: 1s}"]  # fmt: skip
    for n in range(8):
        path = root / f"model-{n}.bin"
        path.write_bytes(b"w")
        lines.append(f"  - {{name: model_{n}, type: path, path: {path}, interval: 1s}}")
    env: dict[str, str] = {}
    if processes:
        state = fakenvml.make_state(8)
        for index, gpu in enumerate(state["gpus"]):
            gpu["processes"] = [
                {"pid": 100_000 + index * 10_000 + n, "name": f"worker-{n}", "used": 2**20 * n}
                for n in range(processes)
            ]
        nvml = root / "nvml.json"
        nvml.write_text(json.dumps(state))
        env[fakenvml.ENV] = str(nvml)
        lines.append("  - {name: gpu, type: gpu, nvml_module: exporter.gpu.fakenvml, "
                     "processes: true, expected: 8, interval: 1s}")  # fmt: skip
    config = root / "medic.yml"
    config.write_text("\n".join(lines) + "\n")
    return config, env


@contextmanager
def changing(state: Path) -> Iterator[None]:
    """While the block runs, every second: new utilization, temperature and power for each
    fake GPU (a real driver's figures change every round; its processes rarely do)."""
    done = threading.Event()

    def churn() -> None:
        tick = 0
        while not done.wait(1.0):
            if not state.exists():
                continue
            tick += 1
            current = json.loads(state.read_text())
            for gpu in current["gpus"]:
                gpu["utilization"] = (tick * 7 + len(gpu["uuid"])) % 100
                gpu["temperature"] = 40 + tick % 30
                gpu["power_mw"] = 200_000 + tick * 1000 % 100_000
            temporary = state.with_suffix(".tmp")
            temporary.write_text(json.dumps(current))
            temporary.replace(state)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def _scrapes(url: str, duration: int, gzip: bool) -> dict[str, float]:
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"} if gzip else {}
    return wrk(url, 1, duration, headers)


def bench_metrics(duration: int, rounds: int = 3) -> None:
    """Rounds alternate between the sizes and the anchors: drift hits all of them alike;
    each figure is the median of its rounds."""
    sizes = (("medic, ~100 series", 0), ("medic, ~5,000 series", 600))
    found: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
    counts: dict[str, int] = {}
    idle: dict[str, list[float]] = {}
    big_body = b""
    for _ in range(rounds):
        for label, processes in sizes:
            with tempfile.TemporaryDirectory() as tmp, changing(Path(tmp) / "nvml.json"):
                config, env = metrics_config(Path(tmp), processes)
                proc, base, _ = spawn(config, env)
                try:
                    time.sleep(2.5)  # every check has reported twice
                    _, body = get(f"{base}/metrics")
                    counts[label] = series(body)
                    big_body = body if processes else big_body
                    idle.setdefault(label, []).append(cpu_share(proc.pid, 3))
                    runs = (_scrapes(f"{base}/metrics", duration, False),
                            _scrapes(f"{base}/metrics", duration, True))  # fmt: skip
                    found.setdefault(label, []).append(runs)
                finally:
                    stop(proc)
        with anchors.nginx(big_body) as url:
            plain = _scrapes(url, duration, False)
            found.setdefault("nginx, medic's 5,000-series bytes", []).append((plain, plain))
            counts["nginx, medic's 5,000-series bytes"] = series(big_body)
        with anchors.node_exporter() as (url, _pid):
            _, body = get(url)
            counts["node_exporter"] = series(body)
            runs = (_scrapes(url, duration, False), _scrapes(url, duration, True))
            found.setdefault("node_exporter", []).append(runs)

    def med(label: str, gz: int, key: str) -> float:
        return statistics.median(r[gz][key] for r in found[label])

    small, big = sizes[0][0], sizes[1][0]
    text_ratio = med(big, 0, "p99_ms") / med(small, 0, "p99_ms")
    gz_ratio = med(big, 1, "p99_ms") / med(small, 1, "p99_ms")
    print(f"\n## /metrics at concurrency 1 (wrk, {duration} s each, medians of {rounds} rounds)\n")
    print(f"- c1 p99 at ~5,000 series / at ~100: **{text_ratio:.2f}x** (text), "
          f"**{gz_ratio:.2f}x** (OpenMetrics+gzip); target <= 2x")  # fmt: skip
    nginx_p99 = med("nginx, medic's 5,000-series bytes", 0, "p99_ms")
    print(f"- p99 at ~5,000 series / nginx serving the same bytes: "
          f"{med(big, 0, 'p99_ms') / nginx_p99:.2f}x; / node_exporter's: "
          f"{med(big, 0, 'p99_ms') / med('node_exporter', 0, 'p99_ms'):.2f}x")  # fmt: skip
    print(
        "- medic's idle CPU, share of a core, checks reporting every second: "
        + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in idle.items())
    )
    print()
    print("| server | series | text p50 ms | text p99 ms | gzip p50 ms | gzip p99 ms | "
          "text scrapes/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label in found:
        print(f"| {label} | {counts[label]} | {med(label, 0, 'p50_ms'):.3f} | "
              f"{med(label, 0, 'p99_ms'):.3f} | {med(label, 1, 'p50_ms'):.3f} | "
              f"{med(label, 1, 'p99_ms'):.3f} | {med(label, 0, 'rps'):.0f} |")  # fmt: skip


# --- intake -----------------------------------------------------------------------------
# bench.webhook's config, with a cooldown (an alert storm: after the first episode each
# new one is journaled as skipped, no process per alert) and retention above the journal.
WEBHOOK_CONFIG = WEBHOOK_BASE.replace(
    "  queue_size: 100000\n",
    "  queue_size: 100000\n  max_waiting_per_type: 100000\n  cooldown: {{base: 1h}}\n"
    "  retention: {{max_count: {rows}, max_episodes: {rows}}}\n",
)
assert "retention" in WEBHOOK_CONFIG


def webhook_config(root: Path, rows: int = 100_000) -> Path:
    config = root / "medic.yml"
    config.write_text(WEBHOOK_CONFIG.format(data=root / "data", rows=max(rows * 3, 100_000)))
    return config


def flood_with(alerts_url: str, script: Path, duration: int, scrape_url: str | None) -> float:
    """Notifications/s at c16, with a back-to-back c1 scraper of scrape_url meanwhile."""
    scraper = None
    if scrape_url is not None:
        scraper = subprocess.Popen(
            ["wrk", "-t1", "-c1", f"-d{duration + 2}s", scrape_url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
    try:
        rps, _ = post_load(alerts_url, script, duration)
    finally:
        if scraper is not None:
            scraper.wait(timeout=duration + 10)
    return rps


def bench_intake(duration: int, rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scripts = []
        for n in range(rounds * 3 + 1):
            scripts.append(root / f"post-{n}.lua")
            scripts[-1].write_text(LUA.format(body=FIRING, offset=(n + 1) * 10**9))
        proc, base, _ = spawn(webhook_config(root))
        _, body = get(f"{base}/metrics")
        runs: dict[str, list[float]] = {"alone": [], "medic": [], "nginx": []}
        try:
            with anchors.nginx(body) as nginx_url:
                post_load(f"{base}/api/v1/alerts", scripts[-1], 2)  # warm
                for r in range(rounds):  # interleaved: drift hits all three alike
                    runs["alone"].append(
                        flood_with(f"{base}/api/v1/alerts", scripts[3 * r], duration, None)
                    )
                    runs["medic"].append(
                        flood_with(
                            f"{base}/api/v1/alerts", scripts[3 * r + 1], duration, f"{base}/metrics"
                        )
                    )
                    runs["nginx"].append(
                        flood_with(f"{base}/api/v1/alerts", scripts[3 * r + 2], duration, nginx_url)
                    )
        finally:
            stop(proc)
        with anchors.bare_starlette() as bare:
            bare_rps = statistics.median(
                post_load(f"{bare}/api/v1/alerts", scripts[0], duration)[0] for _ in range(rounds)
            )
    alone, with_medic, with_nginx = (statistics.median(runs[k]) for k in runs)
    print("\n## Webhook intake with a back-to-back scraper (wrk c16 POST, c1 GET; "
          f"medians of {rounds})\n")  # fmt: skip
    print(f"- with a back-to-back scraper on medic / alone: **{with_medic / alone:.2f}x** "
          "(target >= 0.8)")  # fmt: skip
    print(f"- floor, the same scraper on nginx / alone: {with_nginx / alone:.2f}x")
    print(f"- medic alone / a bare Starlette endpoint: {alone / bare_rps:.2f}x")
    print()
    print("| run | notifications/s (each round) | median |")
    print("|---|---|---|")
    labels = {"alone": "alone", "medic": "scraper on medic", "nginx": "scraper on nginx"}
    for key, label in labels.items():
        each = ", ".join(f"{v:.0f}" for v in runs[key])
        print(f"| {label} | {each} | {statistics.median(runs[key]):.0f} |")
    print(f"| bare Starlette, alone | | {bare_rps:.0f} |")


# --- journal ----------------------------------------------------------------------------
TYPES = ["generation_pipeline_error", "gpu_oom", "disk_full", "model_loading_failure",
         "server_wedged", "xid_79"]  # fmt: skip
OUTCOMES = ["succeeded", "failed", "not_recovered", "skipped_cooldown", "duplicate",
            "exhausted", "timeout"]  # fmt: skip


def fill_journal(data: Path, rows: int, age: float = 0.0) -> None:
    """A journal in medic's layout with `rows` finished attempts and as many closed episodes,
    the newest `age` seconds old, spread over the seconds before."""
    from exporter.clock import SystemClock
    from exporter.recovery.journal import Journal
    from exporter.storage.sqlite import DB_FILE, Database

    data.mkdir(parents=True, exist_ok=True)
    db = Database(data / DB_FILE)
    Journal(db, SystemClock())  # the tables, at this layout
    db.close()
    conn = sqlite3.connect(data / DB_FILE, isolation_level=None)
    newest = time.time() - age
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO recovery_attempts (id, failure_type, action, source, fingerprint, "
        "dedup_key, started, ended, outcome, detail, episode_id, rung) "
        "VALUES (?, ?, 'restart', 'alert', ?, ?, ?, ?, ?, 'exit 0 after 1.2 s', ?, 0)",
        ((n, TYPES[n % 6], f"{n:016x}", f"key-{n}", newest - (rows - n) * 0.5,
          newest - (rows - n) * 0.5 + 1, OUTCOMES[n % 7], n)
         for n in range(1, rows + 1)),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO recovery_episodes (id, dedup_key, failure_type, source, state, received, "
        "updated) VALUES (?, ?, ?, 'alert', 'succeeded', ?, ?)",
        ((n, f"key-{n}", TYPES[n % 6], newest - (rows - n) * 0.5, newest - (rows - n) * 0.5)
         for n in range(1, rows + 1)),
    )  # fmt: skip
    conn.execute("COMMIT")
    conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Sender:
    """POSTs a new firing alert every 1/rate seconds (open loop) and times each answer."""

    def __init__(self, base: str, rate: float = 50.0) -> None:
        self._url = f"{base}/api/v1/alerts"
        self._rate = rate
        self._count = 0

    def run(self, seconds: float) -> tuple[list[float], int]:
        """(latencies in ms, answers other than 2xx)."""
        latencies, bad = [], 0
        with httpx.Client(timeout=10) as client:
            began = time.monotonic()
            due = began
            while time.monotonic() - began < seconds:
                self._count += 1
                body = FIRING.replace(FINGERPRINT, f"f{self._count:015x}")
                sent = time.perf_counter()
                answer = client.post(self._url, content=body, headers=JSON)
                status = answer.status_code
                latencies.append((time.perf_counter() - sent) * 1e3)
                bad += not 200 <= status < 300
                due += 1 / self._rate
                time.sleep(max(0.0, due - time.monotonic()))
        return latencies, bad


@contextmanager
def looping(action: Callable[[], object]) -> Iterator[list[int]]:
    """Run action in a loop on a thread while the block runs; yields [runs so far]."""
    done, count = threading.Event(), [0]

    def loop() -> None:
        while not done.is_set():
            action()
            count[0] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        done.set()
        thread.join(timeout=120)


GPU, EXHAUSTED, HOUR = {"failure_type": "gpu_oom"}, {"outcome": "exhausted"}, {"since": "1h"}
FILTERS: list[dict[str, str]] = [
    {}, GPU, EXHAUSTED, HOUR, GPU | EXHAUSTED, GPU | HOUR, EXHAUSTED | HOUR,
    GPU | EXHAUSTED | HOUR,
    {"since": str(int(time.time() + 3600))},  # matches nothing: the worst case of a scan
]  # fmt: skip


def direct_sql(db: Path, query: dict[str, str]) -> float:
    """The history page's two statements run directly in sqlite3, in ms (the anchor)."""
    from exporter.http.api import parse_since
    from exporter.recovery.history import COLUMNS

    where: list[str] = []
    params: list[object] = []
    for column in ("failure_type", "outcome"):
        if column in query:
            where.append(f"{column} = ?")
            params.append(query[column])
    if "since" in query:
        where.append("started >= ?")
        params.append(parse_since(query["since"]))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    began = time.perf_counter()
    conn.execute(f"SELECT COUNT(*) FROM recovery_attempts{clause}", params).fetchall()
    conn.execute(f"SELECT {COLUMNS} FROM recovery_attempts{clause} ORDER BY started DESC, "
                 "id DESC LIMIT 100 OFFSET 0", params).fetchall()  # fmt: skip
    took = (time.perf_counter() - began) * 1e3
    conn.close()
    return took


def bench_journal(rows: int, seconds: float) -> None:
    from exporter.storage.sqlite import DB_FILE

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"\n## Journal at {rows:,} attempts and {rows:,} closed episodes\n")
        commits = anchors.sqlite_commits_per_second(root)
        print(f"- anchor: SQLite's own single-row commits on this disk: {commits:,.0f}/s")
        # Start -> ready, RSS: empty vs full.
        empty, full = root / "empty", root / "full"
        empty.mkdir()
        full.mkdir()
        began = time.monotonic()
        fill_journal(full / "data", rows)
        print(f"- (journal written in {time.monotonic() - began:.1f} s)")
        starts: dict[str, list[tuple[float, float, float]]] = {"empty": [], "full": []}
        for _ in range(3):
            for name, where in (("empty", empty), ("full", full)):
                proc, base, ready = spawn(webhook_config(where, rows))
                rss = anchors.rss_mib(proc.pid)
                settle(proc.pid)
                starts[name].append((ready, rss, anchors.rss_mib(proc.pid)))
                stop(proc)
        med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in starts.items()}
        print(f"- start -> ready, full / empty: **{med['full'][0] / med['empty'][0]:.2f}x** "
              f"({med['full'][0]:.3f} s / {med['empty'][0]:.3f} s); RSS at ready "
              f"**{med['full'][1] / med['empty'][1]:.2f}x** ({med['full'][1]:.1f} / "
              f"{med['empty'][1]:.1f} MiB); RSS once settled (dedup filter filled) "
              f"{med['full'][2] / med['empty'][2]:.2f}x ({med['full'][2]:.1f} / "
              f"{med['empty'][2]:.1f} MiB); target 1.2x; medians of 3")  # fmt: skip

        proc, base, _ = spawn(webhook_config(full, rows))
        try:
            settle(proc.pid)
            db = full / "data" / DB_FILE
            print("\n| history filter | API p50 ms | API p99 ms | same SQL direct, median ms "
                  "| total |")  # fmt: skip
            print("|---|---|---|---|---|")
            worst = 0.0
            with httpx.Client(timeout=30) as client:
                for query in FILTERS:
                    times, total = [], 0
                    client.get(f"{base}/api/v1/recoveries", params=query)  # pages cached
                    for _ in range(50):
                        began = time.perf_counter()
                        answer = client.get(f"{base}/api/v1/recoveries", params=query)
                        times.append((time.perf_counter() - began) * 1e3)
                        total = answer.json()["total"]
                    direct = statistics.median(direct_sql(db, query) for _ in range(5))
                    worst = max(worst, pct(times, 0.99))
                    label = ", ".join(f"{k}={v}" for k, v in query.items()) or "(none)"
                    print(f"| {label} | {statistics.median(times):.1f} | {pct(times, 0.99):.1f} "
                          f"| {direct:.1f} | {total} |")  # fmt: skip
                print(f"\n- worst history p99: **{worst:.1f} ms** (target <= 50 ms)")
                sender = Sender(base)
                quiet, quiet_bad = sender.run(seconds)

                def stats() -> None:
                    client_stats.get(f"{base}/api/v1/recoveries/stats")

                with httpx.Client(timeout=60) as client_stats, looping(stats) as count:
                    loaded, loaded_bad = sender.run(seconds)
                print(f"- webhook at 50/s, p99 during a stats loop / quiet: "
                      f"**{pct(loaded, 0.99) / pct(quiet, 0.99):.2f}x** ({pct(loaded, 0.99):.1f} / "
                      f"{pct(quiet, 0.99):.1f} ms; {count[0]} stats queries); non-2xx "
                      f"{loaded_bad} and {quiet_bad} (target 2x, 0)")  # fmt: skip
        finally:
            stop(proc)


def bench_prune(rows: int, seconds: float) -> None:
    from exporter.storage.sqlite import DB_FILE

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The prune: 2 x rows attempts older than max_age, swept at start.
        old = root / "old"
        old.mkdir()
        fill_journal(old / "data", rows * 2, age=40 * 86400)
        proc, base, _ = spawn(webhook_config(old, rows * 2))
        try:
            sender = Sender(base)
            db = old / "data" / DB_FILE
            during: list[float] = []
            bad = 0
            began = time.monotonic()
            while True:
                latencies, wrong = sender.run(2.0)
                during += latencies
                bad += wrong
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                left = conn.execute("SELECT COUNT(*) FROM recovery_attempts WHERE started < ?",
                                    (time.time() - 30 * 86400,)).fetchone()[0]  # fmt: skip
                conn.close()
                if left == 0 or time.monotonic() - began > 300:
                    break
            pruned_in = time.monotonic() - began
            settle(proc.pid)
            quiet, quiet_bad = sender.run(seconds)
            print(f"- webhook at 50/s, p99 during the prune of {rows * 2:,} rows / quiet after: "
                  f"**{pct(during, 0.99) / pct(quiet, 0.99):.2f}x** ({pct(during, 0.99):.1f} / "
                  f"{pct(quiet, 0.99):.1f} ms over {len(during)} and {len(quiet)} answers); "
                  f"non-2xx {bad} and {quiet_bad}; the prune took {pruned_in:.0f} s "
                  f"({'done' if left == 0 else f'{left} rows left'})")  # fmt: skip
        finally:
            stop(proc)


# --- RSS --------------------------------------------------------------------------------
def bench_rss() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = anchors.free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "MEDIC_DATA_DIR": str(Path(tmp) / "data")},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while get(f"{base}/-/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(3)  # helpers that would stay have started by now
        total, alone = anchors.rss_mib(proc.pid), anchors.rss_mib(proc.pid, children=False)
        helpers = len(psutil.Process(proc.pid).children(recursive=True))
        stop(proc)
    with anchors.node_exporter() as (_, pid):
        time.sleep(1)
        node = anchors.rss_mib(pid)
    print("\n## RSS on a host without NVML (default config, 3 s after ready)\n")
    print(f"- medic with every child: **{total:.1f} MiB** (target <= 60); medic alone "
          f"{alone:.1f} MiB; {helpers} child processes; node_exporter {node:.1f} MiB "
          f"(medic / node_exporter: {total / node:.2f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="rss,metrics,intake,journal,prune")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    header()
    parts = args.only.split(",")
    if "rss" in parts:
        bench_rss()
    if "metrics" in parts:
        bench_metrics(args.duration)
    if "intake" in parts:
        bench_intake(args.duration)
    if "journal" in parts:
        bench_journal(args.rows, seconds=10.0)
    if "prune" in parts:
        bench_prune(args.rows, seconds=10.0)


if __name__ == "__main__":
    main()
