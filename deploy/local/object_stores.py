"""Real object-store test servers on 127.0.0.1 for integration tests.

Three servers, each a child process in its own session (so a Ctrl-C in the
terminal or a signal to the test runner's process group does not reach it,
and ``stop()`` can end the whole process group it started):

* :class:`MotoS3Server` -- ``moto_server`` (moto in server mode: the real S3
  HTTP API, in memory).  ``storage_options`` is ready for ``s3fs``.
* :class:`AzuriteServer` -- ``azurite-blob`` (the Azure Blob emulator, npm
  package ``azurite@3.35.0``, the newest that runs on Node 20), installed on
  first use into a cache folder outside the repo.  ``storage_options`` is ready
  for ``adlfs``.
* :class:`FakeGcsServer` -- ``fake-gcs-server`` (Go module
  ``github.com/fsouza/fake-gcs-server``, the GCS JSON API, in memory), built
  with ``go install`` on first use into a cache folder outside the repo.
  ``storage_options`` is ready for ``gcsfs``; the process that imports gcsfs
  needs ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in its environment
  (``FakeGcsServer.ENVIRONMENT``): otherwise gcsfs first asks for the bucket
  type over gRPC/TLS, which the fake does not serve, and falls back only after
  60 s.

Outages
-------
``server.outage()`` is a context manager; inside the ``with`` block the store
is down, and it comes back, with all its state, when the block ends.

``mode="hang"`` (the default) sends SIGSTOP to the server's process group and
SIGCONT on exit.  The listening socket stays open, so the kernel still
completes TCP handshakes (until the listen backlog is full) but nothing ever
answers: clients see *timeouts*, not refusals -- the way a stalled load
balancer or a network partition looks.  Requests sent during the outage sit in
the socket buffers and are *executed when it ends*, even if the client has
given up: a write that timed out may still land (and a client-side retry of a
create-only write may then get a conflict for its own file).  What clients saw
here (s3fs 2026.9 / aiobotocore 3.10, adlfs 2026.8 / azure-storage-blob 12.31):

* s3fs defaults (connect 5 s, read 15 s, botocore legacy retries, s3fs
  ``fs.retries = 5``): reads and listings still blocked after 300 s.  Writes
  (PUT / UploadPart / CompleteMultipartUpload) send ``Expect: 100-continue``
  and aiohttp waits for the ``100`` with no timeout: they block for the whole
  outage whatever the timeouts, then succeed.  See
  ``MotoS3Server.storage_options_with_timeouts`` for bounds.
* adlfs defaults: ``azure.core.exceptions.ServiceResponseTimeoutError`` after
  ~320 s, for reads and writes alike; with ``read_timeout=5`` and
  ``retry_total=0`` on the service client, after 5 s.
* gcsfs 2026.10 defaults (no ``requests_timeout``): an upload to a stopped
  fake-gcs-server was still blocked after 6 min; it completes once the server
  is continued.  gcsfs's ``requests_timeout=`` (seconds) is meant to bound
  each request (not measured here).

``mode="refuse"`` needs the server to be built with ``refusable=True``: the
server then listens on a private port behind a small TCP relay in this process
that owns the public port.  During the outage the relay closes its listening
socket and resets every open connection, so clients get ``ECONNREFUSED`` /
``ECONNRESET`` at once; the server itself keeps running, so no state is lost
(restarting moto would lose everything: it is in memory).  On exit the relay
listens again on the same port.  Seen here: s3fs raises
``botocore.exceptions.EndpointConnectionError`` after 5-11 s with default
options (botocore retries, s3fs does not), < 1 s without botocore retries;
adlfs raises ``azure.core.exceptions.ServiceRequestError`` after ~83 s with
default options (SDK backoff 15 s, 18 s, 24 s ...), at once with
``retry_total=0``; gcsfs 2026.10 retries a refused request 6 times itself
(sleeps of 1, 2, 4, 8, 16 s plus jitter) before it raises
``aiohttp.ClientConnectorError``.

``pause()`` / ``resume()`` are the bare halves of ``outage()`` for tests that
need to end an outage from a timer or another thread, e.g.
``threading.Timer(30, server.resume).start()`` after ``server.pause()``.

Command line (for humans; runs until Ctrl-C)::

    python deploy/local/object_stores.py s3 --port 5000
    python deploy/local/object_stores.py azurite --port 10000 --dir /tmp/azurite
    python deploy/local/object_stores.py gcs --port 4443

Only the standard library is imported at module import time; ``boto3`` is
imported by ``MotoS3Server.create_bucket`` / ``client`` and
``azure.storage.blob`` by ``AzuriteServer.create_container`` /
``service_client`` / ``reset``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "AZURITE_VERSION",
    "AzuriteServer",
    "FAKE_GCS_VERSION",
    "FakeGcsServer",
    "MotoS3Server",
    "ServerError",
    "cache_dir",
    "ensure_azurite",
    "ensure_fake_gcs_server",
    "free_port",
]

AZURITE_VERSION = "3.35.0"
FAKE_GCS_MODULE = "github.com/fsouza/fake-gcs-server"
FAKE_GCS_VERSION = "1.56.1"
LOCALHOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A test server could not be installed, started or reached."""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


# urllib honours HTTP_PROXY & co.; the servers are on loopback, never proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str, timeout: float = 5.0, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> int:
    """Send one request; return the HTTP status (error statuses included)."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it dies
    (Linux ``PR_SET_PDEATHSIG``), so a test run killed with SIGKILL leaves no
    server behind, paused ones included.  Best effort elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def cache_dir() -> Path:
    """Where downloaded test tools live: ``$LAKE_INGEST_CACHE``, else
    ``$XDG_CACHE_HOME/lake-ingest``, else ``~/.cache/lake-ingest``."""
    override = os.environ.get("LAKE_INGEST_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lake-ingest"


# --------------------------------------------------------------------------
# TCP relay used for mode="refuse" outages
# --------------------------------------------------------------------------


class _TcpGate:
    """Relays ``host:port`` to ``host:target_port``; can refuse for a while.

    ``close()`` stops listening (new connections are refused) and resets the
    open ones; ``open()`` listens again on the same port.
    """

    def __init__(self, host: str, port: int, target_port: int) -> None:
        self.host = host
        self.port = port
        self.target_port = target_port
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                ls.bind((self.host, self.port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    ls.close()
                    raise
                time.sleep(0.05)
        ls.listen(128)
        ls.settimeout(0.1)
        self._stop = threading.Event()
        self._listener = ls
        self._thread = threading.Thread(
            target=self._accept_loop, args=(ls, self._stop), name=f"tcp-gate-{self.port}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        ls, self._listener = self._listener, None
        if ls is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        ls.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                # linger 0: close() sends RST, the client sees ECONNRESET
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()

    def _accept_loop(self, ls: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            pending = [2]  # pumps of this pair still running
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, pending), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pending: list[int]) -> None:
        try:
            while True:
                data = src.recv(256 * 1024)
                if not data:
                    break
                dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:  # a reset on either side ends both directions
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        with self._lock:
            pending[0] -= 1
            last = pending[0] == 0
            if last:
                self._conns.discard(src)
                self._conns.discard(dst)
        if last:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


# --------------------------------------------------------------------------
# child-process server base
# --------------------------------------------------------------------------


class _ChildServer:
    """A server run as a child process in its own session on 127.0.0.1."""

    name = "server"

    def __init__(
        self,
        port: int | None,
        host: str,
        refusable: bool,
        startup_timeout: float,
        log_path: str | os.PathLike[str] | None,
        die_with_parent: bool = True,
    ) -> None:
        self.host = host
        self.die_with_parent = die_with_parent
        self._requested_port = port
        self.port: int | None = port
        self._public_port: int | None = None  # while spawning: the port clients will use
        self._backend_port: int | None = None
        self.refusable = refusable
        self.startup_timeout = startup_timeout
        self._log_path_arg = Path(log_path) if log_path else None
        self.log_path: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._gate: _TcpGate | None = None
        self._paused = False

    # -- to be provided by subclasses -----------------------------------
    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _probe_url(self, port: int) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Runs once before the first spawn (installs, folders)."""

    # -- lifecycle --------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> _ChildServer:
        if self.running:
            return self
        self._tmp = tempfile.TemporaryDirectory(prefix=f"lake-ingest-{self.name}-")
        self.log_path = self._log_path_arg or Path(self._tmp.name) / f"{self.name}.log"
        try:
            self._prepare()
            attempts = 1 if self._requested_port else 5
            last: Exception | None = None
            for _ in range(attempts):
                public = self._requested_port or free_port(self.host)
                if self._requested_port and not _port_is_free(self.host, public):
                    raise ServerError(f"{self.name}: port {self.host}:{public} is already in use")
                backend = free_port(self.host) if self.refusable else public
                self._public_port = public
                try:
                    self._spawn(backend)
                except ServerError as e:  # most likely lost a race for the port
                    last = e
                    continue
                self.port, self._backend_port = public, backend
                if self.refusable:
                    self._gate = _TcpGate(self.host, public, backend)
                    self._gate.open()
                atexit.register(self.stop)
                return self
            raise last or ServerError(f"{self.name}: could not start")
        except BaseException:
            self._cleanup()
            raise

    def _spawn(self, port: int) -> None:
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:  # the child keeps its own copy
            self._proc = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self._tmp.name if self._tmp else None,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self._wait_ready(port)

    def _wait_ready(self, port: int) -> None:
        assert self._proc is not None
        url = self._probe_url(port)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServerError(f"{self.name} exited with code {code} before it was ready:\n{self.log_tail()}")
            try:
                _http("GET", url, timeout=2)
                return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self._kill()
                raise ServerError(
                    f"{self.name} not ready on port {port} after {self.startup_timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # start_new_session=True: the child leads its own process group
            os.killpg(self._proc.pid, sig)

    def _kill(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            self._signal_group(signal.SIGCONT)  # a stopped process only acts on SIGTERM once continued
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(timeout=timeout)
        self._proc = None
        self._paused = False

    def stop(self) -> None:
        """Stop the server (and its relay); safe to call twice."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        self._kill()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> _ChildServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; tests should call stop()
        with contextlib.suppress(Exception):
            if self._proc is not None:
                self.stop()

    # -- outages ----------------------------------------------------------
    def pause(self) -> None:
        """SIGSTOP the server: connections hang (see the module docstring)."""
        if not self.running:
            raise ServerError(f"{self.name} is not running")
        self._signal_group(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT the server after ``pause()``."""
        self._signal_group(signal.SIGCONT)
        self._paused = False

    def refuse(self) -> None:
        """Refuse and reset connections (needs ``refusable=True``)."""
        if self._gate is None:
            raise ServerError(f"{self.name}: refuse() needs the server built with refusable=True")
        self._gate.close()

    def accept(self) -> None:
        """Accept connections again after ``refuse()``."""
        if self._gate is None:
            raise ServerError(f"{self.name}: accept() needs the server built with refusable=True")
        self._gate.open()

    @contextlib.contextmanager
    def outage(self, mode: str = "hang") -> Iterator[_ChildServer]:
        """The store is down inside the ``with`` block and keeps its state.

        ``mode="hang"``: SIGSTOP/SIGCONT; clients time out.
        ``mode="refuse"``: connections refused/reset (needs ``refusable=True``).
        """
        if mode == "hang":
            self.pause()
            try:
                yield self
            finally:
                self.resume()
        elif mode == "refuse":
            self.refuse()
            try:
                yield self
            finally:
                self.accept()
        else:
            raise ValueError(f"outage mode must be 'hang' or 'refuse', not {mode!r}")


# --------------------------------------------------------------------------
# moto (S3)
# --------------------------------------------------------------------------


class MotoS3Server(_ChildServer):
    """``moto_server -H 127.0.0.1 -p PORT``: a real HTTP S3 API, in memory.

    >>> with MotoS3Server() as s3:
    ...     s3.create_bucket("lake")
    ...     fs = s3fs.S3FileSystem(**s3.storage_options)

    Bucket names need at least 3 characters; create buckets with
    ``create_bucket`` (s3fs ``mkdir`` with region us-east-1 fails).
    """

    name = "moto"
    ACCESS_KEY = "testing"
    SECRET_KEY = "testing"
    REGION = "us-east-1"

    def __init__(
        self,
        port: int | None = None,
        host: str = LOCALHOST,
        *,
        refusable: bool = False,
        startup_timeout: float = 30.0,
        log_path: str | os.PathLike[str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(port, host, refusable, startup_timeout, log_path, die_with_parent)

    def start(self) -> MotoS3Server:
        super().start()
        return self

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def _command(self, port: int) -> list[str]:
        # the moto_server console script is moto.server:main; running it with
        # this interpreter avoids picking up another environment's moto
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)]

    def _probe_url(self, port: int) -> str:
        return f"http://{self.host}:{port}/moto-api/"

    def _require_started(self) -> int:
        if self.port is None or self._proc is None:
            raise ServerError("moto server is not started")
        return self.port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self._require_started()}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for ``s3fs.S3FileSystem(**options)`` / fsspec ``storage_options``."""
        return {
            "key": self.ACCESS_KEY,
            "secret": self.SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.REGION},
        }

    def storage_options_with_timeouts(
        self, connect_timeout: float = 2, read_timeout: float = 5, total_max_attempts: int = 1
    ) -> dict[str, Any]:
        """``storage_options`` plus short botocore timeouts and no botocore
        retries, so a ``mode="hang"`` outage surfaces as
        ``botocore.exceptions.ReadTimeoutError`` within seconds.

        Caveats seen with s3fs 2026.9 / aiobotocore 3.10:

        * botocore's ``retries.max_attempts`` counts *retries*
          (``max_attempts: 1`` makes 2 attempts); ``total_max_attempts``
          counts attempts, hence its use here.
        * s3fs retries timeouts itself ``fs.retries`` times (default 5) on
          top of botocore; the ``retries`` *constructor* argument is ignored,
          set the attribute: ``fs.retries = 1``.
        * PUT/POST with a body (``put_object``, ``upload_part``,
          ``complete_multipart_upload`` ...) carry ``Expect: 100-continue``
          and aiohttp waits for the ``100 Continue`` with *no* timeout: such a
          request hangs for the whole hang-outage, whatever ``read_timeout``
          says, and then completes.  Bound it with fsspec's ``timeout=``
          argument of the filesystem's sync methods
          (``fs.pipe_file(p, data, mode="create", timeout=30)`` raises
          ``fsspec.exceptions.FSTimeoutError``), or drop the header:
          ``fs.s3.meta.events.unregister("before-call.s3",
          botocore.handlers.add_expect_header)`` after ``fs.connect()``.
        """
        opts = self.storage_options
        opts["config_kwargs"] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": {"total_max_attempts": total_max_attempts, "mode": "standard"},
        }
        return opts

    def client(self) -> Any:
        """A boto3 S3 client for this server (dummy credentials)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.REGION,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (≥ 3 characters); returns the name."""
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Forget every bucket and object (``POST /moto-api/reset``)."""
        status = _http("POST", f"{self.endpoint_url}/moto-api/reset", data=b"")
        if status != 200:
            raise ServerError(f"moto reset answered HTTP {status}")


# --------------------------------------------------------------------------
# Azurite (Azure Blob / ADLS Gen2 via adlfs)
# --------------------------------------------------------------------------


def ensure_azurite(version: str = AZURITE_VERSION, timeout: float = 900.0) -> Path:
    """Install ``azurite@version`` with npm into ``cache_dir()/azurite-VERSION``
    unless it is there already; return the path of ``azurite-blob``.

    Safe against concurrent callers (a file lock) and interrupted installs
    (npm runs in a scratch folder that is renamed into place when complete).
    """
    base = cache_dir()
    target = base / f"azurite-{version}"
    exe = target / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ServerError("Azurite needs Node.js and npm on PATH (Node 20 runs azurite 3.35.0)")
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"azurite-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():  # another process installed it while we waited
            return exe
        scratch = Path(tempfile.mkdtemp(prefix=f".azurite-{version}-", dir=base))
        try:
            (scratch / "package.json").write_text(
                json.dumps({"name": "lake-ingest-azurite", "private": True, "version": "0.0.0"})
            )
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", f"azurite@{version}"],
                cwd=scratch,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if proc.returncode != 0:
                raise ServerError(
                    f"npm install azurite@{version} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
                )
            if not (scratch / "node_modules" / ".bin" / "azurite-blob").exists():
                raise ServerError(f"npm install azurite@{version} left no node_modules/.bin/azurite-blob")
            if target.exists():  # a broken earlier install
                shutil.rmtree(target)
            os.rename(scratch, target)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    return exe


class AzuriteServer(_ChildServer):
    """``azurite-blob`` on 127.0.0.1 with the well-known dev account.

    >>> with AzuriteServer() as az:
    ...     az.create_container("lake")
    ...     fs = adlfs.AzureBlobFileSystem(**az.storage_options)

    ``location`` is where Azurite keeps blobs and metadata; by default a
    temporary folder removed by ``stop()``.  A folder you pass is kept.
    """

    name = "azurite"
    ACCOUNT_NAME = "devstoreaccount1"
    ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    def __init__(
        self,
        port: int | None = None,
        location: str | os.PathLike[str] | None = None,
        host: str = LOCALHOST,
        *,
        refusable: bool = False,
        startup_timeout: float = 60.0,
        log_path: str | os.PathLike[str] | None = None,
        version: str = AZURITE_VERSION,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(port, host, refusable, startup_timeout, log_path, die_with_parent)
        self.version = version
        self._location_arg = Path(location) if location else None
        self.location: Path | None = None
        self._exe: Path | None = None

    def start(self) -> AzuriteServer:
        super().start()
        return self

    def __enter__(self) -> AzuriteServer:
        return self.start()

    def _prepare(self) -> None:
        self._exe = ensure_azurite(self.version)
        assert self._tmp is not None
        self.location = self._location_arg or Path(self._tmp.name) / "data"
        self.location.mkdir(parents=True, exist_ok=True)

    def _command(self, port: int) -> list[str]:
        assert self._exe is not None and self.location is not None
        return [
            str(self._exe),
            "--blobHost", self.host,
            "--blobPort", str(port),
            "--location", str(self.location),
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ]  # fmt: skip

    def _probe_url(self, port: int) -> str:
        # any HTTP answer (an auth error here) means it is serving
        return f"http://{self.host}:{port}/{self.ACCOUNT_NAME}?comp=list"

    @property
    def blob_endpoint(self) -> str:
        if self.port is None or self._proc is None:
            raise ServerError("azurite is not started")
        return f"http://{self.host}:{self.port}/{self.ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={self.ACCOUNT_NAME};"
            f"AccountKey={self.ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for ``adlfs.AzureBlobFileSystem(**options)`` (abfs:// and az://).

        adlfs needs ``connection_string`` for a custom http endpoint
        (``account_name`` + ``account_key`` assumes https on Azure).
        """
        return {"connection_string": self.connection_string}

    def service_client(self) -> Any:
        """An ``azure.storage.blob.BlobServiceClient`` for this server."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str) -> str:
        """Create container ``name`` (3-63 lowercase letters, digits, '-'); returns it."""
        with self.service_client() as svc:
            svc.create_container(name)
        return name

    def reset(self) -> None:
        """Delete every container (and so every blob)."""
        with self.service_client() as svc:
            for c in svc.list_containers():
                svc.delete_container(c.name)


# --------------------------------------------------------------------------
# fake-gcs-server (Google Cloud Storage via gcsfs)
# --------------------------------------------------------------------------


def ensure_fake_gcs_server(version: str = FAKE_GCS_VERSION, timeout: float = 900.0) -> Path:
    """Build ``fake-gcs-server@version`` with ``go install`` into
    ``cache_dir()/fake-gcs-server-VERSION`` unless it is there already; return
    the path of the binary (~1.5-3 min the first time, on 2 cores).

    Safe against concurrent callers (a file lock) and interrupted builds (the
    binary goes to a scratch folder that is renamed into place when complete).
    """
    base = cache_dir()
    target = base / f"fake-gcs-server-{version}"
    exe = target / "fake-gcs-server"
    if exe.exists():
        return exe
    go = shutil.which("go")
    if go is None:
        raise ServerError("fake-gcs-server is built from Go sources: install Go (1.24 or newer) and put `go` on PATH")
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"fake-gcs-server-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():  # another process built it while we waited
            return exe
        scratch = Path(tempfile.mkdtemp(prefix=f".fake-gcs-server-{version}-", dir=base))
        try:
            # GOFLAGS from the caller's environment (-mod=vendor, say) must not reach a module install.
            env = {**os.environ, "GOBIN": str(scratch), "GOFLAGS": "-buildvcs=false"}
            proc = subprocess.run(
                [go, "install", f"{FAKE_GCS_MODULE}@v{version}"],
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if proc.returncode != 0:
                raise ServerError(
                    f"go install {FAKE_GCS_MODULE}@v{version} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
                )
            if not (scratch / "fake-gcs-server").exists():
                raise ServerError(f"go install {FAKE_GCS_MODULE}@v{version} left no fake-gcs-server in {scratch}")
            if target.exists():  # a broken earlier build
                shutil.rmtree(target)
            os.rename(scratch, target)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    return exe


class FakeGcsServer(_ChildServer):
    """``fake-gcs-server -backend memory -scheme http`` on 127.0.0.1: the GCS
    JSON API (simple and resumable uploads, ``ifGenerationMatch``), in memory.

    >>> os.environ.update(FakeGcsServer.ENVIRONMENT)  # before gcsfs is imported
    >>> with FakeGcsServer() as gcs:
    ...     gcs.create_bucket("lake")
    ...     fs = gcsfs.GCSFileSystem(**gcs.storage_options)

    The server names ``-external-url`` in the resumable-upload URLs it hands
    out, so with ``refusable=True`` that is the relay's public port: every
    request of an upload goes through the relay and an outage stops them all.
    """

    name = "fake-gcs"
    # gcsfs >= 2026.x checks each bucket's type over gRPC first unless told not to (see the module docstring).
    ENVIRONMENT = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def __init__(
        self,
        port: int | None = None,
        host: str = LOCALHOST,
        *,
        refusable: bool = False,
        startup_timeout: float = 30.0,
        log_path: str | os.PathLike[str] | None = None,
        version: str = FAKE_GCS_VERSION,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(port, host, refusable, startup_timeout, log_path, die_with_parent)
        self.version = version
        self._exe: Path | None = None

    def start(self) -> FakeGcsServer:
        super().start()
        return self

    def __enter__(self) -> FakeGcsServer:
        return self.start()

    def _prepare(self) -> None:
        self._exe = ensure_fake_gcs_server(self.version)

    def _command(self, port: int) -> list[str]:
        assert self._exe is not None
        public = self._public_port or port
        return [
            str(self._exe),
            "-backend", "memory",
            "-scheme", "http",
            "-host", self.host,
            "-port", str(port),
            "-external-url", f"http://{self.host}:{public}",
            "-public-host", f"{self.host}:{public}",
            "-log-level", "warn",
        ]  # fmt: skip

    def _probe_url(self, port: int) -> str:
        return f"http://{self.host}:{port}/storage/v1/b"

    @property
    def endpoint_url(self) -> str:
        if self.port is None or self._proc is None:
            raise ServerError("fake-gcs-server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for ``gcsfs.GCSFileSystem(**options)`` / fsspec ``storage_options``:
        no credentials (the fake checks none), this server as the endpoint."""
        return {"token": "anon", "endpoint_url": self.endpoint_url}

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (3-63 lowercase letters, digits, '-', '_', '.'); returns it."""
        status = _http("POST", f"{self.endpoint_url}/storage/v1/b", data=json.dumps({"name": name}).encode(),
                       headers={"Content-Type": "application/json"})
        if status != 200:
            raise ServerError(f"fake-gcs-server: creating bucket {name!r} answered HTTP {status}")
        return name


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run a local object-store test server until Ctrl-C.")
    sub = p.add_subparsers(dest="kind", required=True)
    s3 = sub.add_parser("s3", help="moto_server (S3 API)")
    s3.add_argument("--port", type=int, default=None, help="default: a free port")
    s3.add_argument("--host", default=LOCALHOST)
    az = sub.add_parser("azurite", help=f"azurite-blob {AZURITE_VERSION} (Azure Blob API)")
    az.add_argument("--port", type=int, default=None, help="default: a free port")
    az.add_argument("--dir", default=None, help="data folder (default: a temporary one, removed on exit)")
    az.add_argument("--host", default=LOCALHOST)
    gcs = sub.add_parser("gcs", help=f"fake-gcs-server {FAKE_GCS_VERSION} (GCS JSON API, in memory)")
    gcs.add_argument("--port", type=int, default=None, help="default: a free port")
    gcs.add_argument("--host", default=LOCALHOST)
    args = p.parse_args(argv)

    server: MotoS3Server | AzuriteServer | FakeGcsServer
    if args.kind == "s3":
        server = MotoS3Server(args.port, args.host)
    elif args.kind == "gcs":
        server = FakeGcsServer(args.port, args.host)
    else:
        server = AzuriteServer(args.port, args.dir, args.host)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # even if started with SIGINT ignored
    try:
        server.start()
        if isinstance(server, MotoS3Server):
            print(f"moto S3 listening at {server.endpoint_url}")
            print(
                f"  AWS_ACCESS_KEY_ID={server.ACCESS_KEY} AWS_SECRET_ACCESS_KEY={server.SECRET_KEY} "
                f"AWS_DEFAULT_REGION={server.REGION} AWS_ENDPOINT_URL={server.endpoint_url}"
            )
        elif isinstance(server, FakeGcsServer):
            print(f"fake-gcs-server listening at {server.endpoint_url} (create buckets: POST /storage/v1/b)")
            print("  " + " ".join(f"{k}={v}" for k, v in server.ENVIRONMENT.items()) + "  (for gcsfs)")
        else:
            print(f"Azurite blob listening at {server.blob_endpoint} (data in {server.location})")
            print(f"  AZURE_STORAGE_CONNECTION_STRING='{server.connection_string}'")
        print(f"  storage_options: {json.dumps(server.storage_options)}")
        print(f"  log: {server.log_path}")
        print("Ctrl-C to stop.", flush=True)
        assert server._proc is not None
        code = server._proc.wait()
        print(f"{server.name} exited with code {code}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except ServerError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(_main())
