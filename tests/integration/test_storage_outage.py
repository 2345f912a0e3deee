"""A 30 s storage outage mid-ingest: the member stays in its group and the group's committed
offsets do not move (both read from the broker, not from our log), ingestion resumes by itself,
and every record lands exactly once."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest
from confluent_kafka import Consumer
from object_stores import AzuriteServer, FakeGcsServer, MotoS3Server

from .conftest import Lake
from .group_view import GroupView
from .lake import (
    REPO,
    create_topic,
    data_files,
    expected_rows,
    ingest,
    landed_rows,
    produce_events,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

MESSAGES = 6000


@pytest.mark.parametrize("kind,mode", [("s3", "hang"), ("azure", "refuse"), ("gcs", "refuse"), ("gcs", "hang")])
def test_30s_outage_keeps_the_member_and_lands_everything_once(kafka, topic_name, tmp_path, kind, mode):
    server = {"s3": MotoS3Server, "azure": AzuriteServer, "gcs": FakeGcsServer}[kind](refusable=True).start()
    process = None
    try:
        if kind == "s3":
            server.create_bucket("outage")
            lake = Lake(kind, "s3://outage/lake", server.storage_options, server)
        elif kind == "gcs":
            server.create_bucket("outage")
            lake = Lake(kind, "gs://outage/lake", server.storage_options, server)
        else:
            server.create_container("outage")
            lake = Lake(kind, "abfs://outage/lake", server.storage_options, server)
        create_topic(kafka.bootstrap, topic_name, partitions=3)
        config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, storage_options=lake.storage_options,
                              batch={"max_records": 400, "max_age": "1s"},
                              kafka={"max.poll.interval.ms": 10000, "session.timeout.ms": 6000})
        producer = threading.Thread(target=produce_events, args=(kafka.bootstrap, topic_name, MESSAGES),
                                    kwargs={"rate": 120})  # ~50 s of steady traffic
        producer.start()
        process = ingest("run", str(config), "--log-format", "json")
        deadline = time.monotonic() + 60
        while len(data_files(lake.store)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = len(landed_rows(lake.store, "parquet"))
        assert before > 0, "nothing landed before the outage"

        group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 3)
        members_before = group.members()
        assert len(members_before) == 1 and members_before[0][1] == (0, 1, 2), members_before
        outage_began = time.time()
        with server.outage(mode):
            time.sleep(3)  # a batch already past its publish when the outage began may still commit
            held = group.committed()
            samples = []
            while time.time() < outage_began + 30:
                time.sleep(2)
                samples.append((group.committed(), group.members()))
        outage_over, outage_ended = time.monotonic(), time.time()
        # The broker's view: during the outage no offset moved, and the one member kept its partitions.
        assert all(committed == held for committed, _ in samples), (held, samples)
        assert all(members == members_before for _, members in samples), (members_before, samples)

        producer.join()
        while len(landed_rows(lake.store, "parquet")) < MESSAGES and time.monotonic() - outage_over < 90:
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=90)
        (tmp_path / "ingest.log").write_text(err)
        assert process.returncode == 0, err[-3000:]

        empty = [p for p in lake.store.list_files() if not lake.store.read(p)]
        assert not empty, f"empty objects: {empty[:5]}"
        assert landed_rows(lake.store, "parquet") == expected_rows(MESSAGES)
        assert group.committed() == {p: MESSAGES // 3 for p in range(3)}  # and after it, everything is committed
        events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        names = [e.get("event") for e in events]
        stop_at = names.index("stopping")
        # One assignment, never revoked or lost before we asked it to stop: the member stayed in the group.
        assert names.count("assigned") == 1, names
        assert "lost" not in names and "revoked" not in names[:stop_at]
        # The store really was down: no batch completed inside the outage (allowing 2 s for one in
        # flight), and batches completed again after it, by themselves.
        flushed_at = [datetime.fromisoformat(e["time"]).timestamp() for e in events if e.get("event") == "flush"]
        assert not [t for t in flushed_at if outage_began + 2 < t < outage_ended - 0.5]
        assert [t for t in flushed_at if t > outage_ended]
        print(f"\n{kind}/{mode}: {before} rows before the outage, {MESSAGES} after; "
              f"storage retries logged: {names.count('storage_retry')}")
    finally:
        if process is not None and process.poll() is None:  # a failed assertion must not leave it running
            process.kill()
            process.wait()
        server.stop()


def failed_partitions(log_path) -> set[int]:
    """Partitions whose storage failed at least once, from the member's JSON log."""
    events = (json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{"))
    return {e["partition"] for e in events if e.get("event") == "storage_retry"}


def test_partitions_paused_in_an_outage_come_back_fetching_after_a_rebalance(kafka, topic_name, tmp_path):
    """librdkafka keeps a partition's pause across a revoke and a later assign. `ingest run` pauses
    its partitions while the store is down; another member joins (it gives up one of them,
    paused) and leaves once the store is back (it gets it back). Every partition must be fetched
    again and committed to its end: none may come back paused and stall while the member
    looks healthy. (The other member is a bare consumer that commits nothing: an `ingest run`
    would not join before it could write the lake.)"""
    server = MotoS3Server(refusable=True).start()
    server.create_bucket("rebalance")
    lake = Lake("s3", "s3://rebalance/lake", server.storage_options, server)
    partitions, messages = 2, 4000  # two: both get a publish slot, so both fail and are paused
    create_topic(kafka.bootstrap, topic_name, partitions=partitions)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, storage_options=lake.storage_options,
                          batch={"max_records": 400, "max_age": "1s"}, kafka={"session.timeout.ms": 6000})
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, partitions)
    producer = threading.Thread(target=produce_events, args=(kafka.bootstrap, topic_name, messages),
                                kwargs={"partitions": partitions, "rate": 150})  # ~27 s of steady traffic
    log_path = tmp_path / "ingest.log"
    process = None

    try:
        producer.start()
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, "-m", "ingest_core", "run", str(config), "--log-format", "json"],
                                       cwd=REPO, stdout=log, stderr=log)
        wait_for("the first files", lambda: len(data_files(lake.store)) >= partitions)
        with server.outage("refuse"):
            # Every partition's next batch fails: from then on the member keeps them all paused.
            wait_for("every partition to fail once", lambda: failed_partitions(log_path) == set(range(partitions)))
            time.sleep(1)
            other = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": f"ingest-{topic_name}",
                              "partition.assignment.strategy": "cooperative-sticky", "enable.auto.commit": False,
                              "session.timeout.ms": 6000})
            other.subscribe([topic_name])
            wait_for("the other member to take partitions", lambda: other.consume(10, 0.2) is not None and other.assignment())
        # The store is back before the partitions are: nothing fails that would pause and resume them again.
        other.close()
        wait_for("ingest run to own every partition again",
                 lambda: [m[1] for m in group.members()] == [tuple(range(partitions))])
        producer.join()
        ends = {p: messages // partitions for p in range(partitions)}
        wait_for("the group to commit every partition to its end", lambda: group.committed() == ends, timeout=120)
        assert "revoked" in log_path.read_text()  # the rebalance did take partitions away
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0, log_path.read_text()[-3000:]
        assert landed_rows(lake.store, "parquet") == expected_rows(messages, partitions)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        server.stop()
