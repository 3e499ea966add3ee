"""Webhook intake under load, with /metrics measured at the same time.

    .venv/bin/python -m bench.webhook [--duration 5] [--pin]

A real `medic run` with a route for Alertmanager's real firing body (shared/alertmanager).
wrk POSTs it at concurrency 16, each request a new episode (its fingerprint varies), while a
second wrk scrapes /metrics at concurrency 1. The journal is on: afterwards every accepted
notification must be in it (as an attempt or still in the inbox). Then the same flood runs
while wrk scrapes a second, idle medic: the floor that the shared cores alone set.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from bench.scrape import latency_ms, start_medic, stop, wrk

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "alertmanager"
BODY = FIXTURES / "alertmanager-firing.json"
CONFIG = """
data_dir: {data}
log_level: error
checks:
  - {{name: host_memory, type: host_memory, min_available_ratio: 0}}
recovery:
  queue_size: 100000
  actions:
    restart: {{type: command, argv: ["true"]}}
  failures:
    generation_pipeline_error: {{ladder: [restart]}}
webhook:
  routes:
    - matchers: ['alertname="LabFlagHigh"']
      failure_type: generation_pipeline_error
"""
LUA = """
local body = [==[{body}]==]
local counter = 0
request = function()
  counter = counter + 1
  local fp = string.format("%016x", counter + {offset})
  return wrk.format("POST", "/api/v1/alerts",
    {{["Content-Type"] = "application/json"}}, (body:gsub("3fd52ad045646600", fp)))
end
"""


def post_load(url: str, script: Path, duration: int, pin: bool = False) -> tuple[float, str]:
    out = subprocess.run(
        [*loadgen(pin, flood=True), "wrk", "-t1", "-c16", f"-d{duration}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, out


def loadgen(pin: bool, flood: bool = False) -> list[str]:
    """Command prefix for a wrk: with --pin on CPU 1, the flood at the lowest priority."""
    if not pin:
        return []
    return ["taskset", "-c", "1", *(["nice", "-n", "19"] if flood else [])]


def scrape_during_flood(
    metrics_url: str, alerts_url: str, script: Path, duration: int, pin: bool = False
) -> tuple[float, str, dict[str, float]]:
    """(notifications/s, POST wrk output, scrape latencies) with both running at once."""
    scraper = subprocess.Popen(
        [*loadgen(pin), "wrk", "-t1", "-c1", f"-d{duration}s", "--latency", metrics_url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    rps, out = post_load(alerts_url, script, duration, pin)
    scraped, _ = scraper.communicate(timeout=duration + 30)
    return rps, out, latency_ms(scraped)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument(
        "--pin", action="store_true",
        help="medic on CPU 0, the load generators on CPU 1 (the flood niced): medic's own "
             "share of the scrape latency, without the machine's (skips the floor)",
    )  # fmt: skip
    args = parser.parse_args()
    body = json.dumps(json.loads(BODY.read_text()), separators=(",", ":"))
    floor: dict[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "medic.yml").write_text(CONFIG.format(data=root / "data"))
        (root / "other.yml").write_text(CONFIG.format(data=root / "other"))
        script = root / "post.lua"
        script.write_text(LUA.format(body=body, offset=int(time.time())))
        proc, base = start_medic(root / "medic.yml")
        if args.pin:
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(proc.pid)], check=True,
                           capture_output=True)  # fmt: skip
        other, other_base = (None, "") if args.pin else start_medic(root / "other.yml")
        try:
            idle = wrk(f"{base}/metrics", 1, args.duration, {}, loadgen(args.pin))
            alerts = f"{base}/api/v1/alerts"
            rps, out, loaded = scrape_during_flood(
                f"{base}/metrics", alerts, script, args.duration, args.pin
            )
            total = rps * args.duration
            if other is not None:
                # The same flood while scraping a second, idle medic: what the machine
                # (2 cores shared with wrk) costs a scrape, without medic's loop and GIL.
                rps2, _, floor = scrape_during_flood(
                    f"{other_base}/metrics", alerts, script, args.duration
                )
                total += rps2 * args.duration
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        finally:
            stop(proc)  # a clean stop: the journal is flushed and closed
            if other is not None:
                stop(other)
        db = sqlite3.connect(root / "data" / "medic.db")
        attempts = db.execute("SELECT COUNT(*) FROM recovery_attempts").fetchone()[0]
        inbox = db.execute("SELECT COUNT(*) FROM recovery_inbox").fetchone()[0]
        db.close()
    pinned = " (medic pinned to CPU 0, wrk to CPU 1)" if args.pin else ""
    print(f"POST /api/v1/alerts at c=16: {rps:,.0f} notifications/s, "
          f"non-2xx: {non2xx.group(1) if non2xx else 0}{pinned}")  # fmt: skip
    print(f"journal afterwards: {attempts} attempts + {inbox} inbox rows "
          f"(every notification accounted for: {attempts + inbox >= total * 0.99})")  # fmt: skip
    print(f"/metrics p99 at c=1: idle {idle['p99_ms']:.3f} ms, under the POST load "
          f"{loaded['p99']:.3f} ms ({loaded['p99'] / idle['p99_ms']:.1f}x); "
          f"p50 {loaded['p50']:.3f}, p90 {loaded['p90']:.3f} ms")  # fmt: skip
    if floor is not None:
        print(f"a second, idle medic scraped during the same flood: p99 {floor['p99']:.3f} "
              f"ms ({floor['p99'] / idle['p99_ms']:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
