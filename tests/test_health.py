"""/healthz, /readyz and /metrics over real HTTP, fed by a real pipeline where it matters."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from fakes import FakeConsumer, json_messages
from test_pipeline import TOPIC, Clock, make, spin

from ingest_core.ops.health import HealthObserver, HealthServer, HealthState, serve
from ingest_core.ops.metrics import Instruments, PrometheusObserver


def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def running():
    servers = []

    def start(state: HealthState, metrics: PrometheusObserver | None = None) -> HealthServer:
        metrics = metrics or PrometheusObserver(TOPIC)
        server = HealthServer(state, metrics.registry, port=0, host="127.0.0.1").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_healthz_fails_only_when_the_loop_stops_turning(running):
    clock = Clock()
    state = HealthState(stale_after=30, clock=clock)
    server = running(state)
    assert get(server, "/healthz")[:1] == (200,)
    clock.now += 29
    assert get(server, "/healthz")[0] == 200
    clock.now += 2
    status, _, body = get(server, "/healthz")
    assert status == 503 and "has not turned for 31 s" in body
    state.loop_turned()
    assert get(server, "/healthz")[0] == 200


def test_readyz_needs_assigned_partitions_and_says_why_not(running):
    state = HealthState()
    server = running(state)
    status, content_type, body = get(server, "/readyz")
    assert status == 503 and content_type.startswith("text/plain") and "no partitions assigned" in body
    state.set_assigned(3)
    assert get(server, "/readyz")[:3:2] == (200, "ready: 3 partition(s) assigned\n")
    state.set_paused(2)
    status, _, body = get(server, "/readyz")
    assert status == 503 and "2 partition(s) paused by a storage outage" in body
    state.set_paused(0)
    assert get(server, "/readyz")[0] == 200


def test_metrics_endpoint_serves_the_registry_in_prometheus_format(running):
    metrics = PrometheusObserver(TOPIC)
    metrics.consumed(7, 700)
    server = running(HealthState(), metrics)
    status, content_type, body = get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=")
    assert f'ingest_consumed_messages_total{{topic="{TOPIC}"}} 7.0' in body
    assert get(server, "/nope")[0] == 404


def test_port_zero_in_settings_means_no_server():
    assert serve(0, HealthState(), PrometheusObserver(TOPIC).registry) is None


def test_readyz_is_false_during_a_storage_outage_and_true_after(tmp_path, running):
    """The runner's wiring (Instruments: metrics + health behind one observer, on_turn once per
    loop turn) against a store that fails, then recovers."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10), 1: json_messages(TOPIC, 1, 10)})
    pipeline, store = make(tmp_path, consumer, max_records=10)
    state, metrics = HealthState(), PrometheusObserver(TOPIC)
    instruments = Instruments(metrics, state, running(state, metrics), None)
    pipeline.observer = instruments.observer
    pipeline.observer.assignment(sorted(pipeline.states))
    server = instruments.server

    def turn():
        spin(pipeline, turns=1)
        instruments.on_turn(pipeline)

    store.broken = True
    turn()
    status, _, body = get(server, "/readyz")
    assert status == 503 and "storage is failing" in body and "2 partition(s) paused" in body
    assert get(server, "/healthz")[0] == 200, "an outage must not get the pod restarted"
    assert 'ingest_storage_retries_total{topic="orders"} 2.0' in get(server, "/metrics")[2]

    store.broken = False
    pipeline.clock.now += 10  # past the backoff
    turn()
    assert get(server, "/readyz")[:3:2] == (200, "ready: 2 partition(s) assigned\n")
    assert consumer.committed_offsets == {0: 10, 1: 10}


def test_storage_ok_again_when_the_last_paused_partition_resumes_without_a_flush():
    # A failed marker read pauses a partition; its successful retry resumes it with no flush.
    state = HealthState()
    state.set_assigned(1)
    HealthObserver(state).storage_retry(0, 1)
    state.set_paused(1)
    assert not state.ready()[0]
    state.set_paused(0)
    assert state.ready()[0]
