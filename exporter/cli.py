"""The `medic` command line: run, check-config, history, stats, reset, trigger, explain."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence

from exporter.config import (
    Config,
    ConfigError,
    Problem,
    inspect_config,
    is_loopback,
    load_config,
    read_config_text,
    split_listen,
    summarize,
)
from exporter.version import __version__

log = logging.getLogger("medic")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medic",
        description="Prometheus exporter with auto-remediation for GPU model servers.",
    )
    parser.add_argument("--version", action="version", version=f"medic {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="start the exporter")
    run.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get("MEDIC_CONFIG") or None,
        help="YAML config (default: $MEDIC_CONFIG, else the built-in default)",
    )
    run.add_argument("--listen", metavar="HOST:PORT", help="overrides server.listen")
    run.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve the webhook on a non-loopback address without authentication",
    )
    check = commands.add_parser(
        "check-config",
        help="validate a config file (schema, references, the files it names) and summarise it",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--schema-only", action="store_true",
        help="skip reading the secret and TLS files it names (e.g. on a build machine)",
    )  # fmt: skip
    commands.add_parser("version", help="print medic's version")
    hist = commands.add_parser("history", help="recovery attempts from the journal")
    hist.add_argument("--since", metavar="DURATION", help="only the last DURATION, e.g. 1h")
    hist.add_argument("--failure-type", metavar="TYPE")
    hist.add_argument("--limit", type=int, default=50)
    hist.add_argument("-o", "--output", choices=["table", "json"], default="table",
                      help="json: one object per attempt, newest first (for scripts)")  # fmt: skip
    stats = commands.add_parser("stats", help="recovery statistics per failure type and action")
    gpu = commands.add_parser("gpu", help="what the GPUs went through (the journal)")
    gpu_commands = gpu.add_subparsers(dest="gpu_command", required=True, metavar="COMMAND")
    gpu_history = gpu_commands.add_parser(
        "history", help="faults, resets, reboots and escalations per GPU (by board serial)"
    )
    gpu_history.add_argument("serial", nargs="?", help="one GPU's board serial")
    gpu_history.add_argument("-o", "--output", choices=["table", "json"], default="table")
    for sub in (hist, stats, gpu_history):
        sub.add_argument(
            "--config", metavar="FILE", default=os.environ.get("MEDIC_CONFIG") or None,
            help="config whose data_dir holds the journal (default: built-in)",
        )  # fmt: skip
    reset = commands.add_parser(
        "reset", help="ask the running medic to forget cooldowns and close its action breakers"
    )
    trigger = commands.add_parser(
        "trigger", help="ask the running medic to run a failure type's ladder (through its gates)"
    )
    trigger.add_argument("failure_type", metavar="FAILURE_TYPE")
    trigger.add_argument(
        "--label", action="append", default=[], metavar="NAME=VALUE",
        help="a label the actions see (MEDIC_LABEL_<NAME>); repeatable",
    )  # fmt: skip
    trigger.add_argument("--detail", default="", help="why, for the journal")
    trigger.add_argument(
        "--dedup-key", metavar="KEY",
        help="the same key twice is handled once (default: a new episode)",
    )  # fmt: skip
    for sub in (reset, trigger):
        _remote_options(sub, "the running medic's config: its listen address and server.auth")
    fleet = commands.add_parser("fleet", help="the fleet: hosts in remediation, held rungs, slots")
    fleet_commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    fleet_status = fleet_commands.add_parser(
        "status", help="hosts in remediation, held rungs and why, budgets and slots left"
    )
    fleet_status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    fleet_release = fleet_commands.add_parser(
        "release", help="let this host's held rungs go past the fleet guard (a person decides)"
    )
    fleet_release.add_argument("episode", nargs="?", type=int, help="one episode (default: all)")
    for sub in (fleet_status, fleet_release):
        _remote_options(sub, "the config with the fleet section and the running medic's address")
    explain = commands.add_parser(
        "explain", help="which route, failure type, ladder and gates an alert would meet"
    )
    explain.add_argument("file", metavar="ALERT.json",
                         help="an Alertmanager webhook body, a list of alerts or one alert; "
                              "- reads stdin")  # fmt: skip
    explain.add_argument(
        "--config", metavar="FILE", default=os.environ.get("MEDIC_CONFIG") or None,
        help="the config to explain with (default: $MEDIC_CONFIG, else built-in)",
    )  # fmt: skip
    explain.add_argument("-o", "--output", choices=["text", "json"], default="text")
    return parser


def _remote_options(sub: argparse.ArgumentParser, config_help: str) -> None:
    """--config, --url and --ca-file: for commands that ask the running medic."""
    sub.add_argument("--config", metavar="FILE", default=os.environ.get("MEDIC_CONFIG") or None,
                     help=config_help)  # fmt: skip
    sub.add_argument("--url", help="medic's base URL (default: from server.listen)")
    sub.add_argument("--ca-file", metavar="FILE", help="CA bundle for an https medic")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.listen:
        env["MEDIC_LISTEN"] = args.listen
    notes: list[Problem] = []
    config = load_config(args.config, env, notes)
    _setup_logging(config.log_level)
    for note in notes:
        log.warning("%s", note.render(args.config))

    # Heavy imports only for `run`: check-config and version stay quick.
    from exporter.app import Medic  # noqa: PLC0415
    from exporter.http.server import bind, serve  # noqa: PLC0415
    from exporter.webhook.auth import Authenticator, SecretError  # noqa: PLC0415

    authenticator = None
    if config.server.auth is not None:
        try:
            authenticator = Authenticator(config.server.auth)
        except SecretError as exc:
            print(f"medic: server.auth: {exc}", file=sys.stderr)
            return 1
    host, _ = split_listen(config.server.listen)
    if authenticator is None and not is_loopback(host):
        if not args.insecure_no_auth:
            print(
                f"medic: refusing to serve the webhook on {config.server.listen} without "
                "authentication; set server.auth (bearer token or basic) or pass "
                "--insecure-no-auth",
                file=sys.stderr,
            )
            return 1
        log.warning(
            "serving on %s WITHOUT authentication (--insecure-no-auth): anyone who can "
            "reach it can trigger recovery actions", config.server.listen,
        )  # fmt: skip

    warning = identity_warning(config)
    if warning:
        log.warning("%s", warning)

    try:
        sock = bind(config.server.listen)
    except OSError as exc:
        print(f"medic: cannot listen on {config.server.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    source = args.config or "built-in defaults"
    log.info("medic %s using %s", __version__, source)
    medic = Medic(config)
    _tune_runtime()
    serve(medic, sock, authenticator)
    return 0


def identity_warning(config: Config) -> str | None:
    """What to warn about when a webhook other hosts can reach has no identity section."""
    host, _ = split_listen(config.server.listen)
    if config.identity is not None or is_loopback(host):
        return None
    return (
        f"the webhook listens on {config.server.listen} and no `identity` section says which "
        "alerts are about this host: medic acts on alerts whose node, hostname or instance "
        "names one of this host's names or addresses, and on alerts that name no host at all. "
        'In a fleet, set identity.matchers (e.g. node="${NODE_NAME}") and unlabeled: '
        "other_host, or pull from Alertmanager instead (webhook.pull)"
    )


def _tune_runtime() -> None:
    """Process-wide settings for a standalone medic (never applied when embedded)."""
    # Start-up objects (modules, config, pydantic schemas) never die: move them out of the
    # collector's way so full collections stay short. Under a webhook flood this took
    # /metrics p99 from 32 ms to 5-8 ms (BENCHMARKS.md).
    gc.collect()
    gc.freeze()
    # Full collections stop every thread for as long as the heap is big (60-120 ms while
    # 10,000 alerts wait for their ladder): take them 100 times less often. medic breaks
    # its own reference cycles, so little waits for them (bench.hostile: /metrics p99
    # during 10,000-alert notifications 78 -> 25 ms; RSS under the 10-minute flood: see
    # BENCHMARKS.md).
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)
    # The HTTP thread waits for the GIL each time it wakes; while the recovery engine's
    # thread works (claims of a large notification), 5 ms per wait by default. 1 ms:
    # /metrics p99 during 10,000-alert notifications 15.9 -> 11.6 ms (bench.hostile).
    sys.setswitchinterval(0.001)


def _check_config(args: argparse.Namespace) -> int:
    """Every problem of the file in one run (schema, references, files), then warnings."""
    path: str = args.file
    files = not args.schema_only
    inspection = inspect_config(read_config_text(path), path, os.environ, files=files)
    for problem in inspection.problems:
        print(problem.render(path), file=sys.stderr)
    for warning in inspection.warnings:
        print(f"warning: {warning.render(path)}", file=sys.stderr)
    if inspection.config is None:
        count = len(inspection.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    print(summarize(inspection.config))
    return 0


def _remote_command(args: argparse.Namespace) -> int:
    from exporter import cli_remote  # noqa: PLC0415 - httpx only for these commands

    config = load_config(args.config)
    verify: bool | str = args.ca_file or True
    try:
        if args.command == "reset":
            path = "/api/v1/recoveries/reset"
            answer = cli_remote.post(config, path, {}, url=args.url, verify=verify)
            print(f"medic: {answer.get('status', answer)}")
            return 0
        body: dict[str, object] = {
            "failure_type": args.failure_type,
            "labels": cli_remote.parse_labels(args.label),
            "detail": args.detail,
        }
        if args.dedup_key:
            body["dedup_key"] = args.dedup_key
        answer = cli_remote.post(config, "/api/v1/failures", body, url=args.url, verify=verify)
    except cli_remote.RemoteError as exc:
        print(f"medic: {exc}", file=sys.stderr)
        return 1
    print(f"medic: {answer.get('result')}: {answer.get('detail') or args.failure_type}")
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from exporter import cli_fleet, cli_remote  # noqa: PLC0415 - httpx only here

    config = load_config(args.config)
    verify: bool | str = args.ca_file or True
    try:
        if args.fleet_command == "status":
            print(cli_fleet.status(config, args.output, args.url, verify))
            return 0
        body = {"episode": args.episode, "who": os.environ.get("USER") or None}
        answer = cli_remote.post(config, "/api/v1/fleet/release", body, url=args.url,
                                 verify=verify)  # fmt: skip
    except (cli_fleet.FleetError, cli_remote.RemoteError) as exc:
        print(f"medic: {exc}", file=sys.stderr)
        return 1
    released = answer.get("released") or []
    print(f"medic: released {len(released)} held rung(s)"
          + (f": episodes {', '.join(map(str, released))}" if released else ""))  # fmt: skip
    return 0


def _explain(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from exporter import explain  # noqa: PLC0415

    config = load_config(args.config)
    try:
        text = sys.stdin.read() if args.file == "-" else read_config_text(args.file)
        entries = explain.explain(config, explain.read_alerts(text))
    except explain.ExplainError as exc:
        print(f"medic: {args.file}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(entries, indent=2) if args.output == "json" else explain.render(entries))
    return 0


def _journal_command(args: argparse.Namespace) -> int:
    from exporter import cli_history  # noqa: PLC0415 - keeps `medic version` quick

    config = load_config(args.config)
    try:
        if args.command == "history":
            out = cli_history.history(
                config, args.since, args.failure_type, args.limit, args.output
            )
        elif args.command == "gpu":
            out = cli_history.gpu_history(config, args.serial, args.output)
        else:
            out = cli_history.stats(config)
    except (cli_history.NoJournal, ValueError) as exc:
        print(f"medic: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _version(_args: argparse.Namespace) -> int:
    print(f"medic {__version__}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "check-config": _check_config,
    "version": _version,
    "history": _journal_command,
    "stats": _journal_command,
    "gpu": _journal_command,
    "reset": _remote_command,
    "trigger": _remote_command,
    "explain": _explain,
    "fleet": _fleet,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
