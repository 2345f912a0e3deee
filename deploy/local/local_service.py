"""What the local servers' scripts share (kafka_broker.py, schema_registry.py, kube_apiserver.py):
the cache folder, free ports, process groups, the state file of a data dir, and the
`fetch | start | stop | status` command line they all have.

Each script runs its server as the leader of its own process group and writes a small JSON
state file into the data dir; `stop` and `status` read it back, checking first that the pid
still belongs to that server (a pid can be reused by an unrelated process).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    """$LAKE_INGEST_CACHE, else $XDG_CACHE_HOME/lake-ingest or ~/.cache/lake-ingest."""
    if os.environ.get("LAKE_INGEST_CACHE"):
        return Path(os.environ["LAKE_INGEST_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "lake-ingest"


def free_port(avoid: set[int] = frozenset()) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has exited but, when its parent never reaps it, keeps its pid.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> list[bytes]:
    """The process's arguments ([] when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def terminate_group(pid: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group led by pid; SIGKILL it after timeout."""
    def gone() -> bool:
        return proc.poll() is not None if proc else not is_alive(pid)

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        if gone():
            return


def read_state(path: Path) -> dict | None:
    """The JSON state file a `start` wrote, or None."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_state(path: Path, state: dict) -> None:
    path.write_text(json.dumps(state, indent=1) + "\n")


def stop_command(path: Path, state: dict | None, pids: list[int]) -> int:
    """`stop`: terminate `pids` (those of a live state), forget the state file."""
    for pid in pids:
        terminate_group(pid)
    path.unlink(missing_ok=True)
    print("stopped" if state else "not running")
    return 0


NOT_RUNNING = 3  # LSB "program is not running"


def cli(description: str, noun: str, commands: dict[str, Callable[[argparse.Namespace], int]],
        setup_error: type[Exception], version_flag: tuple[str, str] | None = None,
        start_options: Callable[[argparse.ArgumentParser], None] | None = None,
        fetch_help: str = "", start_help: str = "") -> Callable[[list[str] | None], int]:
    """The `main` of a server script: fetch, start --dir [--port], stop --dir, status --dir.
    `commands` maps those four names to their functions; a `setup_error` is printed as
    `error: ...` with exit code 2."""
    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(description=description)
        common = argparse.ArgumentParser(add_help=False)
        if version_flag:
            flag, text = version_flag
            common.add_argument(flag, dest="version", help=text)
        sub = parser.add_subparsers(dest="command", required=True)
        sub.add_parser("fetch", parents=[common], help=fetch_help).set_defaults(func=commands["fetch"])
        start = sub.add_parser("start", parents=[common], help=start_help)
        start.add_argument("--dir", required=True, help="data dir")
        start.add_argument("--port", type=int, help="port (default: a free one)")
        if start_options:
            start_options(start)
        start.set_defaults(func=commands["start"])
        for name, text in (("stop", f"stop the {noun} of a data dir"), ("status", f"is the {noun} of a data dir running")):
            command = sub.add_parser(name, help=text)
            command.add_argument("--dir", required=True, help="data dir")
            command.set_defaults(func=commands[name])
        args = parser.parse_args(argv)
        try:
            return args.func(args)
        except setup_error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return main
