"""The engine with real checks, real commands, a real journal: ladders, gates, verification."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from exporter.app import Medic
from exporter.recovery.actions import ActionContext
from exporter.recovery.types import ActionResult, RecoveryAttempt
from tests.helpers import wait_until
from tests.recovery.conftest import attempts, noop_medic, settled


def blocker(running: threading.Event, release: threading.Event):
    def slow() -> bool:
        running.set()
        return release.wait(10)

    return slow


def outcomes(found: list[RecoveryAttempt]) -> list[tuple[str, str]]:
    return [(a.action, a.outcome.value) for a in found]


def test_first_rung_does_not_fix_the_check_and_the_second_does(start_medic, tmp_path: Path) -> None:
    model, backup = tmp_path / "model.bin", tmp_path / "store" / "model.bin"
    backup.parent.mkdir()
    backup.write_bytes(b"weights")
    medic = start_medic(f"""
checks:
  - {{name: model, type: path, path: {model}, kind: file, interval: 1h, timeout: 1s}}
recovery:
  actions:
    poke: {{type: command, argv: ["true"]}}
    restore: {{type: command, argv: [cp, {backup}, {model}]}}
  failures:
    model_loading_failure:
      verify: [model]
      settle_delay: 0s
      verify_timeout: 0s
      ladder: [poke, restore]
""")
    assert medic.report_failure("model_loading_failure", "weights missing").accepted
    found = settled(medic, 2)
    assert outcomes(found) == [("poke", "not_recovered"), ("restore", "succeeded")]
    assert found[0].detail.startswith(f"still failing: model: {model}: missing")
    assert found[1].detail == "verified by model" and model.read_bytes() == b"weights"
    assert medic.recovery.cooldowns()["model_loading_failure"] > medic.clock.time()


def test_verification_waits_for_a_service_that_comes_back_late(start_medic, tmp_path: Path) -> None:
    # A restart that returns at once while the server needs a while to serve again: the
    # verify checks are polled until they pass, within the rung's verify_timeout.
    model = tmp_path / "model.bin"
    medic = start_medic(f"""
checks:
  - {{name: model, type: path, path: {model}, kind: file, interval: 1h, timeout: 1s}}
recovery:
  actions:
    background: {{type: command, argv: ["true"]}}
  failures:
    model_loading_failure:
      verify: [model]
      settle_delay: 0s
      verify_interval: 200ms
      ladder:
        - {{action: background, verify_timeout: 5s}}
""")
    # The rung returns at once; the service is back 1.5 s later (the scenario, not a wait).
    comes_back = threading.Timer(1.5, model.touch)
    assert medic.report_failure("model_loading_failure").accepted
    comes_back.start()
    [found] = settled(medic, 1)
    comes_back.join(5)
    assert outcomes([found]) == [("background", "succeeded")]
    assert found.detail.startswith("verified by model after ")
    waited = float(found.detail.removeprefix("verified by model after ").removesuffix("s"))
    assert 1.0 <= waited < 5.0


def test_verification_gives_up_at_its_deadline(start_medic, tmp_path: Path) -> None:
    medic = start_medic(f"""
checks:
  - {{name: model, type: path, path: {tmp_path / "never"}, interval: 1h, timeout: 1s}}
recovery:
  actions:
    poke: {{type: command, argv: ["true"]}}
  failures:
    model_loading_failure:
      verify: [model]
      settle_delay: 0s
      verify_timeout: 1s
      verify_interval: 100ms
      ladder: [poke]
""")
    medic.report_failure("model_loading_failure")
    found = settled(medic, 2)
    assert outcomes(found) == [("poke", "not_recovered"), ("ladder", "exhausted")]
    assert found[0].detail.startswith("still failing within 1s: model: ")
    assert found[0].ended is not None
    assert found[0].ended - found[0].started >= 1.0  # it kept looking until the deadline


def test_exhausted_ladder_starts_a_growing_cooldown(start_medic, tmp_path: Path) -> None:
    medic = start_medic(f"""
checks:
  - {{name: model, type: path, path: {tmp_path / "never"}, interval: 1h, timeout: 1s}}
recovery:
  cooldown: {{base: 10m, multiplier: 3, max: 2h}}
  actions:
    poke: {{type: command, argv: ["true"]}}
  failures:
    model_loading_failure: {{verify: [model], settle_delay: 0s, verify_timeout: 0s, ladder: [poke]}}
""")
    medic.report_failure("model_loading_failure")
    found = settled(medic, 2)
    assert outcomes(found) == [("poke", "not_recovered"), ("ladder", "exhausted")]
    first = medic.journal.cooldown("model_loading_failure")
    assert first is not None and first.consecutive == 1
    assert first.until - medic.clock.time() == pytest_approx(600)
    medic.recovery.reset()
    medic.report_failure("model_loading_failure")
    settled(medic, 4)
    second = medic.journal.cooldown("model_loading_failure")
    assert second is not None and second.consecutive == 1  # reset forgot the streak


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, abs=5)


def test_gates_duplicate_cooldown_and_resolved(start_medic) -> None:
    medic = noop_medic(start_medic)
    assert medic.report_failure("network_error", dedup_key="fp1@t1").accepted
    settled(medic, 1)
    again = medic.report_failure("network_error", dedup_key="fp1@t1")
    assert again.result == "duplicate"
    assert medic.report_failure("network_error", dedup_key="fp2@t1").accepted
    medic.recovery.resolve("fp3@t1")
    assert medic.report_failure("network_error", dedup_key="fp3@t1").result == "ignored_resolved"
    found = settled(medic, 3)
    assert outcomes(found) == [
        ("noop", "succeeded"),
        ("ladder", "skipped_duplicate"),
        ("ladder", "skipped_cooldown"),
    ]
    assert medic.report_failure("cosmic_rays").result == "unknown_failure_type"


def test_one_ladder_per_failure_type_waiters_meet_the_cooldown(start_medic) -> None:
    medic = start_medic("""
recovery:
  cooldown: {base: 1h}
  actions:
    slow: {type: in_process}
  failures:
    vram_exhaustion: {ladder: [slow]}
""")
    release, running = threading.Event(), threading.Event()
    medic.actions.register("slow", blocker(running, release))
    medic.report_failure("vram_exhaustion")
    assert running.wait(10)
    medic.report_failure("vram_exhaustion")  # waits for the running ladder, not beside it
    release.set()
    found = settled(medic, 2)
    assert outcomes(found) == [("slow", "succeeded"), ("ladder", "skipped_cooldown")]


def test_too_many_waiting_behind_a_ladder_is_skipped_concurrency(start_medic) -> None:
    medic = start_medic("""
recovery:
  cooldown: {base: 0s}
  max_waiting_per_type: 1
  actions:
    slow: {type: in_process}
  failures:
    vram_exhaustion: {ladder: [slow]}
""")
    release, running = threading.Event(), threading.Event()
    medic.actions.register("slow", blocker(running, release))
    medic.report_failure("vram_exhaustion")
    assert running.wait(10)
    medic.report_failure("vram_exhaustion")  # waits its turn
    medic.report_failure("vram_exhaustion")  # one too many
    wait_until(lambda: ("ladder", "skipped_concurrency") in outcomes(attempts(medic)))
    release.set()
    found = settled(medic, 3)
    assert sorted(outcomes(found)) == [
        ("ladder", "skipped_concurrency"),
        ("slow", "succeeded"),
        ("slow", "succeeded"),
    ]


def test_failures_timeouts_and_nonsense_move_down_the_ladder(start_medic) -> None:
    medic = start_medic("""
recovery:
  rate_limit: {actions: 100}
  actions:
    raises: {type: in_process}
    hangs: {type: in_process}
    nonsense: {type: in_process}
    unregistered: {type: in_process}
    works: {type: in_process}
  failures:
    generation_pipeline_error:
      ladder:
        - raises
        - {action: hangs, timeout: 200ms}
        - nonsense
        - unregistered
        - clear_gpu_cache
        - works
""")

    def raises() -> None:
        raise RuntimeError("CUDA error: an illegal memory access")

    async def hangs() -> None:
        await asyncio.Event().wait()

    medic.actions.register("raises", raises)
    medic.actions.register("hangs", hangs)
    medic.actions.register("nonsense", lambda: 42)
    medic.actions.register("works", lambda ctx: ActionResult(True, f"params {ctx.params}"))
    medic.report_failure("generation_pipeline_error")
    found = settled(medic, 6)
    assert outcomes(found) == [
        ("raises", "failed"), ("hangs", "timeout"), ("nonsense", "failed"),
        ("unregistered", "failed"), ("clear_gpu_cache", "skipped_unavailable"),
        ("works", "succeeded"),
    ]  # fmt: skip
    assert found[0].detail == "RuntimeError: CUDA error: an illegal memory access"
    assert found[2].detail.startswith("TypeError: action returned int")
    assert "no callable registered" in found[3].detail
    assert "torch with CUDA is not in use" in found[4].detail


def test_an_action_that_keeps_failing_opens_its_breaker(start_medic) -> None:
    medic = start_medic("""
recovery:
  cooldown: {base: 0s}
  action_breaker_failures: 2
  actions:
    flaky: {type: in_process}
  failures:
    network_error: {ladder: [flaky]}
""")
    medic.actions.register("flaky", lambda: False)
    for count in (2, 4, 6):  # each ladder: the rung, then "exhausted"
        medic.report_failure("network_error")
        settled(medic, count)
    found = outcomes(attempts(medic))
    assert found[-2] == ("flaky", "skipped_breaker_open")
    assert medic.breakers.get("action:flaky").state.value == "open"


def test_rate_limit_and_dry_run(start_medic) -> None:
    medic = start_medic("""
recovery:
  rate_limit: {actions: 1, per: 1h}
  actions:
    noop: {type: in_process}
  failures:
    network_error: {ladder: [noop]}
    vram_exhaustion: {ladder: [noop]}
""")
    medic.actions.register("noop", lambda: True)
    medic.report_failure("network_error")
    settled(medic, 1)
    medic.report_failure("vram_exhaustion")
    found = settled(medic, 2)
    assert outcomes(found)[1] == ("noop", "skipped_rate_limit")


def test_dry_run_describes_and_changes_nothing(start_medic, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    medic = start_medic(f"""
recovery:
  dry_run: true
  actions:
    touch: {{type: command, argv: [touch, {marker}]}}
  failures:
    system_resource_error: {{ladder: [touch]}}
""")
    medic.report_failure("system_resource_error")
    (attempt,) = settled(medic, 1)
    assert (attempt.action, attempt.outcome.value, attempt.dry_run) == ("touch", "dry_run", True)
    assert attempt.detail == f"would run ['touch', '{marker}']"
    assert not marker.exists()
    assert medic.recovery.cooldowns()["system_resource_error"] == 0


QUEUE_OF_ONE = """
recovery:
  queue_size: 1
  workers: 1
  cooldown: {base: 0s}
  max_waiting_per_type: 100
  actions:
    slow: {type: in_process}
  failures:
    vram_exhaustion: {ladder: [slow]}
    network_error: {ladder: [slow]}
"""


def test_a_full_queue_refuses_and_counts(start_medic) -> None:
    # queue_size bounds episodes whose ladder has not started; beyond it an arrival is
    # refused (an alert gets 503, so Alertmanager sends it again later).
    medic = start_medic(QUEUE_OF_ONE)
    release, running = threading.Event(), threading.Event()
    medic.actions.register("slow", blocker(running, release))
    medic.report_failure("vram_exhaustion")
    assert running.wait(10)  # the only worker is busy
    assert medic.report_failure("network_error", dedup_key="q").accepted  # fills the queue
    refused = medic.report_failure("network_error", dedup_key="x")
    assert refused.result == "queue_full"
    assert medic.recovery.snapshot()["events"]["queue_full"] == 1
    assert medic.report_failure("network_error", dedup_key="q").result == "duplicate"
    release.set()
    assert medic.recovery.wait_idle(10)
    keys = [a.dedup_key for a in attempts(medic) if a.action == "slow"]
    assert keys == [None, "q"]
    assert medic.report_failure("network_error", dedup_key="x").accepted  # room again


def test_resolving_an_episode_cancels_its_queued_attempt(start_medic) -> None:
    medic = start_medic("""
recovery:
  workers: 1
  cooldown: {base: 0s}
  actions:
    slow: {type: in_process}
  failures:
    vram_exhaustion: {ladder: [slow]}
    network_error: {ladder: [slow]}
""")
    release, running = threading.Event(), threading.Event()
    medic.actions.register("slow", blocker(running, release))
    medic.report_failure("vram_exhaustion", dedup_key="running")
    assert running.wait(10)
    medic.report_failure("network_error", dedup_key="queued")
    assert medic.recovery.resolve("queued") is True
    assert medic.recovery.resolve("running") is False  # a running action finishes
    # Cancelled at once, while the only worker is still busy: it does not wait its turn.
    wait_until(lambda: medic.recovery.snapshot()["events"].get("cancelled_resolved") == 1)
    release.set()
    found = settled(medic, 2)
    assert outcomes(found) == [("slow", "succeeded"), ("ladder", "cancelled")]
    assert found[1].dedup_key == "queued" and found[1].detail.startswith("resolved before")


def test_in_process_actions_get_the_context(start_medic: Callable[[str], Medic]) -> None:
    medic = start_medic("""
recovery:
  actions:
    reduce_generation_params: {type: in_process}
  failures:
    vram_exhaustion:
      ladder: [{action: reduce_generation_params, params: {batch_size: 2}}]
""")
    seen: list[ActionContext] = []

    @medic.actions.register("reduce_generation_params")
    async def reduce(ctx: ActionContext) -> ActionResult:
        seen.append(ctx)
        return ActionResult(True, f"batch size now {ctx.params['batch_size']}")

    medic.report_failure("vram_exhaustion", "CUDA out of memory", {"gpu": "0"}, "k1")
    (attempt,) = settled(medic, 1)
    assert attempt.detail == "batch size now 2" and attempt.source == "app"
    assert seen[0].event.labels == {"gpu": "0"} and seen[0].event.detail == "CUDA out of memory"


def test_recovery_metrics_through_a_render(start_medic) -> None:
    medic = start_medic("""
recovery:
  actions:
    noop: {type: in_process}
  failures:
    network_error: {ladder: [noop]}
    vram_exhaustion: {ladder: [noop]}
""")
    medic.actions.register("noop", lambda: True)
    medic.report_failure("network_error")
    settled(medic, 1)
    from tests.test_server import value

    text = medic.exposition.render().text.decode()
    labels = {"failure_type": "network_error", "action": "noop", "outcome": "succeeded"}
    assert value(text, "medic_recovery_attempts_total", **labels) == 1
    assert value(text, "medic_recovery_duration_seconds_count", action="noop") == 1
    assert value(text, "medic_recovery_in_progress") == 0
    assert value(text, "medic_recovery_queue_length") == 0
    assert value(text, "medic_recovery_journal_up") == 1
    assert value(text, "medic_recovery_events_total", result="accepted") == 1
    until = value(text, "medic_recovery_cooldown_until_timestamp_seconds",
                  failure_type="network_error")  # fmt: skip
    assert until is not None and until > medic.clock.time()
    none = value(text, "medic_recovery_cooldown_until_timestamp_seconds",
                 failure_type="vram_exhaustion")  # fmt: skip
    assert none == 0
    breaker = value(text, "medic_circuitbreaker_state", name="action:noop", state="closed")
    assert breaker == 1  # each action has its breaker, visible from the start


def test_stop_while_an_action_finishes_never_leaves_a_worker_behind(tmp_path: Path) -> None:
    # On Python 3.11 asyncio.wait_for could swallow a cancellation racing with the action's
    # result; the worker then outlived stop(). Repeat the race a few times.
    from exporter.app import Medic
    from exporter.config import parse_config

    config = parse_config(f"""
data_dir: {tmp_path}
recovery:
  actions:
    quick: {{type: in_process}}
  failures:
    network_error: {{ladder: [quick]}}
""", env={})  # fmt: skip
    for _ in range(10):
        medic = Medic(config)
        medic.actions.register("quick", lambda: True)
        medic.start()
        medic.report_failure("network_error")
        medic.stop()
        assert all(task.done() for task in medic.recovery._tasks)
        assert medic.db is not None
        medic.db.close()


def test_wait_idle(start_medic) -> None:
    medic = noop_medic(start_medic)
    medic.report_failure("network_error")
    assert medic.recovery.wait_idle(10)
    assert outcomes(attempts(medic)) == [("noop", "succeeded")]


def test_a_user_defined_failure_type_runs_its_ladder(start_medic, tmp_path: Path) -> None:
    marker = tmp_path / "restarted"
    medic = start_medic(f"""
recovery:
  actions:
    restart_vllm: {{type: command, argv: [touch, {marker}]}}
  failures:
    model_server_hung: {{ladder: [restart_vllm], settle_delay: 0s}}
""")
    assert medic.report_failure("model_server_hung").accepted
    [found] = settled(medic, 1)
    assert outcomes([found]) == [("restart_vllm", "succeeded")] and marker.exists()
    counted = medic.recovery.snapshot()["attempts"]
    assert counted[("model_server_hung", "ladder", "exhausted")] == 0  # born at 0 too
