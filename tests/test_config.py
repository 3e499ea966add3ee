"""Config validation: each kind of mistake names its field, line and reason; nothing else runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.config import (
    ConfigError,
    DiskCheckConfig,
    HostMemoryCheckConfig,
    PathCheckConfig,
    default_config,
    load_config,
    parse_config,
    summarize,
)

FIXTURES = Path(__file__).parent / "fixtures" / "config"


def problems(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(FIXTURES / name, env={})
    return [line.removeprefix(f"{FIXTURES}/") for line in str(info.value).splitlines()]


def test_valid_file_loads_every_check_type() -> None:
    config = load_config(FIXTURES / "valid.yml", env={})
    kinds = [type(c) for c in config.checks]
    assert kinds == [HostMemoryCheckConfig, DiskCheckConfig, PathCheckConfig, PathCheckConfig]
    disk = config.checks[1]
    assert isinstance(disk, DiskCheckConfig)
    assert disk.min_avail_bytes == 2**30
    voices = config.checks[3]
    assert voices.interval == 60.0 and voices.timeout == 2.0
    assert config.checks[2].critical is True


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("wrong_type.yml", "wrong_type.yml:4: checks[0].interval: invalid duration 'often'"),
        (
            "unknown_key.yml",
            "unknown_key.yml:5: checks[0].min_avail_ratoi: unknown key "
            "(did you mean 'min_avail_ratio'?)",
        ),
        ("negative_interval.yml", "negative_interval.yml:10: checks[2].interval: must be greater"),
        (
            "unknown_check_type.yml",
            "unknown_check_type.yml:3: checks[0]: unknown type 'cuda_magic'",
        ),
        (
            "duplicate_name.yml",
            "duplicate_name.yml:3: checks[1].name: 'disk' is also the name of checks[0]",
        ),
        ("duplicate_key.yml", "duplicate_key.yml:2: log_level: duplicate key"),
        ("invalid_yaml.yml", "invalid_yaml.yml:4: invalid YAML"),
        (
            "timeout_over_interval.yml",
            "timeout_over_interval.yml:2: checks[0]: timeout (10s) must not exceed interval (1s)",
        ),
        (
            "bad_listen.yml",
            "bad_listen.yml:2: server.listen: listen address 'everywhere' must be HOST:PORT",
        ),
        (
            "unknown_action.yml",
            "unknown_action.yml:6: recovery.failures.vram_exhaustion.ladder[1].action: "
            "unknown action 'reduce_generation_params'",
        ),
        (
            "unknown_failure_type.yml",
            "unknown_failure_type.yml:3: recovery.failures.Cosmic Rays: invalid name: "
            "must be lower snake case",
        ),
        (
            "unknown_verify_check.yml",
            "unknown_verify_check.yml:6: recovery.failures.model_loading_failure.verify[1]: "
            "no check named 'weights'",
        ),
        ("not_a_mapping.yml", "not_a_mapping.yml:1: the top level must be a mapping"),
    ],
)
def test_each_mistake_is_named_with_its_location(fixture: str, expected: str) -> None:
    lines = problems(fixture)
    assert any(line.startswith(expected) for line in lines), lines


def test_every_problem_is_reported_at_once() -> None:
    lines = problems("many_problems.yml")
    assert len(lines) == 6, lines
    joined = "\n".join(lines)
    assert "many_problems.yml:2: server.listen: port 99999 is out of range" in joined
    assert "many_problems.yml:3: server.lisen: unknown key (did you mean 'listen'?)" in joined
    assert "many_problems.yml:4: log_level: input should be" in joined
    assert "many_problems.yml:8: checks[1].name: must start with a letter" in joined
    assert "many_problems.yml:10: checks[1].min_available_ratio: must be at most 1" in joined
    assert "many_problems.yml:11: checks[2].path: required" in joined


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file: No such file"):
        load_config(tmp_path / "absent.yml")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    # A directory is unreadable as a file even for root, which ignores permission bits.
    with pytest.raises(ConfigError, match="cannot read config file: Is a directory"):
        load_config(tmp_path)


def test_environment_overrides_the_file_and_errors_name_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "medic.yml"
    path.write_text("server:\n  listen: 127.0.0.1:1234\n")
    config = load_config(path, env={"MEDIC_LISTEN": "0.0.0.0:9000", "MEDIC_DATA_DIR": "/srv/m"})
    assert config.server.listen == "0.0.0.0:9000"
    assert config.data_dir == Path("/srv/m")
    with pytest.raises(ConfigError, match=r"\(from environment variable MEDIC_LISTEN\)"):
        load_config(path, env={"MEDIC_LISTEN": "nowhere"})


def test_default_config_watches_memory_gpus_root_and_data_dir() -> None:
    config = default_config(env={"MEDIC_DATA_DIR": "/srv/medic"})
    assert [(c.type, getattr(c, "path", None)) for c in config.checks] == [
        ("host_memory", None),
        ("gpu", None),
        ("disk", Path("/")),
        ("disk", Path("/srv/medic")),
    ]
    assert config.server.listen == "127.0.0.1:9847"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("15s", 15.0), ("1m30s", 90.0), ("2h", 7200.0), ("1.5", 1.5), ("1d", 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    config = parse_config(
        f"checks: [{{name: m, type: host_memory, interval: '{text}', timeout: 0.1}}]", env={}
    )
    assert config.checks[0].interval == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("512", 512), ("1KiB", 1024), ("2MB", 2_000_000), ("1.5GiB", 3 * 2**29)]
)
def test_sizes(text: str, size: int) -> None:
    config = parse_config(f"checks: [{{name: d, type: disk, path: /, min_avail_bytes: {text}}}]")
    assert config.checks[0].min_avail_bytes == size  # type: ignore[union-attr]


def test_empty_file_means_no_checks() -> None:
    assert parse_config("", env={}).checks == []


def test_summary_lists_checks() -> None:
    text = summarize(load_config(FIXTURES / "valid.yml", env={}))
    assert "checks: 4" in text
    assert "model_weights: path /models/tts/model.safetensors every 15s, timeout 5s" in text


def test_default_timeout_shrinks_to_a_short_interval() -> None:
    config = parse_config("checks: [{name: m, type: host_memory, interval: 1s}]", env={})
    assert config.checks[0].timeout == 1.0


def test_environment_references_fill_values_with_their_types() -> None:
    config = parse_config(
        """
server: {listen: "${LISTEN:-127.0.0.1:9100}"}
recovery:
  workers: ${WORKERS:-4}
  dry_run: ${DRY}
identity:
  matchers: ['node="${NODE_NAME}"', 'instance=~"${NODE_NAME}(:[0-9]+)?"']
data_dir: /srv/$${literal}/${EMPTY:-fallback}
""",
        env={"NODE_NAME": "gpu-07", "DRY": "true", "EMPTY": ""},
    )
    assert config.server.listen == "127.0.0.1:9100"
    assert config.recovery.workers == 4 and config.recovery.dry_run is True
    assert config.identity is not None
    assert config.identity.matchers == ['node="gpu-07"', 'instance=~"gpu-07(:[0-9]+)?"']
    assert config.data_dir == Path("/srv/${literal}/fallback")


def test_a_value_from_the_environment_stays_data() -> None:
    # A value that looks like YAML cannot add keys: it is substituted after parsing.
    config = parse_config("data_dir: ${DIR}\n", env={"DIR": "/a\nrecovery: {dry_run: true}"})
    assert config.data_dir == Path("/a\nrecovery: {dry_run: true}")
    assert config.recovery.dry_run is False


def test_unset_variables_are_reported_with_their_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "medic.yml"
    path.write_text('server:\n  listen: "${MEDIC_TEST_UNSET}"\nlog_level: "${ALSO_UNSET:-info}"\n'
                    "data_dir: /x/${bad name}\n")  # fmt: skip
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MEDIC_")}
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines == [
        f"{path}:2: server.listen: environment variable MEDIC_TEST_UNSET is not set "
        "(write ${MEDIC_TEST_UNSET:-default} to give a default)",
        f"{path}:4: data_dir: invalid reference ${{bad name}}; write ${{NAME}} or "
        "${NAME:-default}",
        f"{path}: 2 problems",
    ], out.stderr


@pytest.mark.parametrize(
    ("matcher", "problem"),
    [
        ('node!="gpu-07"', "use = or =~, not !="),
        ('node=""', "an empty value would name every host"),
        ("node", "invalid matcher"),
    ],
)
def test_identity_matchers_must_name_this_host(matcher: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"identity\.matchers\[0\]: .*" + re.escape(problem)):
        parse_config(f"identity: {{matchers: ['{matcher}']}}\n", env={})


def test_pull_mode_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            """
webhook:
  pull:
    alertmanagers: [am-0:9093]
    tls: {cert_file: /c.pem}
""",
            env={},
        )
    text = str(info.value)
    assert "webhook.pull.alertmanagers[0]: 'am-0:9093' is not an http:// or https:// URL" in text
    assert "webhook.pull.tls: give cert_file and key_file together" in text
    with pytest.raises(ConfigError, match=r"timeout \(2s\) must not exceed interval \(1s\)"):
        parse_config(
            "webhook: {pull: {alertmanagers: ['http://a:9093'], interval: 1s, timeout: 2s}}",
            env={},
        )
