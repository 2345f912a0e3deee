"""Kafka headers land in the lake and Spark reads them back: a real broker, a real `ingest run`,
both formats, headers with duplicate keys, binary and null values, and messages with none.
The reader is `ingest autoloader`'s open-source snippet (`spark_reader`)."""
from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from ingest_core.commands.autoloader import spark_reader
from ingest_core.config import load_settings
from ingest_core.sink.storage import LakeStore

from .lake import create_topic, data_files, run_until_idle, write_config
from .spark import run_available_now, spark_session

pytestmark = pytest.mark.slow

METADATA = "[_topic, _partition, _offset, _timestamp, _key, _headers]"
PATTERNS = [
    [("trace", b"t-1"), ("trace", b"t-2"), ("bin", bytes(range(256))), ("nothing", None)],
    None,  # no headers at all
    [("content-type", b"application/json")],
]


def produce(bootstrap: str, topic: str, start: int, count: int, with_headers: bool) -> dict[tuple[int, int], list]:
    """Messages i = start.. over 2 partitions; returns {(partition, offset): headers as Spark shows them}."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    landed: dict[tuple[int, int], list] = {}
    for i in range(start, start + count):
        headers = PATTERNS[i % len(PATTERNS)] if with_headers else None

        def delivered(err, msg, headers=headers):
            assert err is None, err
            landed[(msg.partition(), msg.offset())] = [
                {"key": k, "value": None if v is None else bytearray(v)} for k, v in (headers or [])]

        producer.produce(topic, f'{{"i": {i}}}'.encode(), partition=i % 2, headers=headers, on_delivery=delivered)
    assert producer.flush(30) == 0
    return landed


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_headers_land_and_spark_reads_them(kafka, topic_name, tmp_path, fmt):
    create_topic(kafka.bootstrap, topic_name, partitions=2)
    lake_url = f"file://{tmp_path / 'lake'}"
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake_url, fmt=fmt)
    config.write_text(config.read_text().replace("  format:", f"  metadata: {METADATA}\n  format:", 1))
    # First files from messages without any header, then files from messages with headers:
    # the column keeps one type across them.
    expected = produce(kafka.bootstrap, topic_name, 0, 10, with_headers=False)
    assert run_until_idle(config).returncode == 0
    expected |= produce(kafka.bootstrap, topic_name, 10, 30, with_headers=True)
    assert run_until_idle(config).returncode == 0

    settings = load_settings(config)
    store = LakeStore.open(lake_url)
    files = data_files(store)
    assert len(files) >= 4  # two runs x two partitions
    if fmt == "parquet":
        types = {str(pq.read_schema(io.BytesIO(store.read(f))).field("_headers").type) for f in files}
        assert types == {"list<element: struct<key: string, value: binary>>"}  # one type in every file
        reader = spark_reader(settings)  # schema inferred from the files, as the snippet does by default
    else:
        reader = spark_reader(settings, payload_schema="i BIGINT")  # NDJSON: BINARY decodes the base64
    run = run_available_now(reader.open(spark_session()), tmp_path / "checkpoint", reader.path)
    read = {(r["_partition"], r["_offset"]): r["_headers"] for r in run.rows}
    assert len(run.rows) == len(expected) == 40
    assert read == expected
    assert any(len(h) == 4 and h[0]["key"] == h[1]["key"] == "trace" for h in read.values())  # duplicates in order
    assert sum(1 for h in read.values() if h == []) >= 10  # none at all: an empty list, not null
