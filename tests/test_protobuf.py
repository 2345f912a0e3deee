"""protobuf.py: message classes built at run time from the registered descriptor, and
Protobuf → Arrow types (well-known types, maps, enums, nesting, message indexes)."""
from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2, wrappers_pb2
from integration.registry import SchemaRegistry

from ingest_core.source.decode import Decoder
from ingest_core.source.protobuf import read_message_indexes

CONTEXT = SerializationContext("events", MessageField.VALUE)
F = descriptor_pb2.FieldDescriptorProto


def rich_classes():
    """A file with two messages (Other first, so Event is message index 1) importing well-known types."""
    file_proto = descriptor_pb2.FileDescriptorProto(name="event.proto", package="t", syntax="proto3",
                                                    dependency=["google/protobuf/timestamp.proto",
                                                                "google/protobuf/wrappers.proto"])
    other = file_proto.message_type.add(name="Other")
    other.field.add(name="x", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    event = file_proto.message_type.add(name="Event")
    color = event.enum_type.add(name="Color")
    color.value.add(name="RED", number=0)
    color.value.add(name="GREEN", number=1)
    inner = event.nested_type.add(name="Inner")
    inner.field.add(name="v", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry = event.nested_type.add(name="AttrsEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    add = event.field.add
    add(name="big", number=1, type=F.TYPE_UINT64, label=F.LABEL_OPTIONAL)
    add(name="raw", number=2, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    add(name="color", number=3, type=F.TYPE_ENUM, type_name=".t.Event.Color", label=F.LABEL_OPTIONAL)
    add(name="inner", number=4, type=F.TYPE_MESSAGE, type_name=".t.Event.Inner", label=F.LABEL_OPTIONAL)
    add(name="inners", number=5, type=F.TYPE_MESSAGE, type_name=".t.Event.Inner", label=F.LABEL_REPEATED)
    add(name="attrs", number=6, type=F.TYPE_MESSAGE, type_name=".t.Event.AttrsEntry", label=F.LABEL_REPEATED)
    add(name="at", number=7, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp", label=F.LABEL_OPTIONAL)
    add(name="maybe", number=8, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value", label=F.LABEL_OPTIONAL)
    add(name="nums", number=9, type=F.TYPE_SINT32, label=F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file_proto)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Other")))


def setup(cls):
    client = SchemaRegistryClient.new_client({"url": "mock://protobuf-tests"})
    serialize = ProtobufSerializer(cls, client, conf={"use.deprecated.format": False})
    decoder = Decoder("protobuf", schema_registry={"url": "mock://protobuf-tests"}, registry_client=client)
    return (lambda message: serialize(message, CONTEXT)), decoder


def test_every_kind_of_field_lands_with_its_type():
    Event, _ = rich_classes()
    serialize, decoder = setup(Event)
    at = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_456_000)
    full = Event(big=(1 << 64) - 1, raw=b"\x00\xff", color=1, inner={"v": "a"}, inners=[{"v": "b"}, {"v": "c"}],
                 attrs={"k": 5}, nums=[-1, 2])
    full.at.seconds, full.at.nanos = at.seconds, at.nanos  # the class's own Timestamp (its own pool)
    full.maybe.value = 0
    decoded = decoder.decode([serialize(full), serialize(Event())])
    assert not decoded.rejects
    schema = decoded.table.schema
    assert schema.field("big").type == pa.decimal128(20, 0) and schema.field("color").type == pa.string()
    assert schema.field("at").type == pa.timestamp("us", tz="UTC") and schema.field("maybe").type == pa.int64()
    assert schema.field("attrs").type == pa.map_(pa.string(), pa.int64())
    first, empty = decoded.table.to_pylist()
    assert first["big"] == (1 << 64) - 1 and first["raw"] == b"\x00\xff" and first["color"] == "GREEN"
    assert first["inner"] == {"v": "a"} and first["inners"] == [{"v": "b"}, {"v": "c"}]
    assert first["attrs"] == [("k", 5)] and first["nums"] == [-1, 2]
    assert first["at"] == datetime.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=datetime.UTC)
    assert first["maybe"] == 0  # set to its default: present, not null
    assert empty["inner"] is None and empty["at"] is None and empty["maybe"] is None  # unset messages: null
    assert empty["big"] == 0 and empty["color"] == "RED" and empty["nums"] == []  # plain proto3 scalars: defaults


def test_the_message_index_picks_the_message_type_and_another_type_is_rejected():
    Event, Other = rich_classes()
    serialize_event, decoder = setup(Event)
    client = decoder.wire.client
    serialize_other = ProtobufSerializer(Other, client, conf={"use.deprecated.format": False})
    event = serialize_event(Event(big=1))
    other = serialize_other(Other(x=3), SerializationContext("others", MessageField.VALUE))
    assert event[5:6] == b"\x02" and event[6:7] == b"\x02"  # one index: 1 (zigzag)
    decoded = decoder.decode([event, other])  # Other under its own subject: a schema id of its own
    assert not decoded.rejects and decoded.table.column("big").to_pylist() == [decimal.Decimal(1), None]
    assert decoded.table.column("x").to_pylist() == [None, 3]
    # the same schema id naming another message than its first one
    wrong = event[:5] + b"\x00" + b"\x08\x03"
    assert "name another message type" in decoder.decode([wrong]).rejects[0]


def test_message_indexes_are_read_as_zigzag_varints():
    import io
    assert read_message_indexes(io.BytesIO(b"\x00")) == [0]
    assert read_message_indexes(io.BytesIO(b"\x04\x02\x06")) == [1, 3]


def test_a_body_that_is_not_the_message_is_dead_lettered():
    Event, _ = rich_classes()
    serialize, decoder = setup(Event)
    good = serialize(Event(big=1))
    decoded = decoder.decode([good[:7] + b"\xff\xff\xff", good])
    assert decoded.kept == [1] and "invalid Protobuf body for schema id" in decoded.rejects[0]


def test_a_schema_kept_as_proto_text_is_rejected_with_the_reason():
    with SchemaRegistry() as registry:
        schema_id = registry.register("events-value", 'syntax = "proto3"; message M { int32 x = 1; }', "PROTOBUF")
        decoded = Decoder("protobuf", schema_registry={"url": registry.url}).decode(
            [b"\x00" + schema_id.to_bytes(4, "big") + b"\x00\x08\x01"])
    assert "serialized FileDescriptorProto" in decoded.rejects[0]
