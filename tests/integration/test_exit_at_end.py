"""`ingest run --exit-at-end` on a real Apache Kafka broker: land what the topic holds, then stop."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from ingest_core.sink.storage import LakeStore

from .lake import (
    committed_offsets,
    create_topic,
    data_files,
    expected_rows,
    ingest,
    landed_rows,
    log_events,
    produce_events,
    run_to_completion,
    write_config,
)

pytestmark = pytest.mark.slow


def test_exit_at_end_lands_the_topic_once_without_waiting_for_max_age_and_stops(kafka, topic_name, tmp_path):
    """6 partitions, one never written; max_age 10 minutes. The run cuts each partition when it
    is read to its end (flush reason "end": one file per partition), commits, and exits 0 long
    before max_age. A second run finds every partition at its end and adds nothing."""
    create_topic(kafka.bootstrap, topic_name, partitions=6)
    produce_events(kafka.bootstrap, topic_name, 5_000, partitions=5)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url,
                          batch={"max_records": 100_000, "max_age": "10m"})
    began = time.monotonic()
    first = run_to_completion(config, "--exit-at-end")
    took = time.monotonic() - began
    assert first.returncode == 0, first.stderr[-3000:]
    assert took < 60, f"took {took:.0f} s"
    assert landed_rows(lake, "parquet") == expected_rows(5_000, partitions=5)
    committed = committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name, partitions=6)
    assert committed == {0: 1000, 1: 1000, 2: 1000, 3: 1000, 4: 1000, 5: -1001}
    logged = log_events(first.stderr)
    flushes = [e for e in logged if e.get("event") == "flush"]
    assert Counter(e["reason"] for e in flushes) == Counter({"end": 5}), flushes
    assert any(e.get("event") == "end_exit" for e in logged)
    files = data_files(lake)
    assert len(files) == 5, files

    second = run_to_completion(config, "--exit-at-end")
    assert second.returncode == 0, second.stderr[-3000:]
    assert data_files(lake) == files
    assert landed_rows(lake, "parquet") == expected_rows(5_000, partitions=5)


def test_two_replicas_with_exit_at_end_both_stop_and_land_every_record_once(kafka, topic_name, tmp_path):
    """Two members of one group, 8 partitions: whichever stops first hands its partitions to
    the other, which reads them to their (committed) end and stops too; every record is in
    the lake once and every offset committed."""
    create_topic(kafka.bootstrap, topic_name, partitions=8)
    produce_events(kafka.bootstrap, topic_name, 16_000, partitions=8)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url,
                          batch={"max_records": 700, "max_age": "10m"})
    members = [ingest("run", str(config), "--exit-at-end", "--log-format", "json") for _ in range(2)]
    results = [m.communicate(timeout=180) for m in members]
    for member, (_, err) in zip(members, results, strict=True):
        assert member.returncode == 0, err[-3000:]
    assert landed_rows(lake, "parquet") == expected_rows(16_000, partitions=8)
    committed = committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name, partitions=8)
    assert committed == {p: 2000 for p in range(8)}
