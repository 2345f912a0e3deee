"""Dead letters: messages that cannot be landed, kept with the reason and their origin.

Two destinations, either or both:
- a URL: one NDJSON file per batch, `{topic}+{partition}+{base:020d}.ndjson`, created
  once (so a replay never duplicates it), key and value base64;
- a Kafka topic: the original key, value and headers plus `ingest.error.*` headers.
`write()` returns only when the dead letters are durable, so the offset can be committed.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from .batch import Batch
from .encode import Reject
from .storage import LakeStore, StorageError


def dead_letter_rows(batch: Batch, rejects: list[Reject]) -> list[dict]:
    rows = []
    for reject in rejects:
        i = reject.index
        key, value = batch.keys[i], batch.values[i]
        rows.append({
            "topic": batch.topic,
            "partition": batch.partition,
            "offset": batch.offsets[i],
            "timestamp": datetime.fromtimestamp(batch.timestamps[i] / 1000, timezone.utc).isoformat(timespec="milliseconds"),
            "reason": reject.reason,
            "key_base64": None if key is None else base64.b64encode(key).decode("ascii"),
            "value_base64": None if value is None else base64.b64encode(value).decode("ascii"),
            "headers": [[h, None if v is None else base64.b64encode(v).decode("ascii")] for h, v in (batch.headers[i] or [])],
        })
    return rows


class DeadLetterFiles:
    def __init__(self, store: LakeStore):
        self.store = store

    def write(self, batch: Batch, rejects: list[Reject]) -> None:
        if not rejects:
            return
        body = "".join(json.dumps(row, sort_keys=True) + "\n" for row in dead_letter_rows(batch, rejects))
        self.store.publish(f"{batch.topic}+{batch.partition}+{batch.base:020d}.ndjson", body.encode())


class DeadLetterTopic:
    def __init__(self, topic: str, producer_config: dict):
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer({**producer_config, "enable.idempotence": True, "acks": "all"})

    def write(self, batch: Batch, rejects: list[Reject]) -> None:
        if not rejects:
            return
        failures: list[str] = []

        def delivered(error, _message):
            if error is not None:
                failures.append(str(error))

        for reject in rejects:
            i = reject.index
            headers = list(batch.headers[i] or []) + [
                ("ingest.error.reason", reject.reason.encode()),
                ("ingest.error.topic", batch.topic.encode()),
                ("ingest.error.partition", str(batch.partition).encode()),
                ("ingest.error.offset", str(batch.offsets[i]).encode()),
                ("ingest.error.timestamp", str(batch.timestamps[i]).encode()),
            ]
            self.producer.produce(self.topic, value=batch.values[i], key=batch.keys[i], headers=headers, on_delivery=delivered)
        remaining = self.producer.flush(30)
        if remaining or failures:
            raise StorageError(
                f"dead-letter topic {self.topic}: {remaining} undelivered, errors: {failures[:3]}", permanent=False
            )


class DeadLetters:
    """All configured dead-letter destinations."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def write(self, batch: Batch, rejects: list[Reject]) -> None:
        for sink in self.sinks:
            sink.write(batch, rejects)
