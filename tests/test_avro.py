"""avro.py against confluent-kafka's own AvroSerializer and SchemaRegistryClient, talking
to the in-process test registry (tests/integration/registry.py; no server to install)."""
from __future__ import annotations

import datetime
import decimal
import gzip
import io
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from integration.registry import SchemaRegistry

from ingest_core.batching.buffer import Batch
from ingest_core.settings import Settings
from ingest_core.sink.encode import BatchEncoder
from ingest_core.source.decode import Decoder
from ingest_core.source.decoded import DecodeUnavailable

UTC = datetime.UTC
TOPIC = "orders"

V1 = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "note", "type": "string", "default": ""},
]}
# v2: a field added (with a default), the field with a default removed
V2 = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "email", "type": ["null", "string"], "default": None},
]}

EVERYTHING = {"type": "record", "name": "Everything", "namespace": "t", "fields": [
    {"name": "i", "type": "int"},
    {"name": "f", "type": "float"},
    {"name": "b", "type": "bytes"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "maybe", "type": ["null", {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}]},
    {"name": "choice", "type": ["null", "string", "long", "Inner", "Color"]},
    {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "clock", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "fixed_price", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal",
                                      "precision": 12, "scale": 3}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "next", "type": ["null", {"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}]},
]}

UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
RECORD = {
    "i": 7, "f": 1.5, "b": b"\x00\xff", "tags": ["a", "b"], "attrs": {"k": 1}, "color": "GREEN",
    "maybe": {"x": 3}, "choice": 42,
    "ts_ms": datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
    "ts_us": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    "local": datetime.datetime(2024, 5, 6, 7, 8, 9, 123000),
    "day": datetime.date(2024, 5, 6), "clock": datetime.time(1, 2, 3, 4000),
    "price": decimal.Decimal("12.34"), "fixed_price": decimal.Decimal("-5.125"),
    "uid": UID, "hash": b"abcd", "next": {"v": 1, "next": {"v": 2, "next": None}},
}


@pytest.fixture
def registry():
    with SchemaRegistry() as server:
        yield server


def serializer(registry, schema) -> callable:
    ser = AvroSerializer(SchemaRegistryClient({"url": registry.url}), json.dumps(schema))
    return lambda record: ser(record, SerializationContext(TOPIC, MessageField.VALUE))


def settings(registry, **extra) -> Settings:
    decode = {"format": "avro", "schema_registry": {"url": registry.url}, **extra.pop("decode", {})}
    return Settings.model_validate({"topic": TOPIC, "decode": decode,
                                    "output": {"url": "file:///tmp/x", "partition_by": "", **extra}})


def batch(values) -> Batch:
    n = len(values)
    return Batch(TOPIC, 0, 0, list(range(n)), [1_700_000_000_000] * n, [None] * n, values, [None] * n)


def parquet(encoded) -> pa.Table:
    assert len(encoded.files) == 1
    return pq.read_table(io.BytesIO(encoded.files[0].data))


def test_two_schema_versions_in_one_batch_land_with_both_columns_in_order(registry):
    one, two = serializer(registry, V1), serializer(registry, V2)
    values = [one({"id": 1, "note": "first"}), two({"id": 2, "email": "a@b"}), one({"id": 3, "note": "third"}),
              two({"id": 4, "email": None})]
    assert values[0][1:5] != values[1][1:5]  # two schema ids
    table = parquet(BatchEncoder(settings(registry)).encode(batch(values)))
    assert table.column_names == ["_topic", "_partition", "_offset", "_timestamp", "_key", "id", "note", "email"]
    assert table.select(["_offset", "id", "note", "email"]).to_pylist() == [
        {"_offset": 0, "id": 1, "note": "first", "email": None},
        {"_offset": 1, "id": 2, "note": None, "email": "a@b"},
        {"_offset": 2, "id": 3, "note": "third", "email": None},
        {"_offset": 3, "id": 4, "note": None, "email": None},
    ]


def test_every_avro_type_maps_to_a_spark_readable_arrow_type(registry):
    value = serializer(registry, EVERYTHING)(RECORD)
    decoded = Decoder("avro", schema_registry={"url": registry.url}).decode([value])
    schema = decoded.table.schema
    expected = {
        "i": pa.int64(), "f": pa.float64(), "b": pa.binary(), "tags": pa.list_(pa.string()),
        "attrs": pa.map_(pa.string(), pa.int64()), "color": pa.string(),
        "maybe": pa.struct([("x", pa.int64())]),
        "choice": pa.struct([("member0", pa.string()), ("member1", pa.int64()),
                             ("member2", pa.struct([("x", pa.int64())])), ("member3", pa.string())]),
        "ts_ms": pa.timestamp("us", tz="UTC"), "ts_us": pa.timestamp("us", tz="UTC"), "local": pa.timestamp("us"),
        "day": pa.date32(), "clock": pa.int64(), "price": pa.decimal128(10, 2), "fixed_price": pa.decimal128(12, 3),
        "uid": pa.string(), "hash": pa.binary(),
    }
    for name, arrow_type in expected.items():
        assert schema.field(name).type == arrow_type, name
    row = decoded.table.to_pylist()[0]
    assert row["choice"] == {"member0": None, "member1": 42, "member2": None, "member3": None}
    assert row["ts_us"] == RECORD["ts_us"] and row["local"] == RECORD["local"] and row["day"] == RECORD["day"]
    assert row["clock"] == 3_723_004 and row["price"] == decimal.Decimal("12.34") and row["uid"] == str(UID)
    assert row["attrs"] == [("k", 1)] and row["b"] == b"\x00\xff" and row["maybe"] == {"x": 3}
    # A record inside itself: first level a struct, below that JSON text.
    assert row["next"]["v"] == 1 and json.loads(row["next"]["next"]) == {"v": 2, "next": None}
    # And the whole row survives Parquet.
    table = parquet(BatchEncoder(settings(registry)).encode(batch([value])))
    assert table.column("ts_ms").type == pa.timestamp("us", tz="UTC")
    assert table.column("price").to_pylist() == [decimal.Decimal("12.34")]


@pytest.mark.parametrize("branch,expected", [
    ("text", {"member0": "text"}), (5, {"member1": 5}), ({"x": 9}, {"member2": {"x": 9}}),
    (("t.Color", "RED"), {"member3": "RED"}), (None, None),
])
def test_general_unions_set_the_member_of_their_branch(registry, branch, expected):
    record = dict(RECORD, choice=branch)
    decoded = Decoder("avro", schema_registry={"url": registry.url}).decode([serializer(registry, EVERYTHING)(record)])
    choice = decoded.table.column("choice").to_pylist()[0]
    if expected is None:
        assert choice is None
    else:
        assert {k: v for k, v in choice.items() if v is not None} == expected


def test_ndjson_from_avro_is_json_with_exact_decimals_and_iso_timestamps(registry):
    value = serializer(registry, EVERYTHING)(RECORD)
    encoded = BatchEncoder(settings(registry, format="ndjson")).encode(batch([value]))
    row = json.loads(gzip.decompress(encoded.files[0].data))
    assert row["ts_us"] == "2024-05-06T07:08:09.123456Z" and row["day"] == "2024-05-06"
    assert row["price"] == "12.34" and row["b"] == "AP8=" and row["attrs"] == {"k": 1}
    assert row["_offset"] == 0 and row["uid"] == str(UID)


def test_bad_messages_are_rejected_and_the_rest_land(registry):
    good = serializer(registry, V1)({"id": 1, "note": "n"})
    values = [good, b"{\"json\": true}", b"\x00\x00\x00\x03\xe7" + good[5:], good[:6], b"\x00\x01", good]
    encoded = BatchEncoder(settings(registry)).encode(batch(values))
    reasons = {r.index: r.reason for r in encoded.rejects}
    assert sorted(reasons) == [1, 2, 3, 4]
    assert "magic byte" in reasons[1]
    assert "unknown schema id 999" in reasons[2]
    assert "invalid Avro body for schema id 1" in reasons[3]
    assert "shorter than the 5-byte header" in reasons[4]
    assert parquet(encoded).column("_offset").to_pylist() == [0, 5]


def test_an_unknown_schema_id_is_asked_once_not_per_batch(registry):
    decoder = Decoder("avro", schema_registry={"url": registry.url})
    unknown = b"\x00\x00\x00\x00\x2a" + b"\x02"
    for _ in range(3):
        assert "unknown schema id 42" in decoder.decode([unknown, unknown]).rejects[0]
    assert registry.requests.count(("GET", "/schemas/ids/42")) == 1


def test_a_schema_that_is_not_avro_rejects_its_messages(registry):
    schema_id = registry.register("orders-value", 'syntax = "proto3"; message M {}', "PROTOBUF")
    decoded = Decoder("avro", schema_registry={"url": registry.url}).decode([b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"])
    assert "is a PROTOBUF schema" in decoded.rejects[0]


@pytest.mark.parametrize("policy", ["row", "skip", "dead_letter"])
def test_tombstones_follow_the_policy(registry, policy):
    good = serializer(registry, V1)({"id": 1, "note": "n"})
    encoded = BatchEncoder(settings(registry, decode={"tombstones": policy})).encode(batch([good, None]))
    if policy == "row":
        assert parquet(encoded).select(["_offset", "id"]).to_pylist() == [{"_offset": 0, "id": 1}, {"_offset": 1, "id": None}]
    else:
        assert parquet(encoded).column("_offset").to_pylist() == [0]
    assert encoded.skipped == (1 if policy == "skip" else 0)
    assert [r.index for r in encoded.rejects] == ([1] if policy == "dead_letter" else [])


def test_a_registry_that_is_down_makes_the_encoder_raise_for_a_retry_never_a_dead_letter(registry):
    good = serializer(registry, V1)({"id": 1, "note": "n"})
    encoder = BatchEncoder(settings(registry, decode={"schema_registry": {"url": registry.url, "max.retries": 0}}))
    registry.down = "refuse"
    with pytest.raises(DecodeUnavailable) as refused:
        encoder.encode(batch([good]))
    assert "503" in str(refused.value) and not refused.value.permanent
    registry.down = None
    port_url = registry.url
    registry.stop()
    with pytest.raises(DecodeUnavailable) as unreachable:
        encoder.encode(batch([good]))
    assert "cannot reach the schema registry" in str(unreachable.value) and port_url in str(unreachable.value)
    registry.start()  # same port: the registry is back
    encoded = encoder.encode(batch([good]))
    assert not encoded.rejects and parquet(encoded).column("id").to_pylist() == [1]


def test_a_registry_refusing_our_credentials_is_retried_with_the_key_to_fix(registry):
    # Credentials are fixed by updating a Secret while the consumer waits: retried, never a stop.
    good = serializer(registry, V1)({"id": 1, "note": "n"})
    registry.down = "unauthorized"
    decoder = Decoder("avro", schema_registry={"url": registry.url, "max.retries": 0})
    with pytest.raises(DecodeUnavailable) as error:
        decoder.decode([good])
    assert not error.value.permanent and "decode.schema_registry" in str(error.value) and "401" in str(error.value)
    registry.down = None
    assert decoder.decode([good]).table.column("id").to_pylist() == [1]


def test_avro_without_a_registry_url_is_a_config_error():
    with pytest.raises(ValueError, match="schema_registry"):
        Settings.model_validate({"topic": "t", "decode": {"format": "avro"}, "output": {"url": "file:///x"}})


def test_schemas_are_compiled_once_per_id(registry):
    ser = serializer(registry, V1)
    decoder = Decoder("avro", schema_registry={"url": registry.url})
    for i in range(5):
        decoder.decode([ser({"id": i, "note": ""})])
    assert registry.requests.count(("GET", "/schemas/ids/1")) == 1


def test_registry_credentials_count_as_secrets():
    from ingest_core.settings import is_secret_key
    assert is_secret_key("basic.auth.user.info") and is_secret_key("bearer.auth.token")
    assert is_secret_key("ssl.key.password") and not is_secret_key("url")
