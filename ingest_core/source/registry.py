"""The Confluent wire format and the schema registry behind it, shared by the Avro, JSON
Schema and Protobuf decoders.

A message is `0x00` (magic byte), a 4-byte big-endian schema id, then the body (Protobuf
puts its message indexes first). `WireDecoder` groups a batch by schema id, fetches each
writer schema once through confluent-kafka's `SchemaRegistryClient`, has the format compile
it (`compile`) into something that reads one message into a row (`CompiledSchema`), and
merges the per-schema tables by field name, so one batch holding several schema versions
becomes one table (and one file): a field added in v2 is null in v1 rows, a removed field
is null in v2 rows, a field widened (int → long, integer → number) takes the wider type.

Errors: a message without the magic byte, with a schema id the registry does not know
(404, remembered for a minute), a schema of another format, or a body that does not match
its schema is rejected (dead-lettered with the reason). A registry that cannot be reached,
hangs past `timeout`, or answers 401/403/5xx raises `DecodeUnavailable` naming the
`decode.schema_registry` key to check: the batch is retried, nothing is dead-lettered, and
the consumer keeps running (credentials can be fixed while it waits).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import time
import uuid
from typing import Any, Protocol

import pyarrow as pa

from ingest_core.source.decoded import Decoded, DecodeUnavailable

MAGIC_BYTE = 0
HEADER_BYTES = 5
UNKNOWN_TTL = 60.0  # seconds an unknown schema id is remembered, so each batch does not ask again
REGISTRY_DEFAULTS = {"timeout": 10, "max.retries": 2, "retries.wait.ms": 200, "retries.max.wait.ms": 2000}


class Rejected(Exception):
    """Every message written with this schema id is rejected with this reason."""


class CompiledSchema(Protocol):
    arrow: pa.DataType  # struct type of one row

    def read(self, value: bytes) -> dict:
        """The row of one message (the value with its 5-byte header)."""


def http_errors() -> tuple[type[BaseException], ...]:
    try:
        from confluent_kafka.schema_registry.common._httpx_compat import httpx
    except ImportError:  # older confluent-kafka
        import httpx
    return (httpx.HTTPError, OSError, TimeoutError)


def registry_client(conf: dict):
    """confluent-kafka's client; `mock://` URLs give its in-process mock (tests)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    if str(conf.get("url", "")).startswith("mock://"):
        return SchemaRegistryClient.new_client(conf)
    return SchemaRegistryClient(conf)


def wire_format_problem(value: bytes, name: str) -> str | None:
    """Why `value` is not in the Confluent wire format, or None when its header is fine."""
    if not value:
        return f"empty value: expected {name} in the Confluent wire format"
    if len(value) < HEADER_BYTES:
        return f"not {name} in the Confluent wire format: {len(value)} bytes, shorter than the 5-byte header"
    if value[0] != MAGIC_BYTE:
        return (
            f"not {name} in the Confluent wire format: first byte is 0x{value[0]:02x}, expected the magic "
            "byte 0x00 followed by a 4-byte schema id"
        )
    return None


class WireDecoder:
    """Decodes batches of one wire format; holds the compiled schemas for the consumer's life.
    Subclasses set `name` (for reasons), `schema_type` (the registry's schemaType) and
    implement `compile(schema_id, registered)`."""

    name = "?"
    schema_type = "?"
    fetch_format: str | None = None  # the registry's `format` query parameter, when the format needs one

    def __init__(self, registry: dict, client=None):
        self._client = client
        self._registry_conf = {**REGISTRY_DEFAULTS, **registry}
        self.compiled: dict[int, CompiledSchema] = {}
        self.unknown: dict[int, tuple[float, str]] = {}  # schema id -> (when, reason)
        self.widened_columns: dict[int, dict[str, pa.DataType]] = {}  # schema id -> column -> type it lands as

    @property
    def client(self):
        if self._client is None:
            self._client = registry_client(self._registry_conf)
        return self._client

    def compile(self, schema_id: int, registered) -> CompiledSchema:
        raise NotImplementedError

    def body_problem(self, schema_id: int, error: Exception) -> str:
        return f"invalid {self.name} body for schema id {schema_id}: {type(error).__name__}: {str(error)[:200]}"

    def decode(self, values: list[bytes | None]) -> Decoded:
        rejects: dict[int, str] = {}
        groups: dict[int, list[int]] = {}
        empty_rows: list[int] = []
        for index, value in enumerate(values):
            if value is None:
                empty_rows.append(index)  # a tombstone landed as a row (decode.tombstones: row)
            elif (problem := wire_format_problem(value, self.name)) is not None:
                rejects[index] = problem
            else:
                groups.setdefault(int.from_bytes(value[1:HEADER_BYTES], "big"), []).append(index)
        parts: list[tuple[list[int], pa.Table]] = []
        widened = 0
        for schema_id, indices in groups.items():
            try:
                compiled = self.schema(schema_id)
            except Rejected as error:
                rejects.update((i, str(error)) for i in indices)
                continue
            rows, good = [], []
            for index in indices:
                try:
                    rows.append(compiled.read(values[index]))  # type: ignore[arg-type]  # None went to empty_rows
                    good.append(index)
                except Exception as error:  # noqa: BLE001 - any failure to read a body is that message's fault
                    rejects[index] = self.body_problem(schema_id, error)
            if good:
                table, extra = self.to_table(rows, compiled)
                for name, wide in self.widened_columns.get(schema_id, {}).items():
                    if name in table.column_names:
                        table = table.set_column(table.column_names.index(name), name, table.column(name).cast(wide))
                widened += extra
                parts.append((good, table))
        if empty_rows:
            parts.append((empty_rows, pa.table({"_": pa.nulls(len(empty_rows))}).drop_columns(["_"])))
        table, kept, merged = combine(parts)
        return Decoded(table, kept, rejects, widened + merged)

    def to_table(self, rows: list[dict], compiled: CompiledSchema) -> tuple[pa.Table, int]:
        """One schema's rows as a table, and how many values were written as text to keep them."""
        return pa.Table.from_struct_array(pa.array(rows, type=compiled.arrow)), 0

    def schema(self, schema_id: int) -> CompiledSchema:
        compiled = self.compiled.get(schema_id)
        if compiled is not None:
            return compiled
        remembered = self.unknown.get(schema_id)
        if remembered is not None and time.monotonic() - remembered[0] < UNKNOWN_TTL:
            raise Rejected(remembered[1])
        try:
            registered = self.fetch(schema_id)
            kind = (registered.schema_type or "AVRO").upper()
            if kind != self.schema_type:
                raise Rejected(
                    f"schema id {schema_id} is a {kind} schema; decode.format {self.format_key} "
                    f"reads {self.schema_type} schemas only"
                )
            try:
                compiled = self.compile(schema_id, registered)
            except DecodeUnavailable:
                raise
            except Exception as error:  # noqa: BLE001 - a schema we cannot use rejects its messages
                raise Rejected(
                    f"schema id {schema_id} cannot be used: {type(error).__name__}: {str(error)[:200]}"
                ) from None
        except Rejected as error:
            self.unknown[schema_id] = (time.monotonic(), str(error))
            raise
        self.widened_columns[schema_id] = self._widened_columns(schema_id, compiled)
        self.compiled[schema_id] = compiled
        return compiled

    def _subjects_of(self, schema_id: int) -> list[str]:
        client = self.client
        if type(client).__name__.startswith("Mock"):  # confluent-kafka's mock:// has no GET /schemas/ids/{id}/versions
            return [
                subject
                for subject in client.get_subjects()
                for version in client.get_versions(subject)
                if client.get_version(subject, version).schema_id == schema_id
            ]
        return list(dict.fromkeys(pair.subject for pair in client.get_schema_versions(schema_id)))

    def _widened_columns(self, schema_id: int, compiled: CompiledSchema) -> dict[str, pa.DataType]:
        """Top-level integer columns that another version of the same subject declares as a
        floating-point number (Avro int → double, JSON Schema integer → number): they land as
        float64 in every file, because Spark's mergeSchema cannot merge bigint with double.
        Only versions registered by the time the schema id is first seen count; a registry
        that cannot list versions (404, 501) leaves the types as declared."""
        arrow = getattr(compiled, "arrow", None)
        if arrow is None or not pa.types.is_struct(arrow):
            return {}
        integers = {arrow.field(i).name for i in range(arrow.num_fields) if pa.types.is_integer(arrow.field(i).type)}
        if not integers:
            return {}
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            widened: dict[str, pa.DataType] = {}
            for subject in self._subjects_of(schema_id):
                for version in self.client.get_versions(subject):
                    registered = self.client.get_version(subject, version)
                    if registered.schema_id == schema_id:
                        continue
                    other = self.compiled.get(registered.schema_id) or self.compile(
                        registered.schema_id, registered.schema
                    )
                    other_arrow = getattr(other, "arrow", None)
                    for name in integers:
                        if (
                            other_arrow is not None
                            and other_arrow.get_field_index(name) >= 0
                            and pa.types.is_floating(other_arrow.field(name).type)
                        ):
                            widened[name] = pa.float64()
            return widened
        except http_errors() as error:
            raise DecodeUnavailable(
                f"cannot reach the schema registry at {self._registry_conf.get('url')} (decode.schema_registry.url) "
                f"while listing the versions of schema id {schema_id}: {type(error).__name__}: {error}; retrying"
            ) from None
        except SchemaRegistryError as error:
            if error.http_status_code in (404, 501):
                return {}
            raise DecodeUnavailable(
                f"the schema registry at {self._registry_conf.get('url')} "
                f"(decode.schema_registry.url) answered {error.http_status_code} while listing "
                f"the versions of schema id {schema_id}: {error.error_message}; retrying"
            ) from None
        except Exception:  # noqa: BLE001 - a version we cannot compile or a client without the call: as declared
            return {}

    format_key = "?"  # the value of decode.format for this decoder

    def fetch(self, schema_id: int):
        """The registered schema of `schema_id`; `Rejected` when the registry has none."""
        return self.call(lambda: self.client.get_schema(schema_id, fmt=self.fetch_format), f"schema id {schema_id}")

    def call(self, ask, what: str):
        """`ask()` against the registry, its failures turned into `Rejected` (404) or
        `DecodeUnavailable` (anything that waiting or a fix of the settings can cure)."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        url = self._registry_conf.get("url")
        try:
            return ask()
        except SchemaRegistryError as error:
            status = error.http_status_code
            if status == 404:
                noun = f"unknown {what}" if what.startswith("schema id") else f"{what} not found"
                raise Rejected(
                    f"{noun}: the schema registry has no such schema ({error.error_code}: {error.error_message})"
                ) from None
            if status in (401, 403):
                raise DecodeUnavailable(
                    f"the schema registry at {url} refused us ({status}: {error.error_message}) while fetching {what}. "
                    "Fix: check the credentials in decode.schema_registry (basic.auth.user.info, "
                    "bearer.auth.*); retrying meanwhile"
                ) from None
            raise DecodeUnavailable(
                f"the schema registry at {url} (decode.schema_registry.url) answered {status} "
                f"while fetching {what}: {error.error_message}; retrying"
            ) from None
        except http_errors() as error:
            raise DecodeUnavailable(
                f"cannot reach the schema registry at {url} (decode.schema_registry.url; timeout "
                f"{self._registry_conf.get('timeout')} s in decode.schema_registry.timeout) while fetching {what}: "
                f"{type(error).__name__}: {error}; retrying"
            ) from None


def combine(parts: list[tuple[list[int], pa.Table]]) -> tuple[pa.Table, list[int], int]:
    """One table in batch order from per-schema tables; fields merged by name."""
    if not parts:
        return pa.table({}), [], 0
    if len(parts) == 1:
        return parts[0][1], parts[0][0], 0
    tables = [t for _, t in parts]
    widened = 0
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
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
            text = pa.array(
                [None if v is None else v if isinstance(v, str) else json_text(v) for v in values], pa.string()
            )
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


def json_text(value: Any) -> str:
    """Compact JSON text of a decoded value (bytes as base64, dates as ISO 8601)."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)
