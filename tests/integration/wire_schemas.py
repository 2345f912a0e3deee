"""Two versions of one `Order` schema in each Confluent wire format, and confluent-kafka's
own serializers for them: what producers of these topics run. Between v1 and v2 a field is
added (with a default), a field is removed, and two are widened (qty int → long / integer
→ number, price float → double). Protobuf classes are built here at run time from
descriptors, as a producer with generated code would have them."""
from __future__ import annotations

import json
import struct

from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

FORMATS = ("avro", "json_schema", "protobuf")

AVRO = {
    1: {"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "float"},
        {"name": "note", "type": "string", "default": ""},
    ]},
    2: {"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "qty", "type": "long"},
        {"name": "price", "type": "double"},
        {"name": "email", "type": ["null", "string"], "default": None},
    ]},
}

JSON_SCHEMA = {
    1: {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "qty": {"type": "integer"},
                       "price": {"type": "number"}, "note": {"type": "string"}},
        "required": ["id", "name"]},
    2: {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "qty": {"type": "number"},
                       "price": {"type": "number"}, "email": {"type": ["string", "null"]}},
        "required": ["id", "name"]},
}

# Protobuf: field numbers are the contract; v2 drops 5 (note), widens 3 and 4, adds optional 6 (email).
PROTO_FIELDS = {
    1: [("id", 1, "TYPE_INT64", False), ("name", 2, "TYPE_STRING", False), ("qty", 3, "TYPE_INT32", False),
        ("price", 4, "TYPE_FLOAT", False), ("note", 5, "TYPE_STRING", False)],
    2: [("id", 1, "TYPE_INT64", False), ("name", 2, "TYPE_STRING", False), ("qty", 3, "TYPE_INT64", False),
        ("price", 4, "TYPE_DOUBLE", False), ("email", 6, "TYPE_STRING", True)],
}


def order(version: int, i: int) -> dict:
    """The record a producer of `version` sends for message number `i` (values exact in float32)."""
    if version == 1:
        return {"id": i, "name": f"n{i}", "qty": i % 50, "price": i * 0.25, "note": f"note {i}"}
    return {"id": i, "name": f"n{i}", "qty": 5_000_000_000 + i, "price": i / 3,
            "email": f"u{i}@x" if i % 3 else None}


def proto_class(version: int):
    """The `shop.Order` message class of `version`, built from a descriptor in a pool of its own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file_proto = descriptor_pb2.FileDescriptorProto(name=f"order_v{version}.proto", package="shop", syntax="proto3")
    message = file_proto.message_type.add(name="Order")
    for name, number, kind, optional in PROTO_FIELDS[version]:
        field = message.field.add(name=name, number=number, type=getattr(descriptor_pb2.FieldDescriptorProto, kind),
                                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        if optional:  # proto3 `optional`: a synthetic oneof gives it presence
            field.proto3_optional = True
            field.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{name}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def serializer(fmt: str, version: int, client, topic: str, conf: dict | None = None):
    """A function record -> bytes in `fmt`'s wire format, registering `version` under `topic`-value."""
    context = SerializationContext(topic, MessageField.VALUE)
    conf = conf or {}
    if fmt == "avro":
        serialize = AvroSerializer(client, json.dumps(AVRO[version]), conf=conf or None)
        return lambda record: serialize(record, context)
    if fmt == "json_schema":
        serialize = JSONSerializer(json.dumps(JSON_SCHEMA[version]), client, conf=conf or None)
        return lambda record: serialize({k: v for k, v in record.items()}, context)
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    cls = proto_class(version)
    serialize = ProtobufSerializer(cls, client, conf={"use.deprecated.format": False, **conf})

    def to_bytes(record: dict) -> bytes:
        return serialize(cls(**{k: v for k, v in record.items() if v is not None}), context)
    return to_bytes


def expected_row(fmt: str, version: int, i: int) -> dict:
    """What the lake must hold for message `i` of `version`: every field of the record, and
    null for the fields of the other version (proto3 plain scalars land as their value)."""
    record = order(version, i)
    row = {"id": i, "name": record["name"], "qty": record["qty"], "price": record["price"],
           "note": record.get("note"), "email": record.get("email")}
    if fmt == "protobuf" and version == 1:
        row["price"] = struct.unpack("f", struct.pack("f", record["price"]))[0]  # a float32 field
    return row
