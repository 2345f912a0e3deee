"""A librdkafka error that is fatal (the client is unusable: fenced by another member with our
group.instance.id, say) stops the pipeline with FatalError, so `ingest run` exits 2 and is
restarted, instead of retrying a dead client's commits forever."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from fakes import FakeConsumer, json_messages
from test_pipeline import TOPIC, make, spin

from ingest_core.retry import FatalError

FENCED = KafkaError(KafkaError.FENCED_INSTANCE_ID, "Static consumer fenced by other consumer", fatal=True)


class FatalMessage:
    def error(self):
        return KafkaError(KafkaError._FATAL, f"Fatal error: {FENCED.str()}", fatal=True)

    def partition(self):
        return -1


class FencedCommits(FakeConsumer):
    def commit(self, offsets, asynchronous=True):
        raise KafkaException(FENCED)


def test_a_fatal_consume_error_stops_the_pipeline(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 5)})
    pipeline, _ = make(tmp_path, consumer)
    with pytest.raises(FatalError, match="fenced"):
        pipeline.accept([FatalMessage()], pipeline.clock())


def test_a_fatal_commit_error_stops_the_pipeline_but_a_retriable_one_does_not(tmp_path):
    pipeline, _ = make(tmp_path, FencedCommits(TOPIC, {0: json_messages(TOPIC, 0, 25)}), max_records=10)
    with pytest.raises(FatalError, match="fenced"):
        spin(pipeline)
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 25)}, fail_commits=True)
    pipeline, _ = make(tmp_path / "second", consumer, max_records=10)
    spin(pipeline)  # a commit refused by a rebalance is retried while we own the partition
