"""Dead letters: messages that cannot be landed, kept with the reason and their origin.

Two destinations, either or both:
- a URL: one NDJSON file per batch, `{topic}+{partition}+{base:020d}.ndjson`, created
  once (so a replay never duplicates it), key and value base64;
- a Kafka topic: the original key, value and headers plus `ingest.error.*` headers.
The original headers are read from Kafka only for `_headers` in output.metadata or a dead-letter
topic; without either, dead-letter files record none.
`write()` returns only when the dead letters are durable, so the offset can be committed.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

from confluent_kafka import KafkaError, KafkaException

from ingest_core.batching.buffer import Batch
from ingest_core.sink.encode import Reject
from ingest_core.sink.storage import LakeStore, StorageError

log = logging.getLogger("ingest.deadletter")


def dead_letter_rows(batch: Batch, rejects: list[Reject]) -> list[dict]:
    rows = []
    for reject in rejects:
        i = reject.index
        key, value = batch.keys[i], batch.value(i)
        rows.append(
            {
                "topic": batch.topic,
                "partition": batch.partition,
                "offset": batch.offsets[i],
                "timestamp": datetime.fromtimestamp(batch.timestamps[i] / 1000, UTC).isoformat(timespec="milliseconds"),
                "reason": reject.reason,
                "key_base64": None if key is None else base64.b64encode(key).decode("ascii"),
                "value_base64": None if value is None else base64.b64encode(value).decode("ascii"),
                "headers": [
                    [h, None if v is None else base64.b64encode(v).decode("ascii")] for h, v in _headers_of(batch, i)
                ],
            }
        )
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
    """Dead letters to a Kafka topic, produced with acks=all and flushed before `write` returns.

    A value the topic cannot take (larger than its `max.message.bytes` or the producer's
    `message.max.bytes`) is produced without its value and with an `ingest.error.value_omitted`
    header giving its size: the record still says which message failed and why, and the value
    stays readable at that offset of the source topic (and in full in `dead_letter.url`, if set)."""

    def __init__(self, topic: str, producer_config: dict, producer=None):
        self.topic = topic
        if producer is None:
            from confluent_kafka import Producer

            producer = Producer({**producer_config, "enable.idempotence": True, "acks": "all"})
        self.producer = producer

    def write(self, batch: Batch, rejects: list[Reject]) -> None:
        if not rejects:
            return
        failures: list[str] = []
        too_large: list[Reject] = []

        def on_delivery(reject: Reject):
            def delivered(error, _message):
                if error is None:
                    return
                if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    too_large.append(reject)
                else:
                    failures.append(str(error))

            return delivered

        for reject in rejects:
            self._produce(batch, reject, batch.value(reject.index), [], on_delivery(reject), too_large)
        remaining = self.producer.flush(30)
        for reject in list(too_large):
            size = len(batch.value(reject.index) or b"")
            log.warning(
                "dead letter of %s[%d]@%d is too large for topic %s (%d bytes): produced without its value",
                batch.topic,
                batch.partition,
                batch.offsets[reject.index],
                self.topic,
                size,
                extra={"event": "dead_letter_value_omitted", "bytes": size},
            )
            omitted = [
                ("ingest.error.value_omitted", f"{size} bytes: larger than the dead-letter topic accepts".encode())
            ]
            self._produce(batch, reject, None, omitted, on_delivery(Reject(-1, "")), [])
        if too_large:
            remaining = self.producer.flush(30)
        if remaining or failures:
            raise StorageError(
                f"dead-letter topic {self.topic}: {remaining} undelivered, errors: {failures[:3]}", permanent=False
            )

    def _produce(self, batch: Batch, reject: Reject, value, extra_headers, on_delivery, too_large) -> None:
        i = reject.index
        headers = (
            _headers_of(batch, i)
            + [
                ("ingest.error.reason", reject.reason.encode()),
                ("ingest.error.topic", batch.topic.encode()),
                ("ingest.error.partition", str(batch.partition).encode()),
                ("ingest.error.offset", str(batch.offsets[i]).encode()),
                ("ingest.error.timestamp", str(batch.timestamps[i]).encode()),
            ]
            + extra_headers
        )
        while True:
            try:
                self.producer.produce(
                    self.topic, value=value, key=batch.keys[i], headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain, then go on
                self.producer.poll(0.5)
            except KafkaException as error:
                if error.args and error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE and value is not None:
                    too_large.append(reject)
                    return
                raise StorageError(f"dead-letter topic {self.topic}: {error}", permanent=False) from error


def _headers_of(batch: Batch, index: int) -> list:
    """A message's original headers; none when they were not read (see BatchEncoder.reads_headers)."""
    return list(batch.headers[index] or []) if batch.headers else []


class DeadLetters:
    """All configured dead-letter destinations."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def write(self, batch: Batch, rejects: list[Reject]) -> None:
        for sink in self.sinks:
            sink.write(batch, rejects)
