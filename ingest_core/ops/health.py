"""The consumer's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.

`HealthState` is what the runner knows about the consumer, written on the main thread
and read by the HTTP thread (each field is one value swapped under a lock, so a probe
never sees a half update). `HealthObserver` keeps it current from the pipeline's hooks;
the runner adds `loop_turned()` and `set_paused(n)` once per loop turn.

- `/healthz` 200 while the loop turned within `stale_after` seconds. A stuck loop (a
  deadlock, a call that never returns) gets the container restarted; a broker or store
  outage does not, since the loop keeps turning through both.
- `/readyz` 200 when partitions are assigned, storage answered, and no partition is
  paused by a storage outage. Not-ready is for people and rollouts (no traffic is routed
  to a consumer): a rollout waits until the new pod really ingests.
- `/metrics` the Prometheus text format of the registry given.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ingest_core.ops.observer import PipelineObserver

DEFAULT_STALE_AFTER = 60.0  # a revoke can hold the loop for revoke_timeout (10 s) per callback


class HealthState:
    """Liveness and readiness facts of one consumer. Thread-safe."""

    def __init__(self, stale_after: float = DEFAULT_STALE_AFTER, clock: Callable[[], float] = time.monotonic):
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._last_turn = clock()  # starting counts as a turn: the probe's initial delay covers start-up
        self._assigned = 0
        self._storage_ok = True
        self._paused = 0

    def loop_turned(self) -> None:
        with self._lock:
            self._last_turn = self.clock()

    def set_assigned(self, partitions: int) -> None:
        with self._lock:
            self._assigned = partitions

    def set_storage_ok(self, ok: bool) -> None:
        with self._lock:
            self._storage_ok = ok

    def set_paused(self, partitions: int) -> None:
        """Partitions held back by a storage outage: their last storage call failed and is
        being retried (`PartitionState.attempts > 0`; a partition paused only because its
        buffer is full does not count). Attempts go back to 0 only when a storage call
        succeeds, so none left after some were means storage answers again."""
        with self._lock:
            if partitions == 0 and self._paused > 0:
                self._storage_ok = True
            self._paused = partitions

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            idle = self.clock() - self._last_turn
        if idle > self.stale_after:
            return False, f"the consumer loop has not turned for {idle:.0f} s (limit {self.stale_after:.0f} s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            assigned, storage_ok, paused = self._assigned, self._storage_ok, self._paused
        reasons = []
        if assigned == 0:
            reasons.append(
                "no partitions assigned (joining the group, broker unreachable, or more members than partitions)"
            )
        if not storage_ok:
            reasons.append("storage is failing; retrying")
        if paused:
            reasons.append(f"{paused} partition(s) paused by a storage outage")
        if reasons:
            return False, "not ready: " + "; ".join(reasons)
        return True, f"ready: {assigned} partition(s) assigned"


class HealthObserver(PipelineObserver):
    """Keeps a HealthState current from the pipeline's hooks."""

    def __init__(self, state: HealthState):
        self.state = state

    def assignment(self, partitions: list[int]) -> None:
        self.state.set_assigned(len(partitions))

    def storage_retry(self, partition: int, attempt: int) -> None:
        self.state.set_storage_ok(False)

    def flushed(
        self, partition: int, rows: int, nbytes: int, files: int, dead_letters: int, widened: int, seconds: float
    ) -> None:
        self.state.set_storage_ok(True)


class HealthServer:
    """Serves the three endpoints on `host:port` (port 0: any free port, for tests).

    Why a thread: the pipeline's main thread blocks in `consume()` and in rebalance
    callbacks, and a probe must be answered while it does (that is what it checks). The
    thread is a daemon so a consumer that is exiting never waits for an idle HTTP
    connection; it only reads HealthState and the registry, never pipeline state."""

    def __init__(self, state: HealthState, registry: CollectorRegistry, port: int, host: str = "0.0.0.0"):
        self.state = state
        self.registry = registry
        handler = type("Handler", (_Handler,), {"server_state": state, "registry": registry})
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(port: int, state: HealthState, registry: CollectorRegistry) -> HealthServer | None:
    """Start the endpoints on `port` (`http.port`), or return None when it is 0 (off)."""
    if port == 0:
        return None
    return HealthServer(state, registry, port).start()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: HealthState
    registry: CollectorRegistry

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, text = self.server_state.alive() if path == "/healthz" else self.server_state.ready()
            self._reply(200 if ok else 503, (text + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # probes arrive every few seconds; a log line each would drown the flush lines
