"""Build grafana/medic-dashboard.json (python grafana/generate.py; a test keeps it current)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

I = 'instance=~"$instance"'  # noqa: E741 - short on purpose: it is in every query
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"

# The top row: one number each, red when it is not what a healthy fleet shows.
# (title, expr, unit, red_from, mappings)
STATS: list[tuple[str, str, str, float | None, dict[str, str]]] = [
    ("Checks failing", f"count(medic_check_success{{{I}}} == 0) or vector(0)",
     "short", 1, {}),
    # medic_gpu_count is absent while NVML is down: then every expected GPU is missing.
    ("GPUs missing",
     f"sum(clamp_min(medic_gpu_expected{{{I}}} - (medic_gpu_count{{{I}}} or "
     f"medic_gpu_expected{{{I}}} * 0), 0)) or vector(0)", "short", 1, {}),
    ("Ladders exhausted (24h)",
     f'sum(increase(medic_recovery_attempts_total{{{I},action="ladder",'
     f'outcome=~"exhausted|interrupted"}}[24h])) or vector(0)', "short", 1, {}),
    ("Breakers open",
     f'count(medic_circuitbreaker_state{{{I},state=~"open|forced_open"}} == 1) or vector(0)',
     "short", 1, {}),
    ("Checks stuck", f"sum(medic_check_stuck{{{I}}}) or vector(0)", "short", 1, {}),
    ("Journal up", f"min(medic_recovery_journal_up{{{I}}})", "short", None,
     {"0": "DOWN", "1": "up"}),
]  # fmt: skip

# (title, unit, [(expr, legend)], width, kind)
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], int, str]]]] = [
    ("GPUs", [
        ("GPU memory used vs total", "bytes", [
            (f"medic_gpu_memory_used_bytes{{{I}}}", "{{instance}} GPU {{gpu}} used"),
            (f"medic_gpu_memory_total_bytes{{{I}}}", "{{instance}} GPU {{gpu}} total"),
        ], 12, "timeseries"),
        ("GPU utilization", "percentunit", [
            (f"medic_gpu_utilization_ratio{{{I}}}", "{{instance}} GPU {{gpu}}"),
        ], 12, "timeseries"),
        ("GPU temperature", "celsius", [
            (f"medic_gpu_temperature_celsius{{{I}}}", "{{instance}} GPU {{gpu}}"),
        ], 8, "timeseries"),
        ("GPU power", "watt", [
            (f"medic_gpu_power_watts{{{I}}}", "{{instance}} GPU {{gpu}}"),
        ], 8, "timeseries"),
        # The count itself: an XID series is born at its first count, which increase()
        # would read as 0; a step in this line is an XID.
        ("XID errors counted since medic started", "short", [
            (f"medic_gpu_xid_errors_total{{{I}}}",
             "{{instance}} GPU {{gpu}} XID {{xid}} ({{bucket}})"),
        ], 8, "timeseries"),
        # One row per GPU: what it needs now, merged from the driver and NVIDIA's catalog.
        ("GPU verdict: what each GPU needs now", "short", [
            (f"medic_gpu_recovery_action{{{I}}} == 1", "{{instance}} GPU {{gpu}}: {{action}}"),
        ], 24, "table"),
        ("GPUs visible vs expected, NVML up", "short", [
            (f"medic_gpu_count{{{I}}}", "{{instance}} visible"),
            (f"medic_gpu_expected{{{I}}}", "{{instance}} expected"),
            (f"medic_nvml_up{{{I}}}", "{{instance}} NVML up"),
        ], 24, "timeseries"),
    ]),
    ("Host and checks", [
        ("Host memory available", "percentunit", [
            (f"medic_host_memory_available_bytes{{{I}}} / medic_host_memory_total_bytes{{{I}}}",
             "{{instance}}"),
        ], 12, "timeseries"),
        ("Disk used", "percentunit", [
            (f"1 - medic_filesystem_avail_bytes{{{I}}} / medic_filesystem_size_bytes{{{I}}}",
             "{{instance}} {{mountpoint}}"),
        ], 12, "timeseries"),
        ("Model files present", "short", [
            (f"medic_path_present{{{I}}}", "{{instance}} {{path}}"),
        ], 8, "timeseries"),
        ("Checks passing", "short", [
            (f"medic_check_success{{{I}}}", "{{instance}} {{check}}"),
        ], 8, "timeseries"),
        ("Checks stuck", "short", [
            (f"medic_check_stuck{{{I}}}", "{{instance}} {{check}}"),
        ], 8, "timeseries"),
        # A check that never passed exports 0: left out, or its epoch-long staleness would
        # flatten every other line (it shows under "Checks passing" and "Checks failing").
        ("Seconds since each check last passed", "s", [
            (f"(time() - medic_check_last_success_timestamp_seconds{{{I}}})"
             f" and medic_check_last_success_timestamp_seconds{{{I}}} > 0",
             "{{instance}} {{check}}"),
        ], 24, "timeseries"),
    ]),
    ("Resilience and recovery", [
        ("Circuit breakers now", "short", [
            (f"medic_circuitbreaker_state{{{I}}} == 1", "{{instance}} {{name}}: {{state}}"),
        ], 12, "table"),
        ("Recovery attempts by outcome", "short", [
            (f"sum by (outcome) (increase(medic_recovery_attempts_total{{{I}}}[{RATE}]))",
             "{{outcome}}"),
        ], 12, "timeseries"),
        ("Recoveries in progress and cooling down", "short", [
            (f"medic_recovery_in_progress{{{I}}}", "{{instance}} in progress"),
            (f"clamp_min(medic_recovery_cooldown_until_timestamp_seconds{{{I}}} - time(), 0)",
             "{{instance}} {{failure_type}} cooldown left (s)"),
        ], 12, "timeseries"),
        ("Webhook requests by status code", "reqps", [
            (f"sum by (code) (rate(medic_webhook_requests_total{{{I}}}[{RATE}]))", "{{code}}"),
        ], 12, "timeseries"),
        # The fleet: who is in a disruptive action, who is held and why, the slots taken.
        ("Fleet: disruptive actions, held rungs, slots", "short", [
            (f"sum(medic_recovery_disruptive_in_progress{{{I}}})", "hosts in a disruptive action"),
            # Both exist only where a fleet section is: 0 elsewhere, not "no data".
            (f"sum by (reason) (medic_fleet_held_rungs{{{I}}}) or vector(0)",
             "held ({{reason}})"),
            (f"sum(medic_fleet_slots_held{{{I}}}) or vector(0)", "fleet slots taken"),
        ], 24, "timeseries"),
        ("Webhook alerts by result", "short", [
            (f"sum by (status, result) (increase(medic_webhook_alerts_total{{{I}}}[{RATE}]))",
             "{{status}} {{result}}"),
        ], 24, "timeseries"),
    ]),
]  # fmt: skip

ANNOTATIONS = [
    {
        # Each action medic ran (not the ladder records, not gate skips), as a mark on every
        # time axis: what medic did sits next to what it did it about.
        "name": "Recovery actions",
        "datasource": DS,
        "enable": True,
        "iconColor": "orange",
        "expr": f'increase(medic_recovery_attempts_total{{{I},action!="ladder",'
        f'outcome!~"skipped_.*|held_.*"}}[1m]) > 0',
        "step": "1m",
        "titleFormat": "{{action}}: {{outcome}}",
        "textFormat": "{{failure_type}} on {{instance}}",
        "tagKeys": "failure_type,action,outcome",
        "useValueForTime": False,
    }
]


def panel(
    pid: int,
    title: str,
    unit: str,
    targets: list[tuple[str, str]],
    *,
    width: int,
    kind: str,
    x: int,
    y: int,
) -> dict[str, Any]:
    """One panel with its queries."""
    found: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries" else {"showHeader": True},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr,
             "legendFormat": legend, "instant": kind == "table", "range": kind != "table",
             **({"format": "table"} if kind == "table" else {})}
            for i, (expr, legend) in enumerate(targets)
        ],
    }  # fmt: skip
    if kind == "table":
        # One row per breaker: its labels as columns, not a time series per state.
        found["transformations"] = [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True},
            "renameByName": {"name": "breaker"},
        }}]  # fmt: skip
    return found


def stat(
    pid: int, spec: tuple[str, str, str, float | None, dict[str, str]], *, x: int, y: int
) -> dict[str, Any]:
    """A single-number panel (a STATS entry): green when healthy, red from `red_from` (or
    below 1 when red_from is None: a 0/1 "up" figure)."""
    title, expr, unit, red_from, mappings = spec
    shown = [{"type": "value", "options": {
        value: {"text": text, "index": i} for i, (value, text) in enumerate(mappings.items())
    }}] if mappings else []  # fmt: skip
    steps = ([{"color": "green", "value": None}, {"color": "red", "value": red_from}]
             if red_from is not None else
             [{"color": "red", "value": None}, {"color": "green", "value": 1}])  # fmt: skip
    return {
        "id": pid,
        "type": "stat",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 4, "w": 4, "x": x, "y": y},
        "fieldConfig": {"defaults": {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "mappings": shown,
        }, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none", "textMode": "value"},
        "targets": [{"refId": "A", "datasource": DS, "expr": expr, "instant": True,
                     "range": False}],
    }  # fmt: skip


def dashboard() -> dict[str, Any]:
    """The whole dashboard."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    panels.append({"id": pid, "type": "row", "title": "Now", "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})  # fmt: skip
    pid, y = pid + 1, y + 1
    for index, spec in enumerate(STATS):
        panels.append(stat(pid, spec, x=4 * index, y=y))
        pid += 1
    y += 4
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})  # fmt: skip
        pid, y, x = pid + 1, y + 1, 0
        for title, unit, targets, width, kind in row_panels:
            if x + width > 24:
                x, y = 0, y + 8
            panels.append(panel(pid, title, unit, targets, width=width, kind=kind, x=x, y=y))
            pid, x = pid + 1, x + width
        y += 8
    return {
        "uid": "medic-overview",
        "title": "medic: GPU host health and recovery",
        "tags": ["medic", "gpu", "prometheus"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "instance",
                    "label": "Instance",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": "label_values(medic_up, instance)", "refId": "instance"},
                    "definition": "label_values(medic_up, instance)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "current": {},
                    "hide": 0,
                    "sort": 1,
                },
            ]
        },
        "annotations": {"list": ANNOTATIONS},
        "panels": panels,
    }


def render() -> str:
    """The JSON text as checked in."""
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    (Path(__file__).parent / "medic-dashboard.json").write_text(render())
