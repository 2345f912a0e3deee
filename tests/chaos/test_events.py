"""Landed-batch events under crashes: one `ingest run` killed (SIGKILL) a few times mid-stream
and crashing by itself right before commits (INGEST_FAULTS), restarted each time. Every batch
in the lake (every marker) has its event, on the URL and on the topic; an id seen twice always
carries the same content (a replay announcing the batch again)."""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Consumer
from integration.lake import REPO, committed_offsets, create_topic, produce_events, write_config

from ingest_core.sink.ledger import Ledger
from ingest_core.sink.storage import LakeStore

pytestmark = pytest.mark.slow

MESSAGES = 6_000
RATE = 600  # messages per second: a 10 s stream
PARTITIONS = 3
KILLS = 3
FAULTS = "before_commit:0.1"  # killed after the announcement, before the commit: a replay announces again


class Collector(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        if len(body) < length:  # the sender was killed mid-request: nothing delivered (it announces again on replay)
            return
        Collector.received.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def start(config, log_path):
    with open(log_path, "a") as log:
        return subprocess.Popen([sys.executable, "-m", "ingest_core", "run", str(config), "--log-format", "json"],
                                cwd=REPO, stdout=log, stderr=log, env={**os.environ, "INGEST_FAULTS": FAULTS})


def events_on_topic(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    bodies: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(bodies) < expected and time.monotonic() < deadline:
            bodies += [m.value() for m in consumer.consume(500, 1.0) if m.error() is None]
        bodies += [m.value() for m in consumer.consume(500, 2.0) if m.error() is None]  # any beyond
    finally:
        consumer.close()
    return bodies


def test_every_batch_is_announced_and_repeats_share_id_and_content(kafka, topic_name, tmp_path):
    Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    create_topic(kafka.bootstrap, topic_name, partitions=PARTITIONS)
    create_topic(kafka.bootstrap, f"{topic_name}.events", partitions=1)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, batch={"max_records": 100, "max_age": "1s"},
                          extra=f"events: {{url: 'http://127.0.0.1:{server.server_address[1]}/landed', "
                                f"topic: {topic_name}.events}}\n")
    producer = threading.Thread(target=produce_events, args=(kafka.bootstrap, topic_name, MESSAGES),
                                kwargs={"partitions": PARTITIONS, "rate": RATE})
    log_path = tmp_path / "ingest.log"
    process = start(config, log_path)
    starts, kills = 1, 0
    producer.start()
    try:
        while producer.is_alive() or kills < KILLS:
            time.sleep(2.0)
            if process.poll() is not None:  # an injected crash
                process, starts = start(config, log_path), starts + 1
            elif kills < KILLS:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                process, starts = start(config, log_path), starts + 1
        producer.join()
        group, per_partition = f"ingest-{topic_name}", Counter(i % PARTITIONS for i in range(MESSAGES))
        deadline = time.monotonic() + 120
        while committed_offsets(kafka.bootstrap, group, topic_name, PARTITIONS) != dict(per_partition):
            assert time.monotonic() < deadline, "the consumer did not catch up"
            if process.poll() is not None:
                process, starts = start(config, log_path), starts + 1
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server.shutdown()

    markers = {f"{m.topic}+{m.partition}+{m.base:020d}": m for m in Ledger(lake).all_markers(topic_name)}
    posted = defaultdict(set)
    for body in Collector.received:
        posted[json.loads(body)["id"]].add(body)
    produced = defaultdict(set)
    for body in events_on_topic(kafka.bootstrap, f"{topic_name}.events", len(Collector.received)):
        produced[json.loads(body)["id"]].add(body)
    repeats = len(Collector.received) - len(posted)
    print(f"\nevents: {starts} starts ({kills} SIGKILLs, the rest injected crashes before a commit); "
          f"{len(markers)} batches in the lake; {len(Collector.received)} events posted for {len(posted)} ids "
          f"({repeats} repeats); {sum(len(b) for b in produced.values())} distinct bodies on the topic")

    assert set(posted) == set(markers), "a batch without its event, or an event without its batch"
    assert set(produced) == set(markers)
    assert all(len(bodies) == 1 for bodies in posted.values()), "one id announced with different contents"
    assert all(produced[i] == posted[i] for i in markers)
    for event_id, marker in markers.items():
        event = json.loads(next(iter(posted[event_id])))
        assert (event["base_offset"], event["last_offset"], event["records"]) == (marker.base, marker.end, marker.records)
        assert [f["path"] for f in event["files"]] == [f.path for f in marker.files]
        assert [len(lake.read(f["path"]) or b"") for f in event["files"]] == [f["bytes"] for f in event["files"]]
    records = Counter()
    for event_id in markers:
        event = json.loads(next(iter(posted[event_id])))
        records[event["partition"]] += event["records"]
    assert dict(records) == dict(per_partition), "the announced batches do not cover every message once"
    assert kills == KILLS
