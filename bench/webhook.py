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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    body = json.dumps(json.loads(BODY.read_text()), separators=(",", ":"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "medic.yml").write_text(CONFIG.format(data=root / "data"))
        script = root / "post.lua"
        script.write_text(LUA.format(body=body, offset=int(time.time())))
        proc, base = start_medic(root / "medic.yml")
        try:
            idle = wrk(f"{base}/metrics", 1, args.duration, {})
            scraper = subprocess.Popen(
                ["wrk", "-t1", "-c1", f"-d{args.duration}s", "--latency", f"{base}/metrics"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            rps, out = post_load(f"{base}/api/v1/alerts", script, args.duration)
            scraped, _ = scraper.communicate(timeout=args.duration + 30)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            time.sleep(0.5)  # let the writer commit its last batch before counting
        finally:
            stop(proc)
        db = sqlite3.connect(root / "data" / "medic.db")
        attempts = db.execute("SELECT COUNT(*) FROM recovery_attempts").fetchone()[0]
        inbox = db.execute("SELECT COUNT(*) FROM recovery_inbox").fetchone()[0]
        db.close()
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", scraped, re.M)
    assert p99 is not None
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    loaded_p99 = float(p99.group(1)) * unit
    total = int(rps * args.duration)
    print(f"POST /api/v1/alerts at c=16: {rps:,.0f} notifications/s (~{total} in "
          f"{args.duration}s), non-2xx: {non2xx.group(1) if non2xx else 0}")  # fmt: skip
    print(f"journal afterwards: {attempts} attempts + {inbox} inbox rows "
          f"(every notification accounted for: {attempts + inbox >= total * 0.99})")  # fmt: skip
    print(f"/metrics p99 at c=1: idle {idle['p99_ms']:.3f} ms, under the POST load "
          f"{loaded_p99:.3f} ms ({loaded_p99 / idle['p99_ms']:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
