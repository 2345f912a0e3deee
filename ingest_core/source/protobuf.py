"""Protobuf in the Confluent wire format: message classes built at run time from the
registered schema, and Protobuf → Arrow types.

A message is `0x00`, a 4-byte schema id, the message indexes (which message of the schema's
file: a zigzag-varint count, then the path of indexes; a single `0x00` means the first
message), then the Protobuf body. The registry is asked for the schema as a serialized
`FileDescriptorProto` (`format=serialized`: what confluent-kafka's serializer registers,
and what Confluent's registry converts `.proto` text into); its references (imports) are
fetched and added to a descriptor pool of its own, and the message class comes from
`message_factory.GetMessageClass`: no generated code, so one consumer serves any topic.

Types, chosen so a column keeps one type across schema versions (a field widened from
int32 to int64 or from float to double keeps its column): every signed or 32-bit integer
→ int64, uint64/fixed64 → decimal(20, 0), float and double → float64, bool, string,
bytes → binary, enum → string (the value's name; its number when the schema has no name
for it), message → struct, repeated → list, map → map, google.protobuf.Timestamp →
timestamp(us, UTC), the wrapper types (`Int64Value`, ...) → their value (null when unset),
Struct / Value / ListValue / Any and a message that contains itself → its JSON text.
Fields without presence (proto3 scalars) land as their value, which is the default when
unset; message fields and `optional` / oneof fields land as null when unset.
"""

from __future__ import annotations

import datetime
import decimal
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ingest_core.source.registry import HEADER_BYTES, WireDecoder

Converter = Callable[[Any], Any]

_SIGNED = {
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_SINT32",
    "TYPE_SINT64",
    "TYPE_SFIXED32",
    "TYPE_SFIXED64",
    "TYPE_UINT32",
    "TYPE_FIXED32",
}
_UNSIGNED_64 = {"TYPE_UINT64", "TYPE_FIXED64"}
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_AS_JSON = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any"}


def _type_name(field_descriptor) -> str:
    from google.protobuf.descriptor import FieldDescriptor

    for name in dir(FieldDescriptor):
        if name.startswith("TYPE_") and getattr(FieldDescriptor, name) == field_descriptor.type:
            return name
    return "?"


def _is_repeated(field_descriptor) -> bool:
    repeated = getattr(field_descriptor, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field_descriptor.label == field_descriptor.LABEL_REPEATED


def _has_presence(field_descriptor) -> bool:
    presence = getattr(field_descriptor, "has_presence", None)
    if presence is not None:
        return bool(presence)
    return field_descriptor.message_type is not None or field_descriptor.containing_oneof is not None


class ProtobufTypes:
    """Descriptor → (Arrow type, converter from a message to a row)."""

    def __init__(self):
        self.open: set[str] = set()  # messages being converted (a message inside itself recurses)

    def message(self, descriptor) -> tuple[pa.DataType, Converter]:
        full = descriptor.full_name
        if full in _AS_JSON or full in self.open:
            return pa.string(), _message_json
        if full == "google.protobuf.Timestamp":
            return pa.timestamp("us", tz="UTC"), _timestamp
        if full in _WRAPPERS:
            arrow, convert = self.field(descriptor.fields_by_name["value"])
            return arrow, lambda message: convert(message.value)
        self.open.add(full)
        try:
            parts = []
            for f in descriptor.fields:
                arrow, convert = self.field(f)
                parts.append((f, arrow, convert))
        finally:
            self.open.discard(full)
        arrow = pa.struct([pa.field(f.name, t) for f, t, _ in parts])
        readers = [(f.name, _presence_reader(f, convert)) for f, _, convert in parts]

        def to_row(message):
            return {name: read(message) for name, read in readers}

        return arrow, to_row

    def field(self, f) -> tuple[pa.DataType, Converter]:
        """The type and converter of one value of `f` (one element when it is repeated)."""
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_type, key_convert = self.scalar(f.message_type.fields_by_name["key"])
            value_type, value_convert = self.single(f.message_type.fields_by_name["value"])
            return pa.map_(key_type, value_type), lambda entries: [
                (key_convert(k), value_convert(v)) for k, v in entries.items()
            ]
        arrow, convert = self.single(f)
        if _is_repeated(f):
            return pa.list_(arrow), lambda values: [convert(v) for v in values]
        return arrow, convert

    def single(self, f) -> tuple[pa.DataType, Converter]:
        if f.message_type is not None:
            return self.message(f.message_type)
        return self.scalar(f)

    @staticmethod
    def scalar(f) -> tuple[pa.DataType, Converter]:
        kind = _type_name(f)
        if kind in _SIGNED:
            return pa.int64(), _same
        if kind in _UNSIGNED_64:
            return pa.decimal128(20, 0), decimal.Decimal
        if kind in ("TYPE_DOUBLE", "TYPE_FLOAT"):
            return pa.float64(), _same
        if kind == "TYPE_BOOL":
            return pa.bool_(), _same
        if kind == "TYPE_STRING":
            return pa.string(), _same
        if kind == "TYPE_BYTES":
            return pa.binary(), _same
        if kind == "TYPE_ENUM":
            names = {v.number: v.name for v in f.enum_type.values}
            return pa.string(), lambda number: names.get(number, str(number))
        raise ValueError(f"field {f.full_name} has a type this decoder does not know ({kind})")


def _same(value):
    return value


def _presence_reader(f, convert: Converter) -> Callable[[Any], Any]:
    name = f.name
    if _is_repeated(f):
        return lambda message: convert(getattr(message, name))
    if _has_presence(f):
        return lambda message: convert(getattr(message, name)) if message.HasField(name) else None
    return lambda message: convert(getattr(message, name))


def _timestamp(message) -> datetime.datetime:
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        seconds=message.seconds, microseconds=message.nanos // 1000
    )


def _message_json(message) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(message, indent=None, preserving_proto_field_name=True)


def read_message_indexes(stream: io.BytesIO) -> list[int]:
    """The message indexes after the header: a zigzag-varint count, then the indexes; a count
    of 0 means [0] (the first message of the file)."""
    count = _zigzag(_varint(stream))
    if count == 0:
        return [0]
    if not 0 < count <= 100:
        raise ValueError(f"message index count {count} is not plausible")
    return [_zigzag(_varint(stream)) for _ in range(count)]


def _varint(stream: io.BytesIO) -> int:
    result = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise ValueError("the value ends inside the message indexes")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("a message index varint is longer than 10 bytes")


def _zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


@dataclass
class CompiledProtobuf:
    """One schema id: its file's descriptor, and per message path the class and converter.
    A schema id lands one message type (the first one its messages name); a message of
    another type of the same file is rejected, so a column never changes meaning."""

    schema_id: int
    file: Any  # FileDescriptor
    file_proto: Any  # its FileDescriptorProto
    arrow: pa.DataType | None = None
    indexes: tuple[int, ...] | None = None
    message_class: Any = None
    to_row: Converter | None = None
    types: dict = field(default_factory=dict)

    def read(self, value: bytes) -> dict:
        stream = io.BytesIO(value)
        stream.seek(HEADER_BYTES)
        indexes = tuple(read_message_indexes(stream))
        if self.indexes is None:
            self._choose(indexes)
        elif indexes != self.indexes:
            raise ValueError(
                f"message indexes {list(indexes)} name another message type than "
                f"{list(self.indexes)} ({self.message_class.DESCRIPTOR.full_name}), which this "
                "topic's files hold for the same schema id"
            )
        message = self.message_class()
        message.ParseFromString(stream.read())
        assert self.to_row is not None  # set by _choose with the message class
        return self.to_row(message)

    def _choose(self, indexes: tuple[int, ...]) -> None:
        from google.protobuf import message_factory

        descriptor: Any = None
        for depth, index in enumerate(indexes):
            if depth == 0:  # the file's messages in declaration order
                choices = [self.file.message_types_by_name[m.name] for m in self.file_proto.message_type]
            else:
                choices = list(descriptor.nested_types)
            if not 0 <= index < len(choices):
                raise ValueError(f"message index {index} is out of range: the schema has {len(choices)} there")
            descriptor = choices[index]
        arrow, to_row = ProtobufTypes().message(descriptor)
        if not pa.types.is_struct(arrow):  # a well-known type at the top: one column named value
            inner = to_row
            arrow, to_row = pa.struct([pa.field("value", arrow)]), lambda message: {"value": inner(message)}
        self.message_class = message_factory.GetMessageClass(descriptor)
        self.arrow, self.to_row, self.indexes = arrow, to_row, indexes


class ProtobufDecoder(WireDecoder):
    name, schema_type, format_key = "Protobuf", "PROTOBUF", "protobuf"
    fetch_format = "serialized"

    def compile(self, schema_id: int, registered) -> CompiledProtobuf:
        from confluent_kafka.schema_registry._sync.protobuf import _resolve_named_schema
        from confluent_kafka.schema_registry.common.protobuf import _init_pool, _str_to_proto
        from google.protobuf.descriptor_pool import DescriptorPool

        pool = DescriptorPool()
        _init_pool(pool)  # the well-known types (Timestamp, wrappers, ...) every schema may import
        self.call(
            lambda: _resolve_named_schema(registered, self.client, pool), f"the references of schema id {schema_id}"
        )
        try:
            file_proto = _str_to_proto(f"schema-{schema_id}.proto", registered.schema_str)
        except Exception as error:  # noqa: BLE001
            raise ValueError(
                "the registry did not give the schema as a serialized FileDescriptorProto "
                f"(format=serialized); .proto text cannot be compiled here ({error})"
            ) from None
        if not file_proto.name:
            file_proto.name = f"schema-{schema_id}.proto"
        pool.Add(file_proto)
        return CompiledProtobuf(schema_id, pool.FindFileByName(file_proto.name), file_proto)
