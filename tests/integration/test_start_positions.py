"""Where newly assigned partitions start (source/assign.py), on a real Apache Kafka broker: a new
group at auto.offset.reset's position, a group with commits at its commits, with either rebalance
protocol."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from ingest_core.sink.storage import LakeStore
from ingest_core.source.assign import StartPositions

from .lake import (
    committed_offsets,
    create_topic,
    data_files,
    expected_rows,
    landed_rows,
    produce_events,
    run_to_completion,
    write_config,
)

pytestmark = pytest.mark.slow


def first_offsets(bootstrap: str, topic: str, group: str, settings: dict, partitions: int, then=None) -> dict[int, int]:
    """The offset of the first message each partition hands over, read through StartPositions."""
    config = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, **settings}
    consumer = Consumer(config)
    assigned: list[int] = []
    start = StartPositions.from_config(config, then=lambda c, parts: assigned.extend(p.partition for p in parts))
    consumer.subscribe([topic], on_assign=start)
    first: dict[int, int] = {}
    deadline = time.monotonic() + 30
    try:
        while len(first) < partitions and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    first.setdefault(message.partition(), message.offset())
            if then is not None and sorted(assigned) == list(range(partitions)):
                then()
                then = None
    finally:
        consumer.close()
    assert sorted(assigned) == list(range(partitions))
    return first


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_a_new_group_starts_at_the_beginning_with_earliest(kafka, topic_name, strategy):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 300, partitions=3)
    settings = {"auto.offset.reset": "earliest", "partition.assignment.strategy": strategy}
    assert first_offsets(kafka.bootstrap, topic_name, f"g-{uuid.uuid4().hex}", settings, 3) == {0: 0, 1: 0, 2: 0}


def test_a_new_group_starts_at_the_end_with_latest(kafka, topic_name):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 300, partitions=3)
    settings = {"auto.offset.reset": "latest", "partition.assignment.strategy": "cooperative-sticky"}
    # What was produced before the assignment is skipped; what comes after it is read.
    first = first_offsets(kafka.bootstrap, topic_name, f"g-{uuid.uuid4().hex}", settings, 3,
                          then=lambda: (time.sleep(1), produce_events(kafka.bootstrap, topic_name, 30, partitions=3)))
    assert first == {0: 100, 1: 100, 2: 100}


def test_partitions_with_commits_start_there_the_others_at_the_reset_position(kafka, topic_name):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 300, partitions=3)
    group = f"g-{uuid.uuid4().hex}"
    committer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic_name, 0, 40), TopicPartition(topic_name, 2, 99)], asynchronous=False)
    committer.close()
    settings = {"auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky"}
    assert first_offsets(kafka.bootstrap, topic_name, group, settings, 3) == {0: 40, 1: 0, 2: 99}


def test_ingest_run_of_a_new_group_lands_the_backlog_with_earliest_and_nothing_with_latest(kafka, topic_name, tmp_path):
    """The CLI end to end: with `auto.offset.reset: latest` a new group starts at each partition's end, so
    `--exit-at-end` lands nothing and commits nothing; with `earliest` (the default) it lands everything."""
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 600, partitions=3)
    latest = LakeStore.open(f"file://{tmp_path / 'latest'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, latest.url, group=f"latest-{topic_name}",
                          kafka={"auto.offset.reset": "latest"})
    run = run_to_completion(config, "--exit-at-end")
    assert run.returncode == 0, run.stderr[-3000:]
    assert data_files(latest) == []
    assert set(committed_offsets(kafka.bootstrap, f"latest-{topic_name}", topic_name).values()) == {-1001}

    earliest = LakeStore.open(f"file://{tmp_path / 'earliest'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, earliest.url, group=f"earliest-{topic_name}")
    run = run_to_completion(config, "--exit-at-end")
    assert run.returncode == 0, run.stderr[-3000:]
    assert landed_rows(earliest, "parquet") == expected_rows(600, partitions=3)
    assert committed_offsets(kafka.bootstrap, f"earliest-{topic_name}", topic_name) == {0: 200, 1: 200, 2: 200}
