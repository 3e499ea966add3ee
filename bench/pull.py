"""One pull-mode poll against a real Alertmanager holding 1,000 active alerts.

    .venv/bin/python -m bench.pull [--alerts 1000] [--polls 30]

Alertmanager (Debian's, clustering off) gets `--alerts` active alerts in one POST. A medic
in this process (its poller's own thread idle: interval 1h) then polls by hand, timed per
poll: wall time, and CPU of the polling thread (request, JSON validation, identity, claims).
Shapes:
- other hosts', identity pushed down as filter= (Alertmanager filters; few come back);
- other hosts', identity not expressible as one filter (all come back, checked here):
  the first poll decides each, later polls only see them again;
- this host's, all new: the first poll claims every one (and waits for the claims' commits),
  later polls only see them again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from exporter.app import Medic
from exporter.config import parse_config
from tests.e2e.stack import Alertmanager

ALERTMANAGER = """
route: {receiver: nobody, group_wait: 1h}
receivers: [{name: nobody}]
"""
MEDIC = """
data_dir: {data}
recovery:
  cooldown: {{base: 1h}}
  queue_size: 100000
  actions:
    noop: {{type: in_process}}
  failures:
    generation_pipeline_error: {{ladder: [noop]}}
webhook:
  routes: [{{matchers: ['alertname="Bench"'], failure_type: generation_pipeline_error}}]
  pull: {{alertmanagers: ["{am}"], interval: 1h, timeout: 30s}}
identity: {identity}
"""
PUSHED_DOWN = "{matchers: ['instance=~\"host-a(:[0-9]+)?\"'], unlabeled: other_host}"
CHECKED_HERE = "{matchers: ['node=\"host-a\"', 'instance=~\"host-a(:[0-9]+)?\"']}"


def post_alerts(am: Alertmanager, count: int, instance: str) -> None:
    began = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    alerts = [
        {"labels": {"alertname": "Bench", "instance": instance.format(n=n), "job": f"j{n}",
                    "severity": "critical", "team": "ml"},
         "annotations": {"summary": f"bench alert {n} " + "x" * 80}, "startsAt": began}
        for n in range(count)
    ]  # fmt: skip
    am.http("POST", "/api/v2/alerts", json=alerts, timeout=30).raise_for_status()


def timed_poll(medic: Medic) -> tuple[float, float, int]:
    """(wall ms, polling thread's CPU ms, alerts returned) for one poll."""
    assert medic.puller is not None
    wall, cpu = time.perf_counter(), time.thread_time()
    medic.puller.poll()
    returned = medic.puller.stats.last_alerts
    return (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3, returned


def shape(root: Path, name: str, args: argparse.Namespace, *, instance: str, identity: str) -> None:
    alerts, polls = args.alerts, args.polls
    root = Path(tempfile.mkdtemp(dir=root))
    am = Alertmanager(ALERTMANAGER, root / "am")
    try:
        text = MEDIC.format(data=root / "data", am=am.url, identity=identity)
        medic = Medic(parse_config(text, env={}))
        medic.actions.register("noop", lambda: True)
        medic.start()  # its own first poll finds nothing: no alerts yet
        try:
            post_alerts(am, alerts, instance)
            first = timed_poll(medic)
            later = [timed_poll(medic) for _ in range(polls)]
            wall = statistics.median(w for w, _, _ in later)
            cpu = statistics.median(c for _, c, _ in later)
            print(f"{name}: {first[2]} of {alerts} returned; first poll {first[0]:.1f} ms wall, "
                  f"{first[1]:.1f} ms CPU; later polls (median of {polls}) {wall:.1f} ms wall, "
                  f"{cpu:.1f} ms CPU", flush=True)  # fmt: skip
        finally:
            medic.stop()
    finally:
        am.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shape(root, "other hosts', filter pushed down", args,
              instance="host-{n}:9100", identity=PUSHED_DOWN)  # fmt: skip
        shape(root, "other hosts', checked in medic", args,
              instance="host-{n}:9100", identity=CHECKED_HERE)  # fmt: skip
        shape(root, "this host's, all new", args, instance="host-a:{n}", identity=PUSHED_DOWN)


if __name__ == "__main__":
    main()
