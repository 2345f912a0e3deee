"""Landed-batch events: one message per published batch, for jobs that want to know when data
landed without listing the lake (docs/events.md is the contract).

The pipeline calls `announce()` on a publisher thread after a batch's files and dead letters are
published and before its offset is committed; it returns once every sink has the event durably,
or raises `StorageError`, and the batch is retried like a storage outage (nothing is committed,
nothing is lost). A crash between the announcement and the commit replays the batch, which is
announced again with the same id and the same content: delivery is at least once, and the id
(the batch marker's identity) is how a consumer drops the repeats.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import KafkaException

from ingest_core.sink.encode import EncodedBatch
from ingest_core.sink.formats import data_size
from ingest_core.sink.ledger import marker_path
from ingest_core.sink.storage import StorageError

log = logging.getLogger("ingest.events")

EVENT_TYPE = "lake-ingest.batch_landed"
EVENT_VERSION = 1


def batch_id(topic: str, partition: int, base: int) -> str:
    """The batch marker's identity, as the data files name it: `{topic}+{partition}+{base:020d}`."""
    return f"{topic}+{partition}+{base:020d}"


def batch_event(encoded: EncodedBatch, lake_url: str, fmt: str) -> dict[str, Any]:
    """The event of one published batch. Only what the batch's replay makes the same: no clock time."""
    batch = encoded.batch
    root = lake_url.rstrip("/")
    return {
        "type": EVENT_TYPE,
        "version": EVENT_VERSION,
        "id": batch_id(batch.topic, batch.partition, batch.base),
        "topic": batch.topic,
        "partition": batch.partition,
        "base_offset": batch.base,
        "first_offset": batch.offsets[0],
        "last_offset": batch.end,
        "next_offset": batch.end + 1,
        "records": len(batch),
        "rows": sum(f.rows for f in encoded.files),
        "dead_letters": len(encoded.rejects),
        "skipped": encoded.skipped,
        "format": fmt,
        "schema_fingerprint": encoded.schema_fingerprint,
        "lake": root,
        "marker": marker_path(batch.topic, batch.partition, batch.base),
        "files": [
            {
                "path": f.path,
                "url": f"{root}/{f.path}",
                "bytes": data_size(f.data),
                "rows": f.rows,
                "first_offset": f.first_offset,
                "last_offset": f.last_offset,
            }
            for f in encoded.files
        ],
    }


def event_bytes(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


class EventTopic:
    """Events produced to a Kafka topic, keyed by id (so a compacted topic keeps one per batch)."""

    def __init__(self, topic: str, producer_config: dict, producer=None, timeout: float = 30.0):
        self.topic = topic
        self.timeout = timeout
        if producer is None:
            from confluent_kafka import Producer

            producer = Producer({**producer_config, "enable.idempotence": True, "acks": "all"})
        self.producer = producer

    def send(self, event_id: str, body: bytes) -> None:
        failures: list[str] = []

        def delivered(error, _message):
            if error is not None:
                failures.append(str(error))

        try:
            self.producer.produce(self.topic, value=body, key=event_id.encode(), on_delivery=delivered)
        except (BufferError, KafkaException) as error:  # local queue full, unknown topic, too large, ...
            raise StorageError(f"events topic {self.topic}: {error}", permanent=False) from error
        remaining = self.producer.flush(self.timeout)
        if remaining or failures:
            raise StorageError(
                f"events topic {self.topic}: event {event_id} not delivered "
                f"({'timed out' if remaining else failures[0]})",
                permanent=False,
            )


class EventUrl:
    """Events POSTed as JSON to an HTTP endpoint; any 2xx answer is a delivery. The id is also
    sent as the `Idempotency-Key` header."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self.where = (
            f"{urlsplit(url).scheme}://{urlsplit(url).netloc.rpartition('@')[2]}"  # no path or credentials in logs
        )

    def send(self, event_id: str, body: bytes) -> None:
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": event_id},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise StorageError(
                f"events URL {self.where} answered {error.code} for event {event_id}", permanent=False
            ) from error
        except (OSError, ValueError) as error:  # refused, timed out, DNS
            raise StorageError(f"events URL {self.where}: {error}", permanent=False) from error


class BatchEvents:
    """Every configured event sink; `announce()` returns once each has the event."""

    def __init__(self, sinks: list, lake_url: str, fmt: str):
        self.sinks = sinks
        self.lake_url = lake_url
        self.fmt = fmt

    def announce(self, encoded: EncodedBatch) -> None:
        event = batch_event(encoded, self.lake_url, self.fmt)
        body = event_bytes(event)
        for sink in self.sinks:
            sink.send(event["id"], body)


class NoEvents:
    """No `events` configured."""

    def announce(self, encoded: EncodedBatch) -> None:
        pass


def batch_events(settings, producer_config: dict | None = None):
    """The event sinks `settings.events` asks for (NoEvents if none)."""
    events = settings.events
    sinks: list = []
    if events.topic:
        sinks.append(EventTopic(events.topic, producer_config or {}))
    if events.url:
        sinks.append(EventUrl(events.url))
    if not sinks:
        return NoEvents()
    return BatchEvents(sinks, settings.output.url, settings.output.format)
