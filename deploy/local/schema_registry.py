"""Local Confluent-compatible schema registry for tests and demos (standard library + Go).

This module owns everything needed to run one real schema registry on 127.0.0.1:

* building it from the Go module ``github.com/conduitio/conduit-schema-registry`` (a
  Confluent REST API over an in-memory store) with the machine's ``go``, into a per-version
  cache outside the repo (``ensure_binary``); the program is the small ``main.go`` below;
* starting it as a child process group and waiting until it answers a schema lookup
  (``LocalSchemaRegistry``);
* a small CLI (``fetch`` / ``start`` / ``stop`` / ``status``) for shells and demo scripts,
  which leaves the registry running in the background, like ``kafka_broker.py``.

Known gaps of this registry (Confluent's own answers otherwise; the clients we use do not
need these, and tests that do use confluent-kafka's in-process ``mock://`` registry):
  * compatibility checks (``POST /compatibility/...``) answer 501 Not Implemented, and
    ``PUT /config`` is accepted but not enforced: any schema registers under any subject;
  * ``GET /subjects/{subject}/versions/latest`` answers 404: ask for an explicit version
    (serializers must not be configured with ``use.latest.version``);
  * ``GET /subjects``, ``POST /subjects/{subject}`` (look a schema up without registering it,
    what serializers do with ``auto.register.schemas: false``), deletes, modes and exporters
    answer 501;
  * schemas live in memory only: a restart forgets them (and their ids).

Environment:
  LAKE_SCHEMA_REGISTRY_VERSION  module version to build (default: DEFAULT_VERSION).
  LAKE_INGEST_CACHE             cache root (default: $XDG_CACHE_HOME/lake-ingest or
                                ~/.cache/lake-ingest); the binary goes to
                                <root>/schema-registry-<VERSION>/schema-registry.

Files in a registry's data dir:
  registry.out   the program's stdout/stderr
  registry.json  written by the CLI ``start`` only
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # local_service.py, however this file is loaded
import local_service  # noqa: E402
from local_service import cache_root, free_port, terminate_group  # noqa: E402,F401 - also this module's API

MODULE = "github.com/conduitio/conduit-schema-registry"
DEFAULT_VERSION = "v0.2.6"
BINARY = "schema-registry"
READY_TIMEOUT_S = 30.0
BUILD_TIMEOUT_S = 600.0
LOG_TAIL_LINES = 40

# The whole program: the module's registry and HTTP handlers on an in-memory database.
MAIN_GO = """\
// A Confluent-REST-compatible schema registry on 127.0.0.1 (built by deploy/local/schema_registry.py).
package main

import (
\t"flag"
\t"log"
\t"log/slog"
\t"net"
\t"net/http"
\t"os"

\t"github.com/conduitio/conduit-commons/database/inmemory"
\tschemaregistry "github.com/conduitio/conduit-schema-registry"
)

func main() {
\taddr := flag.String("addr", "127.0.0.1:0", "address to listen on")
\tflag.Parse()
\tregistry, err := schemaregistry.NewSchemaRegistry(&inmemory.DB{})
\tif err != nil {
\t\tlog.Fatal(err)
\t}
\tlogger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
\tmux := http.NewServeMux()
\tschemaregistry.NewServer(logger, registry).RegisterHandlers(mux)
\tlistener, err := net.Listen("tcp", *addr)
\tif err != nil {
\t\tlog.Fatal(err)
\t}
\t// The caller reads the port from this line (the address may name port 0).
\tos.Stdout.WriteString("listening on " + listener.Addr().String() + "\\n")
\tlog.Fatal(http.Serve(listener, mux))
}
"""


class RegistrySetupError(RuntimeError):
    """The registry could not be built or started."""


# --------------------------------------------------------------------------
# Versions, paths, build


def registry_version(version: str | None = None) -> str:
    return version or os.environ.get("LAKE_SCHEMA_REGISTRY_VERSION") or DEFAULT_VERSION


def version_dir(version: str | None = None) -> Path:
    return cache_root() / f"schema-registry-{registry_version(version).lstrip('v')}"


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise RegistrySetupError("go not found: install Go 1.24+ to build the schema registry")
    return go


def _run_go(args: list[str], cwd: Path) -> None:
    # The module's own `go` line (1.24) is older than the machine's Go: never fetch a toolchain.
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    try:
        proc = subprocess.run([_go(), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RegistrySetupError(f"`go {' '.join(args)}` in {cwd} took over {BUILD_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-LOG_TAIL_LINES:])
        raise RegistrySetupError(f"`go {' '.join(args)}` in {cwd} failed (exit {proc.returncode}):\n{tail}")


def ensure_binary(version: str | None = None) -> Path:
    """The registry program, built from the Go module into the cache if it is not there yet."""
    version = registry_version(version)
    vdir = version_dir(version)
    vdir.mkdir(parents=True, exist_ok=True)
    binary = vdir / BINARY
    marker = vdir / "build.complete.json"
    with open(vdir / ".lock", "w") as lock:  # parallel callers: one builds, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        if done.get("module") == MODULE and done.get("version") == version \
                and done.get("main_go") == MAIN_GO and binary.is_file():
            return binary
        marker.unlink(missing_ok=True)
        src = vdir / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        (src / "main.go").write_text(MAIN_GO)
        (src / "go.mod").write_text(f"module lakeingest/schemaregistry\n\ngo 1.24\n\nrequire {MODULE} {version}\n")
        _run_go(["mod", "tidy"], src)
        _run_go(["build", "-trimpath", "-o", str(binary), "."], src)
        marker.write_text(json.dumps({"module": MODULE, "version": version, "main_go": MAIN_GO}, indent=1))
        return binary


# --------------------------------------------------------------------------
# Processes


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


def registry_ready(url: str, timeout: float = 2.0) -> bool:
    """True when the registry answers a schema lookup (404 for id 0, which is never given out;
    `GET /subjects` is one of the calls it does not implement)."""
    try:
        with _NO_PROXY.open(f"{url}/schemas/ids/0", timeout=timeout) as answer:
            return answer.status == 200
    except urllib.error.HTTPError as error:
        return error.code == 404
    except (OSError, urllib.error.URLError):
        return False


def _is_our_registry(pid: int, binary: str) -> bool:
    """Guards against signalling an unrelated process that reused the pid."""
    cmdline = local_service.command_line(pid)
    return bool(cmdline) and cmdline[0] == binary.encode()


class LocalSchemaRegistry:
    """One schema registry process on 127.0.0.1; `url` is what clients take as `url`."""

    def __init__(self, data_dir: str | Path, port: int | None = None, version: str | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.version = registry_version(version)
        self.binary: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("registry port unknown: call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def stdout_file(self) -> Path:
        return self.data_dir / "registry.out"

    def start(self) -> "LocalSchemaRegistry":
        if self.process and self.process.poll() is None:
            return self
        self.binary = ensure_binary(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        with open(self.stdout_file, "ab") as out:
            # Own process group: stop() signals it, and a Ctrl-C in the caller's terminal does not.
            self.process = subprocess.Popen([str(self.binary), "-addr", f"127.0.0.1:{self.port}"],
                                            cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        proc, self.process = self.process, None
        if proc and proc.poll() is None:
            terminate_group(proc.pid, proc=proc)

    def detach(self) -> int:
        """Forget the running registry so it outlives this Python process."""
        atexit.unregister(self.stop)
        pid, self.process = self.pid, None
        if pid is None:
            raise RuntimeError("registry not started")
        return pid

    def __enter__(self) -> "LocalSchemaRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistrySetupError(f"the schema registry exited with code {self.process.returncode} "
                                         f"during startup.\n--- {self.stdout_file} (tail)\n{self._tail()}")
            if registry_ready(self.url, timeout=1.0):
                return
            time.sleep(0.1)
        raise RegistrySetupError(f"the schema registry is not ready on {self.url} after {timeout:g} s.\n"
                                 f"--- {self.stdout_file} (tail)\n{self._tail()}")

    def _tail(self) -> str:
        try:
            return "\n".join(self.stdout_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        except OSError:
            return "(no output)"


# --------------------------------------------------------------------------
# CLI


def _state_file(data_dir: Path) -> Path:
    return data_dir / "registry.json"


def _read_state(data_dir: Path) -> dict | None:
    state = local_service.read_state(_state_file(data_dir))
    if not state or not local_service.is_alive(state["pid"]):
        return None
    return state if _is_our_registry(state["pid"], state["binary"]) else None


def _cmd_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    binary = ensure_binary(args.version)
    print(f"{binary} ({MODULE} {registry_version(args.version)}, {time.monotonic() - started:.1f} s)")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir).resolve()
    if (state := _read_state(data_dir)):
        print(f"already running (pid {state['pid']}): {state['url']}", file=sys.stderr)
        return 1
    registry = LocalSchemaRegistry(data_dir, port=args.port, version=args.version).start()
    state = {"pid": registry.pid, "url": registry.url, "port": registry.port, "version": registry.version,
             "binary": str(registry.binary), "data_dir": str(data_dir), "log": str(registry.stdout_file)}
    local_service.write_state(_state_file(data_dir), state)
    registry.detach()
    print(registry.url)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir).resolve()
    state = _read_state(data_dir)
    return local_service.stop_command(_state_file(data_dir), state, [state["pid"]] if state else [])


def _cmd_status(args: argparse.Namespace) -> int:
    state = _read_state(Path(args.dir).resolve())
    if not state:
        print("not running")
        return local_service.NOT_RUNNING
    health = "ready" if registry_ready(state["url"]) else "not ready"
    print(f"running pid={state['pid']} url={state['url']} ({health})")
    return 0 if health == "ready" else 1


main = local_service.cli(
    __doc__.splitlines()[0], "registry",
    {"fetch": _cmd_fetch, "start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}, RegistrySetupError,
    version_flag=("--registry-version", f"module version (default $LAKE_SCHEMA_REGISTRY_VERSION or {DEFAULT_VERSION})"),
    fetch_help="only build the registry into the cache", start_help="start a registry in the background, print its URL")


if __name__ == "__main__":
    sys.exit(main())
