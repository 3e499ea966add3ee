"""Webhook intake under load, with /metrics measured at the same time.

    .venv/bin/python -m bench.webhook [--duration 5] [--pin]

A real `medic run` with a route for Alertmanager's real firing body (shared/alertmanager).
wrk POSTs it at concurrency 16, each request a new episode (its fingerprint varies), while a
second wrk scrapes /metrics at concurrency 1. The journal is on: afterwards every accepted
notification must be in it (one episode each). Then the same flood runs while wrk scrapes
a second, idle medic: the floor that the shared cores alone set.

    .venv/bin/python -m bench.webhook --compare /tmp/medic-before [--rounds 3]

runs an older checkout (a git worktree) and this one in turn, in one run, and prints the
medians and their ratio: absolute figures drift between days on shared machines.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
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


def persisted(data: Path) -> int:
    """Notifications the journal holds: episodes (this layout), or attempts plus inbox rows
    (the first layout, when comparing with an older tree)."""
    db = sqlite3.connect(data / "medic.db")
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if "recovery_inbox" in tables:
            queries = [
                "SELECT COUNT(*) FROM recovery_attempts",
                "SELECT COUNT(*) FROM recovery_inbox",
            ]
        else:
            queries = ["SELECT COUNT(*) FROM recovery_episodes"]
        return sum(int(db.execute(q).fetchone()[0]) for q in queries)
    finally:
        db.close()


def flood(root: Path, body: str, duration: int, tree: Path | None, tag: str) -> dict[str, float]:
    """One medic (from `tree`, else this checkout) under the flood, scraped meanwhile."""
    data = root / f"data-{tag}"
    config = root / f"medic-{tag}.yml"
    config.write_text(CONFIG.format(data=data))
    scripts = []
    for n in range(2):  # each flood its own fingerprints: every request a new episode
        scripts.append(root / f"post-{tag}-{n}.lua")
        scripts[-1].write_text(LUA.format(body=body, offset=(n + 1) * 10**9))
    env = {"PYTHONPATH": str(tree)} if tree is not None else None
    proc, base = start_medic(config, env)
    try:
        alone, out_alone = post_load(f"{base}/api/v1/alerts", scripts[0], duration)
        idle = wrk(f"{base}/metrics", 1, duration, {}, [])
        rps, out, loaded = scrape_during_flood(
            f"{base}/metrics", f"{base}/api/v1/alerts", scripts[1], duration
        )
    finally:
        stop(proc)
    non2xx = [re.search(r"Non-2xx or 3xx responses: (\d+)", o) for o in (out_alone, out)]
    return {"alone": alone, "rps": rps, "persisted": persisted(data),
            "answered": (alone + rps) * duration,
            "non2xx": float(sum(int(m.group(1)) for m in non2xx if m)),
            "idle_p99": idle["p99_ms"], "p99": loaded["p99"]}  # fmt: skip


def compare(before: Path, duration: int, rounds: int) -> None:
    """The older tree and this checkout, alternating, in one run: medians and ratios."""
    body = json.dumps(json.loads(BODY.read_text()), separators=(",", ":"))
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            for name, tree in (("before", before), ("after", None)):
                result = flood(Path(tmp), body, duration, tree, f"{name}{n}")
                runs[name].append(result)
                kept = result["persisted"] >= 0.99 * result["answered"]
                line = (f"  {name} round {n + 1}: {result['alone']:,.0f} notifications/s "
                        f"alone, {result['rps']:,.0f}/s while scraped, every answered one in "
                        f"the journal: {kept}; /metrics p99 {result['p99']:.3f} ms (idle "
                        f"{result['idle_p99']:.3f})")  # fmt: skip
                print(line, flush=True)
    med = {name: {k: statistics.median(r[k] for r in found) for k in found[0]}
           for name, found in runs.items()}  # fmt: skip
    for name in ("before", "after"):
        m = med[name]
        print(f"{name}: median {m['alone']:,.0f} persisted notifications/s at c=16 alone, "
              f"{m['rps']:,.0f}/s while a back-to-back scraper shares the loop (non-2xx "
              f"{m['non2xx']:.0f}); /metrics p99 under the flood {m['p99']:.3f} ms")  # fmt: skip
    ratio = {k: med["after"][k] / med["before"][k] for k in ("alone", "rps", "p99")}
    print(f"after / before: throughput alone {ratio['alone']:.2f}x, while scraped "
          f"{ratio['rps']:.2f}x; p99 under the flood {ratio['p99']:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="TREE",
        help="also run an older checkout (e.g. a git worktree), alternating",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pin", action="store_true",
        help="medic on CPU 0, the load generators on CPU 1 (the flood niced): medic's own "
             "share of the scrape latency, without the machine's (skips the floor)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.compare is not None:
        compare(args.compare.resolve(), args.duration, args.rounds)
        return
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
        kept = persisted(root / "data")
    pinned = " (medic pinned to CPU 0, wrk to CPU 1)" if args.pin else ""
    print(f"POST /api/v1/alerts at c=16: {rps:,.0f} notifications/s, "
          f"non-2xx: {non2xx.group(1) if non2xx else 0}{pinned}")  # fmt: skip
    print(f"journal afterwards: {kept} episodes "
          f"(every notification accounted for: {kept >= total * 0.99})")  # fmt: skip
    print(f"/metrics p99 at c=1: idle {idle['p99_ms']:.3f} ms, under the POST load "
          f"{loaded['p99']:.3f} ms ({loaded['p99'] / idle['p99_ms']:.1f}x); "
          f"p50 {loaded['p50']:.3f}, p90 {loaded['p90']:.3f} ms")  # fmt: skip
    if floor is not None:
        print(f"a second, idle medic scraped during the same flood: p99 {floor['p99']:.3f} "
              f"ms ({floor['p99'] / idle['p99_ms']:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
