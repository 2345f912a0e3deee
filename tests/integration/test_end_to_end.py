"""One topic from a real Apache Kafka broker to a local lake, through the real `ingest` CLI."""
from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from ingest_core.sink.storage import LakeStore

from .group_view import GroupView
from .lake import (
    committed_offsets,
    create_topic,
    data_files,
    expected_rows,
    ingest,
    landed_rows,
    produce_events,
    run_until_idle,
    write_config,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_10k_messages_land_exactly_once_and_a_second_run_adds_nothing(kafka, topic_name, tmp_path, fmt, lake):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 10_000)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, fmt=fmt, batch={"max_records": 1500},
                          storage_options=lake.storage_options)

    first = run_until_idle(config)
    assert first.returncode == 0, first.stderr[-3000:]
    assert landed_rows(lake.store, fmt) == expected_rows(10_000)
    files = data_files(lake.store)
    assert committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name) == {0: 3334, 1: 3333, 2: 3333}

    second = run_until_idle(config)
    assert second.returncode == 0, second.stderr[-3000:]
    assert data_files(lake.store) == files
    assert landed_rows(lake.store, fmt) == expected_rows(10_000)


def test_an_idle_exit_waits_for_a_slow_first_fetch_and_an_empty_partition_does_not_hold_it(
        kafka, topic_name, tmp_path):
    """`--exit-when-idle 1s` while the broker answers each fetch only after 3 s (it waits for
    a fetch.min.bytes it never gets): the run still lands everything, because it stops only
    once librdkafka has reported every partition's end; partition 2, never written, has an
    end too."""
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 300, partitions=2)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url,
                          kafka={"fetch.min.bytes": 10_000_000, "fetch.wait.max.ms": 3000})
    began = time.monotonic()
    result = run_until_idle(config, idle="1s")
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - began >= 3  # it did wait for the fetch
    assert landed_rows(lake, "parquet") == expected_rows(300, partitions=2)
    assert committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name) == {0: 150, 1: 150, 2: -1001}


def test_sigterm_mid_run_commits_what_landed_and_restart_completes(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, batch={"max_records": 300})
    producer = threading.Thread(target=produce_events, args=(kafka.bootstrap, topic_name, 10_000), kwargs={"rate": 2500})
    producer.start()
    process = ingest("run", str(config), "--log-format", "json")
    deadline = time.monotonic() + 60
    while len(data_files(lake)) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    producer.join()
    assert process.returncode == 0, err[-3000:]
    assert "SIGTERM" in err

    landed = landed_rows(lake, "parquet")
    committed = committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name)
    for partition in range(3):
        offsets = [o for p, o in landed if p == partition]
        # Committed equals landed: every offset below the commit is in the lake, nothing above it.
        assert offsets == list(range(committed[partition])), partition
    assert 0 < len(landed) < 10_000, "the SIGTERM should have come mid-run"

    rest = run_until_idle(config)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert landed_rows(lake, "parquet") == expected_rows(10_000)


def test_idle_partition_partial_batch_lands_after_max_age(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url,
                          batch={"max_records": 100_000, "max_age": "3s"})
    process = ingest("run", str(config), "--log-format", "json")
    try:
        group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 3)
        deadline = time.monotonic() + 60
        while [parts for _, parts in group.members()] != [(0, 1, 2)]:  # joined, owning every partition
            assert time.monotonic() < deadline, "the consumer did not join its group"
            time.sleep(0.2)
        produce_events(kafka.bootstrap, topic_name, 7, partitions=1)
        produced_at = time.monotonic()
        while not data_files(lake) and time.monotonic() - produced_at < 30:
            time.sleep(0.1)
        waited = time.monotonic() - produced_at
        assert landed_rows(lake, "parquet") == [(0, i) for i in range(7)]
        assert 2.5 <= waited < 15, waited
        deadline = time.monotonic() + 10
        while committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name).get(0) != 7:
            assert time.monotonic() < deadline, "the age-triggered batch was not committed"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


def test_unreachable_broker_is_reported_and_retried_not_a_crash(tmp_path, topic_name):
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, topic_name, f"127.0.0.1:{port}", f"file://{tmp_path / 'lake'}")
    process = ingest("run", str(config), "--log-format", "json")
    time.sleep(6)
    assert process.poll() is None, "the consumer must keep retrying, not exit"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in err
    messages = [json.loads(line)["message"] for line in err.splitlines() if line.startswith("{")]
    reported = [m for m in messages if f"cannot reach Kafka at 127.0.0.1:{port}" in m]
    assert reported and "kafka.bootstrap.servers" in reported[0] and str(config) in reported[0]
