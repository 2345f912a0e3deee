"""The `ingest` command: run, validate, new."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from ingest_core.commands.sizing import partitions_from_broker, sizing_warnings
from ingest_core.config import ConfigError, load_checked_settings
from ingest_core.ops.log import setup_logging
from ingest_core.source.kafka import refused_message, refused_properties, static_cooperative_warning
from ingest_core.units import parse_duration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest", description="Land a Kafka topic in a data lake, exactly once.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume one topic until SIGTERM/SIGINT")
    run.add_argument("config", type=Path)
    run.add_argument(
        "--exit-when-idle",
        metavar="DURATION",
        help="stop (after flushing) once every partition is read to its end and no message "
        "arrived for this long, e.g. 10s",
    )
    run.add_argument(
        "--exit-at-end",
        action="store_true",
        help="land what the topic holds and stop: each partition's last batch is cut as soon as it is read "
        "to its end, and the run exits once every partition it owns is read to its end and committed "
        "(backfills, scheduled runs)",
    )
    run.add_argument(
        "--shutdown-timeout",
        default="30s",
        metavar="DURATION",
        help="how long to keep retrying storage while stopping (default 30s)",
    )
    run.add_argument("--log-format", choices=["auto", "json", "text"], default="auto")

    validate = commands.add_parser("validate", help="check consumer YAML files; exit 1 on any problem")
    validate.add_argument("configs", type=Path, nargs="+", help="files or folders of *.yaml")
    validate.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the broker for the topic's partition count (sizing checks then use "
        "deploy.keda.partitions, if set)",
    )

    new = commands.add_parser("new", help="create consumers/TOPIC.yaml from the example")
    new.add_argument("topic")
    new.add_argument("--dir", type=Path, default=Path("consumers"))

    # Commands that live in a module of their own: each module has add_arguments(parser) and command(args) -> int.
    # Only the module of the command asked for is imported (`ingest run` does not load what `audit` needs).
    words = sys.argv[1:] if argv is None else argv
    asked = next((word for word in words if not word.startswith("-")), None)
    for name, help_text in _MODULE_COMMANDS.items():
        if importlib.util.find_spec(f"{__package__}.{name}") is not None:
            command_parser = commands.add_parser(name, help=help_text)
            if name == asked:
                importlib.import_module(f"{__package__}.{name}").add_arguments(command_parser)

    args = parser.parse_args(argv)
    if args.command in _MODULE_COMMANDS:
        return importlib.import_module(f"{__package__}.{args.command}").command(args)
    if args.command == "run":
        return _run(args)
    if args.command == "validate":
        return _validate(args.configs, offline=args.offline)
    return _new(args.topic, args.dir)


_MODULE_COMMANDS = {
    "render": "write Kubernetes manifests for every consumer YAML in a folder",
    "autoloader": "print the Databricks Auto Loader / Spark reader snippet for a consumer",
    "audit": "compare the lake with the topic: landed offset ranges, gaps, overlaps, lag",
}


def _run(args) -> int:
    setup_logging(args.log_format)
    try:
        settings = load_checked_settings(args.config)
        idle = parse_duration(args.exit_when_idle) if args.exit_when_idle else None
        shutdown_timeout = parse_duration(args.shutdown_timeout)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"ingest run: {error}", file=sys.stderr)
        return 1
    from ingest_core.commands.run import run  # imported late: `validate` must not need librdkafka loaded

    return run(settings, args.config, idle, shutdown_timeout, exit_at_end=args.exit_at_end)


def _validate(targets: list[Path], offline: bool = False) -> int:
    files: list[Path] = []
    for target in targets:
        if target.is_dir():
            files.extend(p for p in sorted(target.glob("*.yaml")) if not _is_shared_defaults(p))
        else:
            files.append(target)
    problems = 0
    lookup = None if offline else partitions_from_broker()
    for path in files:
        try:
            settings = load_checked_settings(path)
        except ConfigError as error:
            print(error, file=sys.stderr)
            problems += 1
            continue
        refused = refused_properties(settings)
        if refused:
            print(refused_message(str(path), refused), file=sys.stderr)
            problems += 1
            continue
        print(
            f"{path}: ok (topic {settings.topic}, group {settings.group}, {settings.output.format} to {settings.output.url})"
        )
        warnings = sizing_warnings(path, settings, lookup)
        if membership := static_cooperative_warning(settings, str(path)):
            warnings.append(membership)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 1 if problems else 0


def _is_shared_defaults(path: Path) -> bool:
    return path.name in ("defaults.yaml", "defaults.yml")


def _new(topic: str, folder: Path) -> int:
    example = folder / "example.yaml"
    target = folder / f"{topic}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
        print(f"ingest new: {topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-')", file=sys.stderr)
        return 1
    if not example.is_file():
        print(f"ingest new: {example} not found. Fix: run from the repository root or pass --dir", file=sys.stderr)
        return 1
    if target.exists():
        print(f"ingest new: {target} already exists; edit it or pick another topic", file=sys.stderr)
        return 1
    text = example.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^topic:.*$", f"topic: {topic}", text)
    text = re.sub(r"(?m)^group_id:.*$", f"group_id: ingest-{topic}", text)
    text = re.sub(r"(?m)^(\s*url:\s*\S*/)example\b", rf"\g<1>{topic}", text)
    target.write_text(text, encoding="utf-8")
    print(f"created {target}; check it with: ingest validate {target}")
    return 0
