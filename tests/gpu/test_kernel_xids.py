"""XID lines from the kernel log, injected into a file medic follows: an application-fault
XID with its pid restarts only that application (its ladder, verified), a storm of 5,000
identical lines is one episode, other buckets and unknown XIDs restart nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import Medic
from exporter.config import parse_config
from exporter.config.checks import GpuCheckConfig
from exporter.gpu.kernel import KernelXid, KernelXids, parse
from tests.gpu.conftest import FAKE, FakeNvml
from tests.helpers import wait_until
from tests.recovery.conftest import attempts, settled

PAGE_FAULT = (
    "NVRM: Xid (PCI:0000:3b:00): 31, pid=4242, name={name}, Ch 00000010, intr "
    "00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f0c_0000"
)


@pytest.mark.parametrize(("line", "found"), [
    (PAGE_FAULT.format(name="python3"), KernelXid("0000:3b:00", 31, 4242, "python3")),
    ("[12345.678] NVRM: Xid (PCI:0000:B1:00): 79, pid='<unknown>', name=<unknown>, GPU has "
     "fallen off the bus.", KernelXid("0000:b1:00", 79, None, "<unknown>")),
    ("NVRM: Xid (PCI:0000:3b:00): 13, Graphics SM Warp Exception", KernelXid(
        "0000:3b:00", 13, None, "")),  # an older driver: no pid
    ("NVRM: GPU at PCI:0000:3b:00: GPU-1234", None),
])  # fmt: skip
def test_the_kernels_xid_lines_are_parsed(line: str, found: KernelXid | None) -> None:
    assert parse(line) == found


@pytest.fixture
def kernel_log(tmp_path: Path) -> Path:
    path = tmp_path / "kern.log"
    path.write_text("boot noise\n")
    return path


@pytest.fixture
def medic_with_apps(
    fake_nvml: FakeNvml, kernel_log: Path, tmp_path: Path, start_medic: Callable[[str], Medic]
) -> Callable[[], Medic]:
    def start() -> Medic:
        # The restart's real effect: a line with the pid and name the ladder was given.
        script = tmp_path / "restart.sh"
        script.write_text(f'echo "$MEDIC_LABEL_PID $MEDIC_LABEL_PROCESS_NAME" >> '
                          f'{tmp_path}/restarted_$1\n')  # fmt: skip
        return start_medic(f"""
checks:
  - name: gpu
    type: gpu
    interval: 1h
    nvml_module: {FAKE}
    kernel_log: {kernel_log}
    apps:
      - {{process: '^vllm', failure_type: vllm_gpu_fault}}
      - {{process: '^tts', failure_type: tts_gpu_fault}}
recovery:
  cooldown: {{base: 0s}}
  actions:
    restart_vllm: {{type: command, argv: [sh, {script}, vllm], target: vllm.service}}
    restart_tts: {{type: command, argv: [sh, {script}, tts], target: tts.service}}
  failures:
    vllm_gpu_fault: {{ladder: [restart_vllm], verify: [gpu], settle_delay: 0s}}
    tts_gpu_fault: {{ladder: [restart_tts], verify: [gpu], settle_delay: 0s}}
""")  # fmt: skip

    return start


def append(path: Path, *lines: str) -> None:
    with path.open("a") as handle:
        handle.write("".join(line + "\n" for line in lines))


def test_an_app_fault_restarts_only_that_app_and_verifies(
    medic_with_apps: Callable[[], Medic], kernel_log: Path, tmp_path: Path
) -> None:
    medic = medic_with_apps()
    append(kernel_log, PAGE_FAULT.format(name="vllm-engine"))
    [found] = settled(medic, 1)
    assert (found.failure_type, found.action, found.outcome.value) == (
        "vllm_gpu_fault", "restart_vllm", "succeeded")  # fmt: skip
    assert "verified by gpu" in found.detail
    # The real effect: vLLM's restart ran once, with the faulting pid; TTS was not touched.
    assert (tmp_path / "restarted_vllm").read_text() == "4242 vllm-engine\n"
    assert not (tmp_path / "restarted_tts").exists()


def test_a_storm_of_one_xid_is_one_episode(
    medic_with_apps: Callable[[], Medic], kernel_log: Path, tmp_path: Path
) -> None:
    medic = medic_with_apps()
    assert medic.kernel_xids is not None
    append(kernel_log, *[PAGE_FAULT.format(name="tts-worker")] * 5000)
    counts = medic.kernel_xids.counts
    wait_until(lambda: counts[("restart_app", "seen")] == 5000, what="5,000 lines read")
    settled(medic, 1)
    assert counts[("restart_app", "accepted")] == 1
    assert counts[("restart_app", "duplicate")] == 4999
    # One episode, one journal row: the storm's repeats are not even submitted.
    assert [(a.failure_type, a.action) for a in attempts(medic)] == [
        ("tts_gpu_fault", "restart_tts")]  # fmt: skip
    assert (tmp_path / "restarted_tts").read_text() == "4242 tts-worker\n"  # once


def test_other_buckets_unknown_xids_and_unknown_apps_restart_nothing(
    medic_with_apps: Callable[[], Medic], kernel_log: Path, tmp_path: Path
) -> None:
    medic = medic_with_apps()
    assert medic.kernel_xids is not None
    append(kernel_log,
           "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen "
           "off the bus.",
           "NVRM: Xid (PCI:0000:3b:00): 48, pid=4242, name=vllm-engine, DBE (0x1)",
           "NVRM: Xid (PCI:0000:3b:00): 999, pid=4242, name=vllm-engine, something new",
           PAGE_FAULT.format(name="jupyter"))  # fmt: skip
    counts = medic.kernel_xids.counts
    wait_until(lambda: counts[("restart_app", "unmatched")] == 1, what="the lines read")
    assert counts[("reboot_node", "seen")] == 1 and counts[("reset_gpu", "seen")] == 1
    assert counts[("inspect_hardware", "seen")] == 1  # XID 999: the safe default
    assert attempts(medic) == []
    assert not (tmp_path / "restarted_vllm").exists()


def test_the_unit_of_the_faulting_pid_picks_the_app(tmp_path: Path) -> None:
    """A process of vllm.service whose name says nothing: its cgroup names the unit."""
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text("0::/system.slice/vllm.service\n")
    config = GpuCheckConfig.model_validate({
        "name": "gpu", "type": "gpu", "kernel_log": "/dev/null",
        "apps": [{"unit": "tts.service", "failure_type": "tts_gpu_fault"},
                 {"unit": "vllm.service", "failure_type": "vllm_gpu_fault"}]})  # fmt: skip
    asked: list[tuple[str, dict[str, str], str]] = []

    def submit(failure_type: str, labels: dict[str, str], key: str) -> str:
        asked.append((failure_type, labels, key))
        return "accepted"

    kernel = KernelXids(config, submit, proc_root=tmp_path, clock=lambda: 1200.0)
    kernel.handle(PAGE_FAULT.format(name="python3"))
    [(failure_type, labels, key)] = asked
    assert failure_type == "vllm_gpu_fault"
    assert labels == {"xid": "31", "bucket": "restart_app", "pci": "0000:3b:00",
                      "pid": "4242", "process_name": "python3", "unit": "vllm.service"}  # fmt: skip
    assert key == "kernel-xid:0000:3b:00:31:vllm_gpu_fault:2"  # window 2 of 600 s


def test_an_app_naming_no_ladder_is_a_config_error() -> None:
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config("""
checks:
  - {name: gpu, type: gpu, kernel_log: kmsg, apps: [{unit: vllm.service, failure_type: nope}]}
""", env={})  # fmt: skip
    assert "checks[0].apps[0].failure_type: 'nope' has no ladder under recovery.failures" in str(
        info.value)  # fmt: skip


def test_the_real_kmsg_opens_at_its_end_and_reads_without_blocking() -> None:
    """/dev/kmsg itself (read only: nothing is written into the host's kernel log)."""
    import os

    from exporter.gpu.kernel import KmsgFollower

    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("no readable /dev/kmsg here")
    try:
        follower = KmsgFollower()
    except OSError as exc:
        pytest.skip(f"/dev/kmsg cannot be opened here: {exc}")
    try:
        lines = follower.read(1000)  # from the end: only records written since, if any
        assert isinstance(lines, list) and all(";" not in line[:20] for line in lines)
    finally:
        follower.close()


def test_a_line_that_fails_to_be_handled_does_not_stop_the_follower(tmp_path: Path) -> None:
    log_file = tmp_path / "kern.log"
    log_file.write_text("")
    config = GpuCheckConfig.model_validate({
        "name": "gpu", "type": "gpu", "kernel_log": str(log_file),
        "apps": [{"process": "^vllm", "failure_type": "vllm_gpu_fault"}]})  # fmt: skip
    calls: list[str] = []

    def submit(failure_type: str, labels: dict[str, str], key: str) -> str:
        calls.append(labels["xid"])
        if len(calls) == 1:
            raise RuntimeError("the engine broke once")
        return "accepted"

    kernel = KernelXids(config, submit)
    kernel.start()
    try:
        append(log_file, PAGE_FAULT.format(name="vllm-a"))
        wait_until(lambda: calls == ["31"], what="the first line")
        append(log_file, PAGE_FAULT.format(name="vllm-b").replace(": 31,", ": 13,"))
        wait_until(lambda: calls == ["31", "13"], what="the follower to go on")
    finally:
        kernel.stop()
