"""The last step of the flow: commit `end + 1` of a published batch to the consumer group."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition


def commit_offset(consumer: Any, topic: str, partition: int, offset: int) -> KafkaException | None:
    """Commit `offset` (the next one to read) synchronously: the batch before it is in the lake.
    Returns Kafka's refusal, or None once committed.

    Synchronous and on the loop's thread on purpose: a commit must not outlive our ownership
    of the partition. One answered late, after a rebalance moved the partition, is accepted by
    the broker under the new generation and moves the offset under the next owner, whose
    fetch started from the old one: its batches then start before their marker's base (a
    bounded wait on a separate thread did exactly that in the chaos test)."""
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    except KafkaException as error:
        return error
    return None


def fatal(error: KafkaException) -> KafkaError | None:
    """The client's error when it is unusable for good (fenced by another member with our
    group.instance.id, say): retrying would spin forever."""
    code = error.args[0] if error.args else None
    return code if isinstance(code, KafkaError) and code.fatal() else None
