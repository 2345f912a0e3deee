"""Avro in the Confluent wire format: schema lookup, decoding, and Avro → Arrow types.

A message is `0x00` (magic byte), a 4-byte big-endian schema id, then the Avro binary
body written with that schema. registry.py groups a batch by schema id, fetches each
writer schema once and merges the schema versions by field name; here each schema is
compiled once into a fastavro schema, an Arrow type and a converter, messages are read
with fastavro's `schemaless_reader` and each group becomes Arrow columns in one call.

Types, chosen so a column keeps one type across schema versions and files (Spark's
`mergeSchema` refuses int vs bigint): int and long → int64, float and double → float64,
enum → string, fixed and bytes → binary, array → list, map → map<string, ...>, record →
struct, a nullable union → its type, any other union → struct<member0, member1, ...>
(Spark's own Avro convention) with one member set. Logical types: timestamp-millis and
-micros → timestamp(us, UTC); local-timestamp-* → timestamp(us) without zone; date → date;
decimal → decimal(p, s) (string beyond 38 digits); uuid → string; time-millis and
-micros → int64 (ms, us: Spark has no TIME in Parquet); anything else → its base type.
A record type that contains itself is written as JSON text below its first level.

Errors (registry.py): a message without the magic byte, with a schema id the registry does
not know (404), or whose body does not match its schema is rejected (dead-lettered); a
registry that cannot be reached, hangs, or answers 401/403/5xx raises `DecodeUnavailable`
so the batch is retried.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
import pyarrow as pa

from ingest_core.source.registry import MAGIC_BYTE, WireDecoder  # noqa: F401 - MAGIC_BYTE is part of this module's story
from ingest_core.source.registry import json_text as _json_text

Converter = Callable[[Any], Any] | None


@dataclass
class CompiledSchema:
    schema_id: int
    parsed: Any  # fastavro's parsed schema
    arrow: pa.DataType  # struct type of a row
    convert: Converter  # applied to each decoded record before Arrow takes it
    wrap: bool  # top-level schema is not a record: the row is {"value": datum}

    def read(self, value: bytes) -> Any:
        """The row of one message (header included: BytesIO shares the bytes, a slice would copy)."""
        stream = io.BytesIO(value)
        stream.seek(5)
        datum = fastavro.schemaless_reader(stream, self.parsed, None, return_named_type=True)
        if self.convert is not None:
            datum = self.convert(datum)
        return {"value": datum} if self.wrap else datum


class AvroDecoder(WireDecoder):
    name, schema_type, format_key = "Avro", "AVRO", "avro"

    def compile(self, schema_id: int, registered) -> CompiledSchema:
        parsed_named: dict[str, Any] = {}
        named: dict[str, Any] = {}
        self._references(registered.references or [], parsed_named, named)
        definition = json.loads(registered.schema_str)
        parsed = fastavro.parse_schema(definition, named_schemas=parsed_named)
        arrow, convert = AvroTypes(named).convert(definition)
        wrap = not pa.types.is_struct(arrow)
        if wrap:
            arrow = pa.struct([pa.field("value", arrow)])
        return CompiledSchema(schema_id, parsed, arrow, convert, wrap)

    def _references(self, references, parsed_named: dict[str, Any], named: dict[str, Any]) -> None:
        """Named types from schema references, resolved depth first: fastavro's parsed forms
        in `parsed_named`, the definitions by full name in `named`."""
        for reference in references:
            version = self.call(
                lambda reference=reference: self.client.get_version(reference.subject, reference.version),
                f"reference {reference.subject} version {reference.version}",
            )
            self._references(version.schema.references or [], parsed_named, named)
            definition = json.loads(version.schema.schema_str)
            fastavro.parse_schema(definition, named_schemas=parsed_named)
            AvroTypes.collect_names(definition, named)


_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int64(),
    "long": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}


def _time_ms(value):
    if isinstance(value, datetime.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000
    return value


def _time_us(value):
    if isinstance(value, datetime.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    return value


def _text(value):
    return None if value is None else str(value)


class AvroTypes:
    """Avro schema (parsed JSON) → (Arrow type, converter). A converter of None means the
    values fastavro returns are what Arrow takes, so most schemas cost no Python per row."""

    def __init__(self, named: dict[str, Any] | None = None):
        self.named: dict[str, Any] = dict(named or {})  # full name -> definition
        self.open: set[str] = set()  # records being converted (a record inside itself recurses)

    @staticmethod
    def collect_names(schema, names: dict[str, Any], namespace: str = "") -> None:
        if isinstance(schema, list):
            for branch in schema:
                AvroTypes.collect_names(branch, names, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                full = _full_name(schema["name"], schema.get("namespace", namespace))
                names[full] = schema
                namespace = full.rpartition(".")[0]
                for f in schema.get("fields", []):
                    AvroTypes.collect_names(f["type"], names, namespace)
            elif kind == "array":
                AvroTypes.collect_names(schema["items"], names, namespace)
            elif kind == "map":
                AvroTypes.collect_names(schema["values"], names, namespace)
            elif isinstance(kind, (dict, list)):
                AvroTypes.collect_names(kind, names, namespace)

    def convert(self, schema, namespace: str = "") -> tuple[pa.DataType, Converter]:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema], None
            full = _full_name(schema, namespace)
            definition = self.named.get(full) or self.named.get(schema)
            if definition is None:
                raise ValueError(f"unknown Avro type {schema!r}")
            if full in self.open:
                return pa.string(), lambda v: None if v is None else _json_text(v[1] if isinstance(v, tuple) else v)
            return self.convert(definition, full.rpartition(".")[0])
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            result = self._logical(schema, kind, logical)
            if result is not None:
                return result
        if isinstance(kind, (dict, list)) or (
            isinstance(kind, str) and kind not in ("record", "error", "enum", "fixed", "array", "map")
        ):
            return self.convert(kind, namespace)
        if kind in ("record", "error"):
            return self._record(schema, namespace)
        if kind == "enum":
            self.named[_full_name(schema["name"], schema.get("namespace", namespace))] = schema
            return pa.string(), None
        if kind == "fixed":
            self.named[_full_name(schema["name"], schema.get("namespace", namespace))] = schema
            return pa.binary(), None
        if kind == "array":
            item, convert = self.convert(schema["items"], namespace)
            return pa.list_(item), (
                None if convert is None else lambda v: None if v is None else [convert(x) for x in v]  # type: ignore[misc]
            )
        item, convert = self.convert(schema["values"], namespace)
        return pa.map_(pa.string(), item), (
            None if convert is None else lambda v: None if v is None else {k: convert(x) for k, x in v.items()}
        )

    def _record(self, schema, namespace: str) -> tuple[pa.DataType, Converter]:
        full = _full_name(schema["name"], schema.get("namespace", namespace))
        self.named[full] = schema
        inner_namespace = full.rpartition(".")[0]
        self.open.add(full)
        try:
            fields, converters = [], {}
            for f in schema["fields"]:
                arrow, convert = self.convert(f["type"], inner_namespace)
                fields.append(pa.field(f["name"], arrow))
                if convert is not None:
                    converters[f["name"]] = convert
        finally:
            self.open.discard(full)
        if not converters:
            return pa.struct(fields), None
        items = list(converters.items())

        def convert_record(value):
            if value is None:
                return None
            value = dict(value)
            for name, convert in items:
                value[name] = convert(value.get(name))
            return value

        return pa.struct(fields), convert_record

    def _logical(self, schema, kind, logical) -> tuple[pa.DataType, Converter] | None:
        if kind == "int" and logical == "date":
            return pa.date32(), None
        if kind == "int" and logical == "time-millis":
            return pa.int64(), _time_ms
        if kind == "long" and logical == "time-micros":
            return pa.int64(), _time_us
        if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            return pa.timestamp("us", tz="UTC"), None
        if kind == "long" and logical in ("local-timestamp-millis", "local-timestamp-micros"):
            return pa.timestamp("us"), None
        if logical == "decimal" and kind in ("bytes", "fixed"):
            if kind == "fixed":
                self.named[_full_name(schema["name"], schema.get("namespace", ""))] = schema
            precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
            if precision <= 38:
                return pa.decimal128(precision, scale), None
            return pa.string(), _text
        if kind == "string" and logical == "uuid":
            return pa.string(), _text
        return None

    def _union(self, branches, namespace: str) -> tuple[pa.DataType, Converter]:
        present = [b for b in branches if b != "null" and not (isinstance(b, dict) and b.get("type") == "null")]
        if not present:
            return pa.null(), None
        converted = [self.convert(b, namespace) for b in present]
        if len(present) == 1:
            arrow, inner = converted[0]
            if inner is None and _branch_kind(present[0], self.named, namespace)[0] not in (
                "record",
                "error",
                "enum",
                "fixed",
            ):
                return arrow, None  # fastavro returns the value itself: nothing to do per row

            def unwrap(value):
                if isinstance(value, tuple):  # fastavro names the branch of a named type
                    value = value[1]
                return value if inner is None or value is None else inner(value)

            return arrow, unwrap
        fields = [pa.field(f"member{i}", arrow) for i, (arrow, _) in enumerate(converted)]
        pick = _BranchPicker(present, [c for _, c in converted], namespace, self.named)
        return pa.struct(fields), pick


class _BranchPicker:
    """A general union's value as struct<member0, member1, ...> with its branch's member set."""

    def __init__(self, branches, converters, namespace: str, named: dict[str, Any]):
        self.names = [f"member{i}" for i in range(len(branches))]
        self.converters = converters
        self.by_name: dict[str, int] = {}
        self.by_kind: dict[str, int] = {}
        for position, branch in enumerate(branches):
            kind, logical = _branch_kind(branch, named, namespace)
            if kind in ("record", "error", "enum", "fixed"):
                definition = branch if isinstance(branch, dict) else named.get(_full_name(branch, namespace), {})
                name = definition.get("name", branch if isinstance(branch, str) else "")
                self.by_name[_full_name(name, definition.get("namespace", namespace))] = position
                self.by_name[name.rpartition(".")[2]] = position
            self.by_kind.setdefault(logical or kind, position)

    def __call__(self, value):
        if value is None:
            return None
        if isinstance(value, tuple):
            name, value = value
            position = self.by_name.get(name, self.by_name.get(str(name).rpartition(".")[2]))
        else:
            position = self._position_of(value)
        row = dict.fromkeys(self.names)
        if position is not None:
            convert = self.converters[position]
            row[self.names[position]] = value if convert is None else convert(value)
        return row

    def _position_of(self, value):
        kinds = self.by_kind
        if isinstance(value, bool):
            candidates = ("boolean",)
        elif isinstance(value, int):
            candidates = ("long", "int", "time-micros", "time-millis", "timestamp-millis", "timestamp-micros")
        elif isinstance(value, float):
            candidates = ("double", "float")
        elif isinstance(value, str):
            candidates = ("string", "uuid", "enum")
        elif isinstance(value, (bytes, bytearray)):
            candidates = ("bytes", "fixed")
        elif isinstance(value, decimal.Decimal):
            candidates = ("decimal",)
        elif isinstance(value, datetime.datetime):
            candidates = ("timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros")
        elif isinstance(value, datetime.date):
            candidates = ("date",)
        elif isinstance(value, datetime.time):
            candidates = ("time-millis", "time-micros")
        elif isinstance(value, uuid.UUID):
            candidates = ("uuid",)
        elif isinstance(value, dict):
            candidates = ("map", "record")
        elif isinstance(value, list):
            candidates = ("array",)
        else:
            candidates = ()
        for kind in candidates:
            if kind in kinds:
                return kinds[kind]
        return None


def _branch_kind(branch, named: dict[str, Any], namespace: str) -> tuple[str, str | None]:
    if isinstance(branch, str):
        if branch in _PRIMITIVES:
            return branch, None
        definition = named.get(_full_name(branch, namespace)) or named.get(branch) or {}
        return definition.get("type", "record"), definition.get("logicalType")
    kind = branch.get("type")
    if isinstance(kind, (dict, list)):
        return _branch_kind(kind, named, namespace)
    return kind, branch.get("logicalType")


def _full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"
