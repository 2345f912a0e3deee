"""JSON Schema in the Confluent wire format: validation, and JSON Schema → Arrow types.

A message is `0x00`, a 4-byte schema id, then the JSON text of one value. Each schema id's
schema is fetched once (registry.py) and compiled into a `jsonschema` validator and an
Arrow type taken from the schema, not from the values, so a column keeps one type in every
file whatever the values of a batch happen to be (a `number` that is whole in one batch
is still a double). A message that is not valid JSON, or that its own schema rejects, is
dead-lettered with the validator's reason, as confluent-kafka's JSONDeserializer would
(drafts 4-7 validated by fastjsonschema's compiled code, later drafts by jsonschema).

Types: integer → int64, number → float64, string → string, boolean → bool, array →
list of its `items`, object with `properties` → struct of the declared properties, object
with only `additionalProperties: {schema}` → map<string, ...>; a type list with null →
the other type; anything else (no `type`, several types, `oneOf`/`anyOf`, `{}`, a `$ref`
that contains itself) → the value's compact JSON text. Local `$ref`s (`#/definitions/x`,
`#/$defs/x`) are followed. Keys a message has that its schema does not declare: at the top
level they land as columns of their own holding their JSON text; below it, where no
column can take them, the message is dead-lettered with the field named (nothing is
silently dropped). Schema references to other subjects are not followed yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ingest_core.arrow.schema import INT64_MAX, INT64_MIN
from ingest_core.source.registry import HEADER_BYTES, WireDecoder, json_text

Converter = Callable[[Any], Any]


class Undeclared(ValueError):
    """A key below the top level that the schema does not declare."""


class JsonSchemaTypes:
    """A JSON Schema (parsed) → (Arrow type, converter of one value)."""

    def __init__(self, root: dict):
        self.root = root
        self.open: set[str] = set()  # $refs being followed (a definition inside itself recurses)

    def convert(self, schema: Any, path: str) -> tuple[pa.DataType, Converter]:
        if not isinstance(schema, dict):
            return pa.string(), _as_text  # true / false / anything unusual
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in self.open or not ref.startswith("#/"):
                return pa.string(), _as_text
            self.open.add(ref)
            try:
                return self.convert(self._resolve(ref), path)
            finally:
                self.open.discard(ref)
        kind = schema.get("type")
        if isinstance(kind, list):
            present = [k for k in kind if k != "null"]
            kind = present[0] if len(present) == 1 else None
        if kind == "integer":
            return pa.int64(), _integer
        if kind == "number":
            return pa.float64(), _number
        if kind == "boolean":
            return pa.bool_(), _same
        if kind == "string":
            return pa.string(), _same
        if kind == "array" and isinstance(schema.get("items"), dict):
            item, convert = self.convert(schema["items"], path + "[]")
            return pa.list_(item), lambda values: [None if v is None else convert(v) for v in values]
        if kind == "object" and isinstance(schema.get("properties"), dict):
            return self._object(schema["properties"], path)
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            value, convert = self.convert(schema["additionalProperties"], path + "{}")
            return pa.map_(pa.string(), value), lambda values: [
                (k, None if v is None else convert(v)) for k, v in values.items()
            ]
        return pa.string(), _as_text

    def _object(self, properties: dict, path: str) -> tuple[pa.DataType, Converter]:
        fields, converters = [], []
        for name, definition in properties.items():
            arrow, convert = self.convert(definition, f"{path}.{name}" if path else name)
            fields.append(pa.field(name, arrow))
            converters.append((name, convert))
        declared = set(properties)

        def to_struct(value: dict) -> dict:
            extra = value.keys() - declared
            if extra and path:
                raise Undeclared(
                    f"{path}.{sorted(extra)[0]} is not declared by the schema, and below the top "
                    "level no column can hold it"
                )
            return {name: None if (v := value.get(name)) is None else convert(v) for name, convert in converters}

        return pa.struct(fields), to_struct

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def _same(value):
    return value


def _as_text(value) -> str:
    return value if isinstance(value, str) else json_text(value)


def _integer(value) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"integer {value} is beyond int64")
    return value


def _number(value) -> float:
    return float(value)


_FAST_DRAFTS = (
    "",
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
)


def _no_remote(uri: str):
    raise ValueError(f"remote $ref {uri} is not fetched")


def validator_of(schema: Any) -> Callable[[Any], None]:
    """A function that raises ValueError (with where and why) for a document `schema` rejects.
    Drafts 4 to 7 are compiled to Python by fastjsonschema (ten times jsonschema's speed on
    small objects); later drafts, whose keywords it does not know, go to jsonschema."""
    import jsonschema

    jsonschema.validators.validator_for(schema).check_schema(schema)
    draft = schema.get("$schema", "").rstrip("#") if isinstance(schema, dict) else ""
    if draft in _FAST_DRAFTS:
        import fastjsonschema

        fast = fastjsonschema.compile(schema, handlers={"http": _no_remote, "https": _no_remote}, use_default=False)

        def validate_fast(document):
            try:
                fast(document)
            except fastjsonschema.JsonSchemaValueException as error:
                where = error.name.removeprefix("data").lstrip(".") or "(the value)"
                raise ValueError(f"does not match its schema at {where}: {error.message[:200]}") from None

        return validate_fast
    slow = jsonschema.validators.validator_for(schema)(schema)

    def validate(document):
        error = next(iter(slow.iter_errors(document)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(the value)"
            raise ValueError(f"does not match its schema at {where}: {error.message[:200]}")

    return validate


@dataclass
class CompiledJsonSchema:
    schema_id: int
    validate: Callable[[Any], None]  # raises ValueError for a document its schema rejects
    arrow: pa.DataType  # struct of the declared top-level properties
    to_row: Converter
    declared: frozenset[str]

    def read(self, value: bytes) -> dict:
        document = json.loads(value[HEADER_BYTES:])
        self.validate(document)
        if not isinstance(document, dict):
            return {"value": self.to_row(document)}
        return self.to_row(document) | {k: v for k, v in document.items() if k not in self.declared}


class JsonSchemaDecoder(WireDecoder):
    name, schema_type, format_key = "JSON Schema", "JSON", "json_schema"

    def compile(self, schema_id: int, registered) -> CompiledJsonSchema:
        if registered.references:
            raise ValueError("schema references to other subjects are not supported yet")
        schema = json.loads(registered.schema_str)
        validate = validator_of(schema)
        arrow, to_row = JsonSchemaTypes(schema if isinstance(schema, dict) else {}).convert(schema, "")
        if pa.types.is_struct(arrow):
            declared = frozenset(arrow.field(i).name for i in range(arrow.num_fields))
        else:  # not an object: the row is {"value": ...}
            arrow, declared = pa.struct([pa.field("value", arrow)]), frozenset({"value"})
        return CompiledJsonSchema(schema_id, validate, arrow, to_row, declared)

    def to_table(self, rows: list[dict], compiled) -> tuple[pa.Table, int]:
        """Declared fields typed by the schema; undeclared top-level keys as JSON text columns."""
        table = pa.Table.from_struct_array(pa.array(rows, type=compiled.arrow))
        extra_names: dict[str, None] = {}
        for row in rows:
            if len(row) > len(compiled.declared):
                extra_names.update(dict.fromkeys(k for k in row if k not in compiled.declared))
        widened = 0
        for name in extra_names:
            values = [row.get(name) for row in rows]
            widened += sum(v is not None and not isinstance(v, str) for v in values)
            table = table.append_column(
                name, pa.array([None if v is None else _as_text(v) for v in values], pa.string())
            )
        return table, widened

    def body_problem(self, schema_id: int, error: Exception) -> str:
        if isinstance(error, json.JSONDecodeError):
            return f"invalid JSON body for schema id {schema_id}: {error}"
        return f"invalid JSON Schema body for schema id {schema_id}: {str(error)[:300]}"
