"""Decoding against the real broker through the real `ingest run`: a poison corpus mixed into
good traffic, Avro with logical types over two schema versions (confluent-kafka's AvroSerializer
against the real schema registry of deploy/local/schema_registry.py), and JSON drift. Every
produced message must be in the lake or in the dead letters, exactly once, and the lake must be readable by pyspark with mergeSchema."""
from __future__ import annotations

import base64
import glob
import io
import json
import math
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from ingest_core.arrow.schema import json_text
from ingest_core.sink.storage import LakeStore

from .lake import data_files, run_until_idle, write_config
from .registry import schema_registry  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

TEN_MB = 10 * 1024 * 1024
FIVE_MB = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def spark():
    """One small SparkSession for the module (the suite's shared one when it exists)."""
    try:
        from .spark import spark_session
    except ImportError:
        spark_session = None
    if spark_session is not None:
        return spark_session()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[1]").appName("lake-ingest-decoding")
               .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})])
    for future in futures.values():
        future.result(timeout=30)


class Corpus:
    """Produces messages and remembers, per (partition, offset), what each one was."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                                  "message.max.bytes": TEN_MB})
        self.sent: list[tuple[str, bytes | None, dict | None]] = []
        self.where: dict[tuple[int, int], tuple[str, bytes | None, dict | None]] = {}
        self.errors: list = []

    def send(self, kind: str, value: bytes | None, original: dict | None = None, key: bytes | None = None) -> None:
        number = len(self.sent)
        self.sent.append((kind, value, original))
        entry = (kind, value, original)

        def delivered(error, message):
            if error is not None:
                self.errors.append(error)
            else:
                self.where[(message.partition(), message.offset())] = entry
        self.producer.produce(self.topic, value=value, key=key if key is not None else f"m{number}".encode(),
                              partition=number % self.partitions, on_delivery=delivered,
                              headers=[("origin", f"n{number}".encode())])
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0 and not self.errors, self.errors
        assert len(self.where) == len(self.sent)


def lake_rows(root: Path) -> dict[tuple[int, int], dict]:
    store = LakeStore.open(f"file://{root}")
    rows: dict[tuple[int, int], dict] = {}
    for path in data_files(store):
        for row in pq.read_table(io.BytesIO(store.read(path))).to_pylist():
            key = (row["_partition"], row["_offset"])
            assert key not in rows, f"{key} landed twice"
            rows[key] = dict(row, _file=path)
    return rows


def dead_letter_files(folder: Path) -> dict[tuple[int, int], dict]:
    letters: dict[tuple[int, int], dict] = {}
    for name in sorted(glob.glob(str(folder / "*.ndjson"))):
        for line in Path(name).read_text().splitlines():
            row = json.loads(line)
            key = (row["partition"], row["offset"])
            assert key not in letters, f"{key} dead-lettered twice"
            letters[key] = row
    return letters


def dead_letter_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        messages = []
        import time
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(500, 1.0) if m.error() is None)
        # and nothing more than expected
        messages.extend(m for m in consumer.consume(500, 2.0) if m.error() is None)
        return messages
    finally:
        consumer.close()


def stopped_event(result) -> dict:
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    stopped = [e for e in events if e.get("event") == "stopped"]
    assert stopped, result.stderr[-3000:]
    return stopped[-1]


def good_event(i: int, country) -> dict:
    return {"id": i, "country": country, "amount": i * 1.25 + 0.5, "score": 0.5,
            "items": [{"sku": f"s{i % 7}", "qty": 1 + i % 3}]}


HOSTILE_COUNTRIES = ["DE", "../../etc", "..", ".hidden", "_tmp", "a/b", "C:\\win", "x\ny", "", None, "Zürich",
                     "%2e%2e", "a=b"]


def test_poison_corpus_mixed_into_good_traffic_every_message_is_accounted_for(kafka, topic_name, tmp_path, spark):
    dlq_topic = f"{topic_name}.dlq"
    create_topic(kafka.bootstrap, topic_name, 3, {"max.message.bytes": str(TEN_MB)})
    create_topic(kafka.bootstrap, dlq_topic, 1)  # default 1 MB limit: the 5 MB poison arrives without its value
    corpus = Corpus(kafka.bootstrap, topic_name, 3)
    poison = [
        ("invalid_utf8", b'{"id": 1, "name": "\xff\xfe"}', "invalid UTF-8"),
        ("truncated", b'{"id": 1, "name": "tru', "invalid JSON"),
        ("array", b"[1, 2, 3]", "got a JSON array"),
        ("number", b"42", "got a JSON number"),
        ("string", b'"just text"', "got a JSON string"),
        ("null", b"null", "got a JSON null"),
        ("empty", b"", "empty value"),
        ("tombstone", None, "tombstone"),
        ("deep", b'{"a":' * 500 + b"1" + b"}" * 500, "nesting deeper than decode.max_depth"),
        ("duplicate", b'{"id": 1, "id": 2}', "duplicate key 'id'"),
        ("surrogate", b'{"id": 1, "s": "\\udc00"}', "unpaired UTF-16 surrogate"),
        ("two_objects", b'{"id": 1}{"id": 2}', "invalid JSON"),
        ("big_bad", b'{"blob": "' + b"x" * FIVE_MB, "invalid JSON"),
    ]
    landing = {
        "nan": {"id": -1, "country": "DE", "score": float("nan"), "amount": float("inf")},
        "neg_inf": {"id": -2, "country": "DE", "score": float("-inf"), "amount": 1.5},
        "bigint": {"id": -3, "country": "FR", "huge": 123456789012345678901234567890, "amount": 2.5},
        "big_good": {"id": -4, "country": "FR", "blob": "y" * FIVE_MB, "amount": 3.5},
    }
    expected_reason: dict[str, str] = {kind: reason for kind, _, reason in poison}
    for i in range(900):
        corpus.send("good", json.dumps(event := good_event(i, HOSTILE_COUNTRIES[i % len(HOSTILE_COUNTRIES)])).encode(), event)
        if i % 60 == 30 and poison:
            kind, value, _ = poison.pop(0)
            corpus.send(kind, value)
        if i % 200 == 100 and landing:
            kind, event = landing.popitem()
            corpus.send(kind, json.dumps(event).encode(), event)
    for kind, value, _ in poison:
        corpus.send(kind, value)
    for kind, event in landing.items():
        corpus.send(kind, json.dumps(event).encode(), event)
    corpus.flush()

    root, dlq = tmp_path / "lake", tmp_path / "dlq"
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{root}",
                          batch={"max_records": 200, "max_bytes": "32MiB"},
                          extra=f"dead_letter: {{topic: {dlq_topic}, url: \"file://{dlq}\"}}\n")
    config.write_text(config.read_text().replace("  format: parquet\n", "  format: parquet\n  partition_by: \"cc={country}\"\n"))

    result = run_until_idle(config, idle="4s", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    landed, letters = lake_rows(root), dead_letter_files(dlq)
    assert not set(landed) & set(letters), "a message is both in the lake and in the dead letters"
    assert set(landed) | set(letters) == set(corpus.where), "a message is missing"

    counts = Counter()
    for key, (kind, value, original) in corpus.where.items():
        if kind in expected_reason:
            assert key in letters, (kind, key)
            letter = letters[key]
            assert expected_reason[kind] in letter["reason"], (kind, letter["reason"])
            assert letter["value_base64"] == (None if value is None else base64.b64encode(value).decode())
            assert letter["topic"] == topic_name and letter["headers"][0][0] == "origin"
            counts["dead_letter"] += 1
        else:
            assert key in landed, (kind, key)
            row = landed[key]
            assert row["id"] == original["id"] and row["_key"] is not None
            counts["landed"] += 1
        counts[kind] += 1

    # Values that needed care landed intact.
    by_kind = {kind: landed[key] for key, (kind, _, _) in corpus.where.items() if kind in ("nan", "neg_inf", "bigint", "big_good")}
    assert math.isnan(by_kind["nan"]["score"]) and by_kind["nan"]["amount"] == float("inf")
    assert by_kind["neg_inf"]["score"] == float("-inf")
    assert by_kind["bigint"]["huge"] == "123456789012345678901234567890"
    assert len(by_kind["big_good"]["blob"]) == FIVE_MB

    # Hostile partition values stayed inside the lake, in visible folders.
    for path in data_files(LakeStore.open(f"file://{root}")):
        folder = path.split("/")[0]
        assert folder.startswith("cc=") and (root / path).resolve().is_relative_to(root.resolve()), path
    assert sorted(os.listdir(root)) == sorted({p.split("/")[0] for p in data_files(LakeStore.open(f"file://{root}"))} | {"_ingest"})

    # The dead-letter topic holds the same messages, with the error headers.
    messages = dead_letter_topic(kafka.bootstrap, dlq_topic, len(letters))
    assert len(messages) == len(letters)
    by_origin = {}
    for message in messages:
        headers = dict(message.headers())
        key = (int(headers["ingest.error.partition"]), int(headers["ingest.error.offset"]))
        by_origin[key] = (message, headers)
        assert headers["ingest.error.topic"] == topic_name.encode()
        assert headers["ingest.error.reason"].decode() == letters[key]["reason"]
        assert int(headers["ingest.error.timestamp"]) > 0
        kind, value, _ = corpus.where[key]
        assert message.headers()[0] == ("origin", base64.b64decode(letters[key]["headers"][0][1]))
        assert message.key() == base64.b64decode(letters[key]["key_base64"])
        if kind == "big_bad":
            assert message.value() is None and headers["ingest.error.value_omitted"].startswith(str(len(value)).encode())
        else:
            assert message.value() == value, kind
    assert set(by_origin) == set(letters)

    stopped = stopped_event(result)
    assert stopped["records"] == len(landed) and stopped["dead_letters"] == len(letters)

    # Spark reads the whole lake, partition folders decoded back to the original values.
    df = spark.read.option("mergeSchema", "true").parquet(str(root))
    assert df.count() == len(landed)
    folders = {r["cc"] for r in df.select("cc").distinct().collect()}
    assert {"../../etc", "..", ".hidden", "_tmp", "a/b", "C:\\win", "x\ny", "%2e%2e", "a=b", "DE", None} <= folders

    print(f"\npoison corpus: {len(corpus.where)} produced = {len(landed)} landed + {len(letters)} dead letters "
          f"({len(messages)} on {dlq_topic}); by kind: {dict(sorted(counts.items()))}")


V1 = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "note", "type": "string", "default": ""},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
]}
V2 = {"type": "record", "name": "Order", "namespace": "shop", "fields": [  # note (default "") removed, email added
    {"name": "id", "type": "long"},
    {"name": "email", "type": ["null", "string"], "default": None},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}},
]}


def test_avro_two_schema_versions_land_in_parquet_spark_reads_with_both_columns(kafka, schema_registry, topic_name,
                                                                                tmp_path, spark):
    import datetime
    import decimal

    create_topic(kafka.bootstrap, topic_name, 2)
    registry = schema_registry
    client = SchemaRegistryClient({"url": registry.url})
    context = SerializationContext(topic_name, MessageField.VALUE)
    v1, v2 = AvroSerializer(client, json.dumps(V1)), AvroSerializer(client, json.dumps(V2))
    corpus = Corpus(kafka.bootstrap, topic_name, 2)
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    for i in range(400):
        price = decimal.Decimal(i) / 4
        if i < 150 or i % 5 == 0:  # v1 first, then v2 with some v1 producers still running
            corpus.send("v1", v1({"id": i, "note": f"n{i}", "at": at, "price": price}, context), {"id": i})
        else:
            corpus.send("v2", v2({"id": i, "email": f"u{i}@x" if i % 3 else None, "at": at, "price": price,
                                  "tags": {"k": str(i)}}, context), {"id": i})
    good = v1({"id": 999, "note": "", "at": at, "price": decimal.Decimal(0)}, context)
    poison = {
        "unknown_id": b"\x00\x00\x00\x30\x39" + good[5:],
        "no_magic": b'{"id": 1}',
        "short": b"\x00\x01",
        "truncated": good[:6],
        "tombstone": None,
    }
    for kind, value in poison.items():
        corpus.send(kind, value)
    corpus.flush()

    root, dlq = tmp_path / "lake", tmp_path / "dlq"
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{root}", batch={"max_records": 120},
                          extra=f"decode: {{format: avro, schema_registry: {{url: \"{registry.url}\"}}}}\n"
                                f"dead_letter: {{url: \"file://{dlq}\"}}\n")
    result = run_until_idle(config, idle="4s", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]

    landed, letters = lake_rows(root), dead_letter_files(dlq)
    assert set(landed) | set(letters) == set(corpus.where) and not set(landed) & set(letters)
    reasons = {corpus.where[key][0]: letter["reason"] for key, letter in letters.items()}
    assert set(reasons) == set(poison)
    assert "unknown schema id 12345" in reasons["unknown_id"] and "magic byte" in reasons["no_magic"]
    assert "invalid Avro body" in reasons["truncated"] and "tombstone" in reasons["tombstone"]

    df = spark.read.option("mergeSchema", "true").parquet(str(root))
    fields = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert {"id": "bigint", "note": "string", "email": "string", "at": "timestamp",
            "price": "decimal(9,2)", "tags": "map<string,string>"}.items() <= fields.items()
    rows = {r["id"]: r for r in df.collect()}
    assert len(rows) == 400
    for key, (kind, _, original) in corpus.where.items():
        if kind not in ("v1", "v2"):
            continue
        row = rows[original["id"]]
        assert row["_offset"] == key[1] and row["_partition"] == key[0]
        assert row["price"] == decimal.Decimal(original["id"]) / 4
        assert row["at"] == at.replace(tzinfo=None)  # session time zone UTC
        if kind == "v1":
            assert row["note"] == f"n{original['id']}" and row["email"] is None and row["tags"] is None
        else:
            assert row["note"] is None and row["tags"] == {"k": str(original["id"])}
            assert row["email"] == (f"u{original['id']}@x" if original["id"] % 3 else None)
    print(f"\navro: {len(corpus.where)} produced = {len(landed)} landed + {len(letters)} dead letters; "
          f"registry {registry.url}")


def test_json_drift_lands_with_no_value_lost(kafka, topic_name, tmp_path, spark):
    create_topic(kafka.bootstrap, topic_name, 1)
    corpus = Corpus(kafka.bootstrap, topic_name, 1)
    for i in range(300):
        event: dict = {"id": i, "amount": i}
        if i >= 100:
            event["new_field"] = f"v{i}"  # a new field appears
        if 150 <= i and i % 4 == 0:
            event["amount"] = f"{i}.00 EUR"  # int → string conflict inside a batch
        if i >= 200:
            event["geo"] = {"lat": i / 10, "tags": ["a"]} if i % 2 else {"lat": i, "tags": []}  # nested object appears
        if i >= 250 and i % 5 == 0:
            event["geo"] = "unknown"  # object vs scalar
        corpus.send("drift", json.dumps(event).encode(), event)
    corpus.flush()

    root = tmp_path / "lake"
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{root}", batch={"max_records": 50})
    result = run_until_idle(config, idle="3s")
    assert result.returncode == 0, result.stderr[-3000:]
    landed = lake_rows(root)
    assert set(landed) == set(corpus.where)

    widened = 0
    for key, (_, _, original) in corpus.where.items():
        row = landed[key]
        for name, value in original.items():
            got = row[name]
            if isinstance(got, str) and not isinstance(value, str):
                assert got == json_text(value), (name, value, got)  # widened to text, value intact
                widened += 1
            elif isinstance(value, dict):
                assert {k: got[k] for k in value} == value
            else:
                assert got == value, (name, value, got)
    assert widened > 0

    # Every file is readable by Spark with mergeSchema; files whose types agree merge.
    files = sorted({row["_file"] for row in landed.values()})
    total = 0
    for path in files:
        total += spark.read.option("mergeSchema", "true").parquet(str(root / path)).count()
    assert total == len(landed)
    same_types = [str(root / p) for p in files if pq.read_schema(root / p).field("amount").type == pq.read_schema(root / files[0]).field("amount").type]
    assert spark.read.option("mergeSchema", "true").parquet(*same_types).count() == sum(
        pq.read_metadata(p).num_rows for p in same_types)
    print(f"\njson drift: {len(landed)} rows in {len(files)} files, {widened} values widened to text")
