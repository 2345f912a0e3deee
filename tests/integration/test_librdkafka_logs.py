"""One log stream: a real `ingest run` against an unreachable broker (a closed port) writes
only JSON lines, librdkafka's own included, and those are rate-limited with a repeat count."""
from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest

from integration.lake import ingest

pytestmark = pytest.mark.slow

RUN_SECONDS = 15
REPEAT_SECONDS = 4


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_broker_logs_only_json_with_librdkafka_rate_limited(tmp_path):
    config = tmp_path / "unreachable.yaml"
    # A short reconnect backoff makes librdkafka retry (and log) about 20 times a second,
    # as it did for the 776 lines in 40 s, so the rate limit has something to do. It
    # logs each retry with its sparse connections (librdkafka's default, which the issue's
    # consumer had); with every broker connected at start (lake-ingest's default) it logs a
    # repeated failure once.
    config.write_text(
        "topic: unreachable\n"
        f"kafka: {{bootstrap.servers: '127.0.0.1:{closed_port()}', reconnect.backoff.ms: 20, "
        "reconnect.backoff.max.ms: 50, enable.sparse.connections: true}\n"
        f"output: {{url: 'file://{tmp_path / 'lake'}'}}\n"
        "dead_letter: {topic: unreachable.dlq}\n"  # the dead-letter producer is made at start too
        "http: {port: 0}\n")
    process = ingest("run", str(config), "--log-format", "json", env={"INGEST_LOG_REPEAT_SECONDS": str(REPEAT_SECONDS)})
    try:
        out, err = process.communicate(timeout=RUN_SECONDS)
    except subprocess.TimeoutExpired:  # still retrying, as it should: stop it as Kubernetes would
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    not_json = []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            not_json.append(line)
    librdkafka = [r for r in records if r["logger"] == "librdkafka"]
    held_back = sum(r.get("repeated", 0) for r in librdkafka)
    print(f"\n{len(lines)} lines, {len(librdkafka)} from librdkafka standing for {len(librdkafka) + held_back} "
          f"of its lines; not JSON: {len(not_json)}")

    assert not_json == [], f"lines that are not JSON: {not_json[:5]}"
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("kafka.bootstrap.servers" in r["message"] and r.get("event") == "broker_unreachable" for r in records)
    assert librdkafka, "librdkafka's own lines are missing"
    assert all(r["event"] == "librdkafka" and r["facility"] and r["client"].startswith("rdkafka#") for r in librdkafka)
    assert {r["level"] for r in librdkafka} <= {"error", "warning", "info", "critical", "debug"}
    # Rate-limited: one line per kind at first, then one every REPEAT_SECONDS carrying the count.
    assert len(librdkafka) <= 3 * (RUN_SECONDS // REPEAT_SECONDS + 1)
    assert held_back >= 50, "librdkafka's repeats were not counted"
    assert any(r.get("repeated") for r in librdkafka)
