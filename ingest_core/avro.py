"""Avro in the Confluent wire format: schema lookup, decoding, and Avro → Arrow types.

A message is `0x00` (magic byte), a 4-byte big-endian schema id, then the Avro binary
body written with that schema. A batch is grouped by schema id; each id's writer schema
is fetched once through confluent-kafka's `SchemaRegistryClient` (which caches it) and
compiled once here into a fastavro schema, an Arrow type and a converter; messages are
read with fastavro's `schemaless_reader` and each group becomes Arrow columns in one call.
Groups written with different schema versions are merged by field name (a field added
in v2 is null in v1 rows, a removed field is null in v2 rows).

Types, chosen so a column keeps one type across schema versions and files (Spark's
`mergeSchema` refuses int vs bigint): int and long → int64, float and double → float64,
enum → string, fixed and bytes → binary, array → list, map → map<string, ...>, record →
struct, a nullable union → its type, any other union → struct<member0, member1, ...>
(Spark's own Avro convention) with one member set. Logical types: timestamp-millis and
-micros → timestamp(us, UTC); local-timestamp-* → timestamp(us) without zone; date → date;
decimal → decimal(p, s) (string beyond 38 digits); uuid → string; time-millis and
-micros → int64 (ms, us: Spark has no TIME in Parquet); anything else → its base type.
A record type that contains itself is written as JSON text below its first level.

Errors: a message without the magic byte, with a schema id the registry does not know
(404), or whose body does not match its schema is rejected (dead-lettered); a registry
that cannot be reached or answers 5xx raises `DecodeUnavailable` so the batch is retried.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import fastavro
import pyarrow as pa

from .decode import Decoded, DecodeUnavailable

MAGIC_BYTE = 0
_UNKNOWN_TTL = 60.0  # seconds an unknown schema id is remembered, so each batch does not ask again

Converter = Callable[[Any], Any] | None


class _Rejected(Exception):
    """Every message written with this schema id is rejected with this reason."""


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


def _http_errors() -> tuple[type[BaseException], ...]:
    try:
        from confluent_kafka.schema_registry.common._httpx_compat import httpx
    except ImportError:  # older confluent-kafka
        import httpx
    return (httpx.HTTPError, OSError, TimeoutError)


class AvroDecoder:
    def __init__(self, registry: dict, client=None):
        self._client = client
        self._registry_conf = {"timeout": 10, "max.retries": 2, "retries.wait.ms": 200,
                               "retries.max.wait.ms": 2000, **registry}
        self.compiled: dict[int, CompiledSchema] = {}
        self.unknown: dict[int, tuple[float, str]] = {}  # schema id -> (when, reason)

    @property
    def client(self):
        if self._client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            self._client = SchemaRegistryClient(self._registry_conf)
        return self._client

    def decode(self, values: list[bytes | None]) -> Decoded:
        rejects: dict[int, str] = {}
        groups: dict[int, list[int]] = {}
        empty_rows: list[int] = []
        for index, value in enumerate(values):
            if value is None:
                empty_rows.append(index)  # a tombstone landed as a row (decode.tombstones: row)
            elif len(value) < 5 or value[0] != MAGIC_BYTE:
                rejects[index] = _wire_format_problem(value)
            else:
                groups.setdefault(int.from_bytes(value[1:5], "big"), []).append(index)
        parts: list[tuple[list[int], pa.Table]] = []
        for schema_id, indices in groups.items():
            try:
                compiled = self.schema(schema_id)
            except _Rejected as error:
                rejects.update((i, str(error)) for i in indices)
                continue
            rows, good = [], []
            for index in indices:
                try:
                    rows.append(compiled.read(values[index]))
                    good.append(index)
                except Exception as error:  # noqa: BLE001 - any failure to read a body is that message's fault
                    rejects[index] = f"invalid Avro body for schema id {schema_id}: {type(error).__name__}: {str(error)[:200]}"
            if good:
                parts.append((good, pa.Table.from_struct_array(pa.array(rows, type=compiled.arrow))))
        if empty_rows:
            parts.append((empty_rows, pa.table({"_": pa.nulls(len(empty_rows))}).drop_columns(["_"])))
        table, kept, widened = _combine(parts)
        return Decoded(table, kept, rejects, widened)

    def schema(self, schema_id: int) -> CompiledSchema:
        compiled = self.compiled.get(schema_id)
        if compiled is not None:
            return compiled
        remembered = self.unknown.get(schema_id)
        if remembered is not None and time.monotonic() - remembered[0] < _UNKNOWN_TTL:
            raise _Rejected(remembered[1])
        try:
            compiled = self._fetch(schema_id)
        except _Rejected as error:
            self.unknown[schema_id] = (time.monotonic(), str(error))
            raise
        self.compiled[schema_id] = compiled
        return compiled

    def _fetch(self, schema_id: int) -> CompiledSchema:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        url = self._registry_conf.get("url")
        try:
            registered = self.client.get_schema(schema_id)
            parsed_named: dict[str, Any] = {}
            named: dict[str, Any] = {}
            self._references(registered.references or [], parsed_named, named)
        except SchemaRegistryError as error:
            status = error.http_status_code
            if status == 404:
                raise _Rejected(f"unknown schema id {schema_id}: the schema registry has no such schema "
                                f"({error.error_code}: {error.error_message})") from None
            if status in (401, 403):
                raise DecodeUnavailable(f"the schema registry at {url} refused us ({status}: {error.error_message}). "
                                        "Fix: check decode.schema_registry credentials", permanent=True) from None
            raise DecodeUnavailable(f"the schema registry at {url} answered {status}: {error.error_message}") from None
        except _http_errors() as error:
            raise DecodeUnavailable(f"cannot reach the schema registry at {url}: {type(error).__name__}: {error}") from None
        kind = (registered.schema_type or "AVRO").upper()
        if kind != "AVRO":
            raise _Rejected(f"schema id {schema_id} is a {kind} schema; decode.format avro reads Avro only")
        try:
            definition = json.loads(registered.schema_str)
            parsed = fastavro.parse_schema(definition, named_schemas=parsed_named)
            arrow, convert = AvroTypes(named).convert(definition)
        except Exception as error:  # noqa: BLE001 - a schema we cannot use rejects its messages
            raise _Rejected(f"schema id {schema_id} cannot be used: {type(error).__name__}: {str(error)[:200]}") from None
        wrap = not pa.types.is_struct(arrow)
        if wrap:
            arrow, convert = pa.struct([pa.field("value", arrow)]), convert
        return CompiledSchema(schema_id, parsed, arrow, convert, wrap)

    def _references(self, references, parsed_named: dict[str, Any], named: dict[str, Any]) -> None:
        """Named types from schema references, resolved depth first: fastavro's parsed forms
        in `parsed_named`, the definitions by full name in `named`."""
        for reference in references:
            version = self.client.get_version(reference.subject, reference.version)
            self._references(version.schema.references or [], parsed_named, named)
            definition = json.loads(version.schema.schema_str)
            fastavro.parse_schema(definition, named_schemas=parsed_named)
            AvroTypes.collect_names(definition, named)


def _wire_format_problem(value: bytes) -> str:
    if not value:
        return "empty value: expected Avro in the Confluent wire format"
    if len(value) < 5:
        return f"not Avro in the Confluent wire format: {len(value)} bytes, shorter than the 5-byte header"
    return (f"not Avro in the Confluent wire format: first byte is 0x{value[0]:02x}, expected the magic byte 0x00 "
            "followed by a 4-byte schema id")


def _combine(parts: list[tuple[list[int], pa.Table]]) -> tuple[pa.Table, list[int], int]:
    """One table in batch order from per-schema tables; fields merged by name."""
    if not parts:
        return pa.table({}), [], 0
    if len(parts) == 1:
        return parts[0][1], parts[0][0], 0
    tables = [t for _, t in parts]
    widened = 0
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        tables, widened = _conflicts_as_text(tables)
        table = pa.concat_tables(tables, promote_options="permissive")
    order = [i for indices, _ in parts for i in indices]
    positions = sorted(range(len(order)), key=order.__getitem__)
    return table.take(pa.array(positions, pa.int64())), sorted(order), widened


def _conflicts_as_text(tables: list[pa.Table]) -> tuple[list[pa.Table], int]:
    """Top-level columns whose types disagree between schema versions become JSON text."""
    types: dict[str, set] = {}
    for table in tables:
        for f in table.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    conflicting = {name for name, seen in types.items() if len(seen) > 1}
    widened = 0
    result = []
    for table in tables:
        for name in conflicting & set(table.column_names):
            values = table.column(name).to_pylist(maps_as_pydicts="lossy")
            widened += sum(v is not None and not isinstance(v, str) for v in values)
            text = pa.array([None if v is None else v if isinstance(v, str) else _json_text(v) for v in values], pa.string())
            table = table.set_column(table.column_names.index(name), name, text)
        result.append(table)
    return result, widened


def _json_default(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(type(value).__name__)


def _json_text(value) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(), "boolean": pa.bool_(), "int": pa.int64(), "long": pa.int64(),
    "float": pa.float64(), "double": pa.float64(), "bytes": pa.binary(), "string": pa.string(),
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
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in ("record", "error", "enum", "fixed", "array", "map")):
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
            return pa.list_(item), (None if convert is None else lambda v: None if v is None else [convert(x) for x in v])
        item, convert = self.convert(schema["values"], namespace)
        return pa.map_(pa.string(), item), (
            None if convert is None else lambda v: None if v is None else {k: convert(x) for k, x in v.items()})

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
            if inner is None and _branch_kind(present[0], self.named, namespace)[0] not in ("record", "error", "enum", "fixed"):
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
