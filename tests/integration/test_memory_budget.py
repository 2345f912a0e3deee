"""The byte budget against a real broker: with storage slower than Kafka, the messages held
stay at the memory budget (here max_bytes x partitions, plus at most one consume() batch)
instead of growing to (partitions + publish slots) x max_bytes, and everything still lands
once and is committed.

In-process (the real confluent-kafka consumer and the real pipeline, a local lake whose
publish is slowed down), so the test can read what the pipeline holds after every turn."""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer

from ingest_core.batching.buffer import FlushPolicy
from ingest_core.flow import Pipeline
from ingest_core.settings import Settings
from ingest_core.sink.deadletter import DeadLetterFiles
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.ledger import Ledger
from ingest_core.sink.storage import LakeStore
from ingest_core.source.kafka import consumer_config

from .lake import committed_offsets, create_topic, expected_rows, landed_rows, produce_events

pytestmark = pytest.mark.slow

MAX_BYTES = 64 * 1024
CONSUME_BATCH = 100


class SlowStore(LakeStore):
    """Publishes like the local store, 0.2 s per file: storage is the bottleneck."""

    def publish(self, relative, data):
        time.sleep(0.2)
        return super().publish(relative, data)


def test_with_slow_storage_the_messages_held_stay_at_the_byte_budget(kafka, topic_name, tmp_path, caplog):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 6_000)  # ≈ 0.8 MB: about 4 budgets' worth
    settings = Settings.model_validate({
        "topic": topic_name, "group_id": f"ingest-{topic_name}",
        "kafka": {"bootstrap.servers": kafka.bootstrap, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        "output": {"url": f"file://{tmp_path}/lake"},
        "batch": {"max_records": 100_000, "max_bytes": MAX_BYTES, "max_age": "60s"},
    })
    store = SlowStore.open(settings.output.url)
    store.__class__ = SlowStore
    consumer = Consumer(consumer_config(settings))
    pipeline = Pipeline(settings.topic, consumer, BatchEncoder(settings), store, Ledger(store),
                        DeadLetterFiles(LakeStore.open(f"file://{tmp_path}/lake/_dlq")),
                        FlushPolicy.from_settings(settings.batch), consume_batch=CONSUME_BATCH, poll_timeout=0.1,
                        memory_budget=MAX_BYTES * 3)
    consumer.subscribe([settings.topic], on_assign=pipeline.on_assign, on_revoke=pipeline.on_revoke,
                       on_lost=pipeline.on_lost)
    held, waited = [], []

    def should_stop() -> bool:  # once per turn: what the pipeline holds after accepting and cutting
        held.append(pipeline.held_bytes())
        waited.append(pipeline.waiting_for_memory)
        return False

    with caplog.at_level("INFO", logger="ingest.pipeline"):
        assert pipeline.run(should_stop, exit_when_idle=2.0, shutdown_timeout=30)
    consumer.close()

    budget = MAX_BYTES * 3
    largest = max(len(json.dumps({"order_id": 6_000, "customer": "c96", "amount": 7500.0, "currency": "EUR",
                                  "items": [{"sku": "sku-12", "qty": 3}]})) + 3, 1)
    assert max(held) >= 0.9 * budget  # storage was slow enough for the budget to matter
    assert max(held) <= budget + CONSUME_BATCH * largest  # ... and it held: at most one consume() past it
    assert any(waited)  # the loop waited for a publish instead of consuming
    reasons = Counter(r.__dict__.get("reason") for r in caplog.records if r.__dict__.get("event") == "flush")
    assert set(reasons) <= {"bytes", "memory", "shutdown"} and reasons["bytes"] + reasons["memory"] > 3, reasons
    assert landed_rows(LakeStore.open(settings.output.url), "parquet") == expected_rows(6_000)
    assert committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name) == {0: 2000, 1: 2000, 2: 2000}
