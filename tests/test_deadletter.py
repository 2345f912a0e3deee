"""deadletter.py: NDJSON dead-letter files and the dead-letter topic (against a fake producer
here; tests/integration/test_decoding.py runs both against the real broker)."""
from __future__ import annotations

import base64
import json

import pytest
from confluent_kafka import KafkaError, KafkaException

from ingest_core.batching.buffer import Batch
from ingest_core.sink.deadletter import DeadLetterFiles, DeadLetterTopic, dead_letter_rows
from ingest_core.sink.encode import Reject
from ingest_core.sink.storage import LakeStore, StorageError


def batch() -> Batch:
    return Batch("orders", 4, 100, [100, 101, 102], [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002],
                 [b"k0", None, b"\xff"], [b"{bad", None, b"x" * 50], [[("trace", b"t1")], None, [("h", None)]])


REJECTS = [Reject(0, "invalid JSON: x"), Reject(1, "tombstone: the message has no value"), Reject(2, "too big")]


def test_rows_carry_origin_reason_and_payload_in_base64():
    rows = dead_letter_rows(batch(), REJECTS)
    assert rows[0] == {
        "topic": "orders", "partition": 4, "offset": 100, "timestamp": "2023-11-14T22:13:20.000+00:00",
        "reason": "invalid JSON: x", "key_base64": "azA=", "value_base64": base64.b64encode(b"{bad").decode(),
        "headers": [["trace", "dDE="]],
    }
    assert rows[1]["value_base64"] is None and rows[1]["key_base64"] is None and rows[1]["headers"] == []
    assert rows[2]["key_base64"] == "/w==" and rows[2]["headers"] == [["h", None]]


def test_files_are_written_once_per_batch_and_a_replay_does_not_duplicate(tmp_path):
    store = LakeStore.open(f"file://{tmp_path}/dlq")
    files = DeadLetterFiles(store)
    files.write(batch(), REJECTS)
    files.write(batch(), REJECTS)  # a replay of the same batch
    lines = (tmp_path / "dlq" / "orders+4+00000000000000000100.ndjson").read_text().splitlines()
    assert [json.loads(line)["offset"] for line in lines] == [100, 101, 102]
    files.write(batch(), [])  # nothing to write: no file
    assert len(list((tmp_path / "dlq").iterdir())) == 1


class FakeError:
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def __str__(self):
        return f"error {self._code}"


class FakeProducer:
    """Accepts values up to `limit` bytes; larger ones fail as librdkafka does (synchronously)
    or as a broker does (in the delivery report)."""

    def __init__(self, limit=20, broker_limit=None, fail=None):
        self.limit, self.broker_limit, self.fail = limit, broker_limit, fail
        self.produced, self.pending = [], []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        if value is not None and len(value) > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.pending.append((topic, value, key, headers, on_delivery))

    def flush(self, timeout=None):
        for topic, value, key, headers, on_delivery in self.pending:
            error = None
            if self.fail:
                error = FakeError(self.fail)
            elif self.broker_limit is not None and value is not None and len(value) > self.broker_limit:
                error = FakeError(KafkaError.MSG_SIZE_TOO_LARGE)
            else:
                self.produced.append((topic, value, key, dict(headers)))
            on_delivery(error, None)
        self.pending = []
        return 0

    def poll(self, timeout=None):
        return 0


def test_topic_dead_letters_keep_key_value_headers_and_add_the_error():
    producer = FakeProducer(limit=100)
    DeadLetterTopic("orders.dlq", {}, producer=producer).write(batch(), REJECTS[:1])
    [(topic, value, key, headers)] = producer.produced
    assert (topic, value, key) == ("orders.dlq", b"{bad", b"k0")
    assert headers == {"trace": b"t1", "ingest.error.reason": b"invalid JSON: x", "ingest.error.topic": b"orders",
                       "ingest.error.partition": b"4", "ingest.error.offset": b"100",
                       "ingest.error.timestamp": b"1700000000000"}


@pytest.mark.parametrize("producer", [FakeProducer(limit=20), FakeProducer(limit=1000, broker_limit=20)],
                         ids=["producer-limit", "topic-limit"])
def test_a_value_too_large_for_the_topic_is_dead_lettered_without_it(producer):
    DeadLetterTopic("orders.dlq", {}, producer=producer).write(batch(), REJECTS)
    by_offset = {h["ingest.error.offset"]: (value, h) for _, value, _, h in producer.produced}
    assert sorted(by_offset) == [b"100", b"101", b"102"]
    value, headers = by_offset[b"102"]
    assert value is None and headers["ingest.error.value_omitted"].startswith(b"50 bytes")
    assert headers["ingest.error.reason"] == b"too big"
    assert by_offset[b"100"][0] == b"{bad"


def test_other_delivery_failures_are_a_retryable_storage_error():
    producer = FakeProducer(limit=1000, fail=KafkaError._MSG_TIMED_OUT)
    with pytest.raises(StorageError) as error:
        DeadLetterTopic("orders.dlq", {}, producer=producer).write(batch(), REJECTS)
    assert not error.value.permanent
