"""Webhook intake under load, with /metrics measured at the same time.

    .venv/bin/python -m bench.webhook [--duration 5]

A real `medic run` with a route for Alertmanager's real firing body (shared/alertmanager).
wrk POSTs it at concurrency 16, each request a new episode (its fingerprint varies), while a
second wrk scrapes /metrics at concurrency 1. The journal is on: afterwards every accepted
notification must be in it (as an attempt or still in the inbox).
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

from bench.scrape import start_medic, stop, wrk

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


def post_load(url: str, script: Path, duration: int) -> tuple[float, str]:
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, out


def latency_ms(wrk_output: str) -> dict[str, float]:
    """wrk's latency percentiles (its --latency table), in ms."""
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    found = re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", wrk_output, re.M)
    return {f"p{q}": float(value) * unit[u] for q, value, u in found}


def scrape_during_flood(metrics_url: str, alerts_url: str, script: Path, duration: int):
    """(notifications/s, POST wrk output, scrape latencies) with both running at once."""
    scraper = subprocess.Popen(
        ["wrk", "-t1", "-c1", f"-d{duration}s", "--latency", metrics_url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    rps, out = post_load(alerts_url, script, duration)
    scraped, _ = scraper.communicate(timeout=duration + 30)
    return rps, out, latency_ms(scraped)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    body = json.dumps(json.loads(BODY.read_text()), separators=(",", ":"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "medic.yml").write_text(CONFIG.format(data=root / "data"))
        (root / "other.yml").write_text(CONFIG.format(data=root / "other"))
        script = root / "post.lua"
        script.write_text(LUA.format(body=body, offset=int(time.time())))
        proc, base = start_medic(root / "medic.yml")
        other, other_base = start_medic(root / "other.yml")
        try:
            idle = wrk(f"{base}/metrics", 1, args.duration, {})
            alerts = f"{base}/api/v1/alerts"
            rps, out, loaded = scrape_during_flood(f"{base}/metrics", alerts, script, args.duration)
            # The same flood while scraping a second, idle medic: what the machine itself
            # (2 cores shared with wrk) costs a scrape, without medic's own loop and GIL.
            rps2, _, floor = scrape_during_flood(
                f"{other_base}/metrics", alerts, script, args.duration
            )
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        finally:
            stop(proc)  # a clean stop: the journal is flushed and closed
            stop(other)
        db = sqlite3.connect(root / "data" / "medic.db")
        attempts = db.execute("SELECT COUNT(*) FROM recovery_attempts").fetchone()[0]
        inbox = db.execute("SELECT COUNT(*) FROM recovery_inbox").fetchone()[0]
        db.close()
    total = int(rps * args.duration)
    both = (total + rps2 * args.duration) * 0.99
    print(f"POST /api/v1/alerts at c=16: {rps:,.0f} notifications/s (~{total} in "
          f"{args.duration}s), non-2xx: {non2xx.group(1) if non2xx else 0}")  # fmt: skip
    print(f"journal afterwards: {attempts} attempts + {inbox} inbox rows (both floods; "
          f"every notification accounted for: {attempts + inbox >= both})")  # fmt: skip
    print(f"/metrics p99 at c=1: idle {idle['p99_ms']:.3f} ms, under the POST load "
          f"{loaded['p99']:.3f} ms ({loaded['p99'] / idle['p99_ms']:.1f}x); "
          f"p50 {loaded['p50']:.3f}, p90 {loaded['p90']:.3f} ms")  # fmt: skip
    print(f"a second, idle medic scraped during the same flood: p99 {floor['p99']:.3f} ms "
          f"({floor['p99'] / idle['p99_ms']:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
