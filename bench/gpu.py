"""GPU benchmark: cost of a collection round with 8 fake GPUs; /metrics while NVML hangs.

    .venv/bin/python -m bench.gpu [--rounds 200] [--duration 5]

The fake NVML looks at its JSON state file on every call (a stat() while the file is
settled), so a round here costs more than on real NVML for the Python work around it; the
figures bound medic's own overhead from above. A second round size, 8 GPUs x 500 processes,
is a busy inference host's payload.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil

from bench.anchors import machine_floor_ms
from bench.scrape import get, start_medic, stop, wrk
from exporter.gpu import fakenvml
from exporter.gpu.check import GpuCheck

FAKE = "exporter.gpu.fakenvml"


def round_cost(rounds: int) -> dict[str, float]:
    check = GpuCheck(nvml_module=FAKE, processes=True, expected=8)
    try:
        assert not check().problems  # starts the helper, initialises NVML
        worker = psutil.Process(check._worker.pid)  # type: ignore[union-attr]
        child_before = sum(worker.cpu_times()[:2])
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            check()
        wall = (time.perf_counter() - wall_before) / rounds
        parent_cpu = (time.process_time() - cpu_before) / rounds
        child_cpu = (sum(worker.cpu_times()[:2]) - child_before) / rounds
    finally:
        check.close()
    return {
        "wall_ms": wall * 1e3,
        "parent_cpu_ms": parent_cpu * 1e3,
        "helper_cpu_ms": child_cpu * 1e3,
    }


def metrics_while_hung(root: Path, duration: int) -> tuple[dict[str, float], dict[str, float]]:
    state_path = root / "nvml.json"
    state = fakenvml.make_state(8)
    state_path.write_text(json.dumps(state))
    config = root / "medic.yml"
    config.write_text(
        f"data_dir: {root / 'data'}\nlog_level: error\nchecks:\n"
        "  - {name: host_memory, type: host_memory, min_available_ratio: 0}\n"
        f"  - {{name: gpu, type: gpu, expected: 8, interval: 1s, timeout: 500ms, "
        f"nvml_module: {FAKE}}}\n"
    )
    proc, base = start_medic(config, {fakenvml.ENV: str(state_path)})
    deadline = time.monotonic() + 30
    try:
        healthy = wrk(f"{base}/metrics", 1, duration, {})
        state["hang"] = ["nvmlDeviceGetMemoryInfo"]
        state_path.write_text(json.dumps(state))
        while b'medic_check_stuck{check="gpu"} 1.0' not in get(f"{base}/metrics")[1]:
            if time.monotonic() > deadline + 30:
                raise SystemExit("GPU check never became stuck")
            time.sleep(0.05)
        hung = wrk(f"{base}/metrics", 1, duration, {})
        state["hang"] = []
        state_path.write_text(json.dumps(state))
    finally:
        stop(proc)
    return healthy, hung


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    floor = machine_floor_ms()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[fakenvml.ENV] = str(Path(tmp) / "round.json")
        (Path(tmp) / "round.json").write_text(json.dumps(fakenvml.make_state(8)))
        cost = round_cost(args.rounds)
        # A busy host: 500 processes on each GPU (issue 19: the fake took 11.5 s a round).
        busy = fakenvml.make_state(8)
        for index, gpu in enumerate(busy["gpus"]):
            gpu["processes"] = [{"pid": 100_000 + index * 1000 + n, "name": f"worker-{n}",
                                 "used": 2**20} for n in range(500)]  # fmt: skip
        (Path(tmp) / "round.json").write_text(json.dumps(busy))
        os.utime(Path(tmp) / "round.json", (1, 1))  # settled, as between a test's edits
        busy_cost = round_cost(max(10, args.rounds // 10))
        (Path(tmp) / "round.json").write_text(json.dumps(fakenvml.make_state(8)))
        healthy, hung = metrics_while_hung(Path(tmp), args.duration)
    print(f"machine floor (bench.anchors, fixed Python workload): {floor:.1f} ms")
    for label, each in (("8 fake GPUs", cost), ("8 fake GPUs x 500 processes", busy_cost)):
        wall, medic, helper = each["wall_ms"], each["parent_cpu_ms"], each["helper_cpu_ms"]
        print(f"collection round, {label}: wall {wall:.2f} ms ({wall / floor:.3f}x the "
              f"floor); CPU medic {medic:.2f} ms, NVML helper {helper:.2f} ms")  # fmt: skip
    print()
    print("| /metrics, c=1 | p50 ms | p99 ms | scrapes/s |")
    print("|---|---|---|---|")
    for label, res in (("GPU check healthy", healthy), ("GPU check hung (stuck)", hung)):
        print(f"| {label} | {res['p50_ms']:.3f} | {res['p99_ms']:.3f} | {res['rps']:.0f} |")


if __name__ == "__main__":
    main()
