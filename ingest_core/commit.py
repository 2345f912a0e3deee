"""The last step of the flow: commit `end + 1` of a published batch to the consumer group."""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

# How long the loop waits for Kafka to answer a commit before it counts the commit as refused.
COMMIT_WAIT = 5.0


def commit_offset(
    consumer: Any, topic: str, partition: int, offset: int, wait: float = COMMIT_WAIT
) -> KafkaException | None:
    """Commit `offset` (the next one to read) synchronously: the batch before it is in the lake.
    Returns Kafka's refusal, or None once committed.

    librdkafka's synchronous commit waits for its answer without a limit, and a commit made
    while a rebalance is under way can wait for that rebalance, which needs the loop to call
    consume() again: the member then stops for good while it still owns its partitions (seen
    in the chaos test, and confluent-kafka-python#1801). So the call runs on a thread of its
    own, and after `wait` seconds without an answer it counts as refused: the caller retries
    it while it owns the partition, and the call ends by itself once the rebalance is served.
    (A late answer is harmless: a commit never skips a batch, and an older offset committed
    last only makes the next owner replay batches exactly, from their markers.)"""
    outcome: list[KafkaException | None] = []

    def call() -> None:
        try:
            consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
            outcome.append(None)
        except KafkaException as error:
            outcome.append(error)

    thread = threading.Thread(target=call, name=f"commit-{partition}", daemon=True)
    thread.start()
    thread.join(wait)
    if not outcome:
        return KafkaException(KafkaError(KafkaError._TIMED_OUT, f"commit not answered within {wait:g} s"))
    return outcome[0]


def fatal(error: KafkaException) -> KafkaError | None:
    """The client's error when it is unusable for good (fenced by another member with our
    group.instance.id, say): retrying would spin forever."""
    code = error.args[0] if error.args else None
    return code if isinstance(code, KafkaError) and code.fatal() else None
