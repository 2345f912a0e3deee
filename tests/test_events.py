"""Landed-batch events: the event's shape, its sinks, and the pipeline announcing each batch
after its files and before its commit (a failed announcement is retried, never committed past)."""
from __future__ import annotations

import http.server
import json
import threading

import pytest
from fakes import FakeConsumer, json_messages
from test_pipeline import TOPIC, Clock, make, spin

from ingest_core.batching.buffer import Batch
from ingest_core.settings import Settings
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.events import BatchEvents, EventUrl, NoEvents, batch_event, batch_events, event_bytes
from ingest_core.sink.storage import StorageError


def settings(**events) -> Settings:
    return Settings.model_validate({"topic": TOPIC, "output": {"url": "file:///lake/orders"}, "events": events})


def encoded_batch(fmt="parquet"):
    values = [json.dumps({"i": i}).encode() for i in range(5)] + [b"not json"]
    batch = Batch(TOPIC, 3, 40, list(range(41, 47)), [1_700_000_000_000] * 6, [None] * 6, values, [])
    encoder_settings = Settings.model_validate({"topic": TOPIC, "output": {"url": "file:///lake/orders", "format": fmt}})
    return BatchEncoder(encoder_settings).encode(batch)


def test_event_names_the_batch_its_offsets_files_and_schema():
    event = batch_event(encoded_batch(), "file:///lake/orders/", "parquet")
    assert event["id"] == "orders+3+00000000000000000040"
    assert event["marker"] == "_ingest/batches/orders/3/00000000000000000040.json"
    assert (event["base_offset"], event["first_offset"], event["last_offset"], event["next_offset"]) == (40, 41, 46, 47)
    assert (event["records"], event["rows"], event["dead_letters"]) == (6, 5, 1)
    [file] = event["files"]
    assert file["url"] == "file:///lake/orders/" + file["path"] and file["bytes"] > 0 and file["rows"] == 5
    assert event["schema_fingerprint"].startswith("sha256:")


def test_the_same_batch_encoded_again_gives_the_same_event():
    """What makes duplicates harmless: a replay announces byte-for-byte the same event."""
    for fmt in ("parquet", "ndjson"):
        one, two = (event_bytes(batch_event(encoded_batch(fmt), "s3://b/l", fmt)) for _ in range(2))
        assert one == two


def test_fingerprint_follows_the_schema_not_the_values():
    same = {batch_event(encoded_batch(), "u", "parquet")["schema_fingerprint"] for _ in range(2)}
    other = Batch(TOPIC, 3, 40, [41], [0], [None], [b'{"i": "text now"}'], [])
    encoder = BatchEncoder(Settings.model_validate({"topic": TOPIC, "output": {"url": "file:///x"}}))
    assert len(same) == 1 and encoder.encode(other).schema_fingerprint not in same


def test_settings_choose_the_sinks():
    assert isinstance(batch_events(settings()), NoEvents)
    assert isinstance(batch_events(settings(url="http://127.0.0.1:1/e")).sinks[0], EventUrl)
    with pytest.raises(ValueError, match="http:// or https://"):
        settings(url="ftp://x")


class Collector(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.headers["Idempotency-Key"], json.loads(body)))
        self.send_response(Collector.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    Collector.received, Collector.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events"
    server.shutdown()


def test_url_sink_posts_json_and_a_refusal_is_a_retryable_storage_error(collector):
    sink = EventUrl(collector)
    sink.send("orders+0+00000000000000000000", b'{"id": "orders+0+00000000000000000000"}')
    assert Collector.received == [("orders+0+00000000000000000000", {"id": "orders+0+00000000000000000000"})]
    Collector.status = 503
    with pytest.raises(StorageError) as refused:
        sink.send("x", b"{}")
    assert not refused.value.permanent and "503" in str(refused.value)
    with pytest.raises(StorageError):
        EventUrl("http://127.0.0.1:9/closed").send("x", b"{}")


class Recording:
    """An event sink that records, or fails while `failing`; checks the commit has not happened yet."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.sent: list[dict] = []
        self.failing = False

    def send(self, event_id, body):
        if self.failing:
            raise StorageError("events endpoint down", permanent=False)
        event = json.loads(body)
        assert self.consumer.committed_offsets.get(event["partition"], 0) <= event["base_offset"], "committed first"
        self.sent.append(event)


def test_pipeline_announces_every_batch_before_its_commit(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 25), 1: json_messages(TOPIC, 1, 5)})
    pipeline, _ = make(tmp_path, consumer, max_records=10)
    sink = Recording(consumer)
    pipeline.events = BatchEvents([sink], f"file://{tmp_path}/lake", "parquet")
    spin(pipeline)
    assert pipeline.shutdown(timeout=1)
    assert sorted((e["partition"], e["first_offset"], e["last_offset"]) for e in sink.sent) == [
        (0, 0, 9), (0, 10, 19), (0, 20, 24), (1, 0, 4)]
    assert consumer.committed_offsets == {0: 25, 1: 5}


def test_an_event_that_cannot_be_sent_holds_the_commit_until_it_is(tmp_path):
    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10)})
    pipeline, _ = make(tmp_path, consumer, max_records=10, clock=clock)
    sink = Recording(consumer)
    sink.failing = True
    pipeline.events = BatchEvents([sink], f"file://{tmp_path}/lake", "parquet")
    spin(pipeline)
    assert consumer.committed_offsets == {} and pipeline.storage_failing  # retried like a storage outage
    sink.failing = False
    clock.now += 5
    spin(pipeline)
    assert consumer.committed_offsets == {0: 10}
    assert [e["id"] for e in sink.sent] == [f"{TOPIC}+0+00000000000000000000"]
