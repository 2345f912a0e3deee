"""json_schema.py: JSON Schema → Arrow types, validation, and keys a schema does not declare."""
from __future__ import annotations

import json

import pyarrow as pa
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from ingest_core.source.decode import Decoder
from ingest_core.source.json_schema import JsonSchemaTypes

CONTEXT = SerializationContext("events", MessageField.VALUE)

RICH = {
    "type": "object",
    "definitions": {"Point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}},
                    "Tree": {"type": "object",
                             "properties": {"kids": {"type": "array", "items": {"$ref": "#/definitions/Tree"}}}}},
    "properties": {
        "id": {"type": "integer"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "where": {"$ref": "#/definitions/Point"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "maybe": {"type": ["null", "string"]},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "anything": {},
        "tree": {"$ref": "#/definitions/Tree"},
    },
}


def setup(schema: dict):
    client = SchemaRegistryClient.new_client({"url": "mock://json-schema-tests"})
    serialize = JSONSerializer(json.dumps(schema), client, conf={"validate": False})
    decoder = Decoder("json_schema", schema_registry={"url": "mock://json-schema-tests"}, registry_client=client)
    return (lambda value: serialize(value, CONTEXT)), decoder


def test_types_come_from_the_schema_not_from_the_values():
    arrow, _ = JsonSchemaTypes(RICH).convert(RICH, "")
    types = {arrow.field(i).name: arrow.field(i).type for i in range(arrow.num_fields)}
    assert types["id"] == pa.int64() and types["ok"] == pa.bool_() and types["tags"] == pa.list_(pa.string())
    assert types["where"] == pa.struct([("x", pa.float64()), ("y", pa.float64())])
    assert types["counts"] == pa.map_(pa.string(), pa.int64()) and types["maybe"] == pa.string()
    assert types["either"] == pa.string() and types["anything"] == pa.string()
    assert types["tree"] == pa.struct([("kids", pa.list_(pa.string()))])  # the recursion lands as JSON text


def test_a_rich_value_lands_typed_and_what_has_no_single_type_as_json_text():
    serialize, decoder = setup(RICH)
    value = {"id": 1, "ok": True, "tags": ["a"], "where": {"x": 1, "y": 2.5}, "counts": {"a": 3}, "maybe": None,
             "either": 5, "anything": {"k": [1]}, "tree": {"kids": [{"kids": []}]}}
    decoded = decoder.decode([serialize(value)])
    assert not decoded.rejects
    row = decoded.table.to_pylist()[0]
    assert row["where"] == {"x": 1.0, "y": 2.5} and row["counts"] == [("a", 3)] and row["either"] == "5"
    assert row["anything"] == '{"k":[1]}' and row["tree"] == {"kids": ['{"kids":[]}']}


def test_a_value_its_schema_rejects_is_dead_lettered_with_where():
    serialize, decoder = setup(RICH)
    decoded = decoder.decode([serialize({"id": "one"}), serialize({"id": 2})])
    assert decoded.kept == [1]
    assert "does not match its schema at id" in decoded.rejects[0] and "invalid JSON Schema body" in decoded.rejects[0]


def test_undeclared_keys_land_as_text_at_the_top_and_are_dead_lettered_below_it():
    serialize, decoder = setup(RICH)
    decoded = decoder.decode([serialize({"id": 1, "extra": {"a": 1}}), serialize({"id": 2, "where": {"x": 1, "z": 9}}),
                              serialize({"id": 3, "extra": "s"})])
    assert decoded.kept == [0, 2]
    assert decoded.table.column("extra").to_pylist() == ['{"a":1}', "s"] and decoded.widened == 1
    assert "where.z is not declared by the schema" in decoded.rejects[1]


def test_a_draft_2020_12_schema_is_validated_too():
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                                      "items": False}}}
    serialize, decoder = setup(schema)
    decoded = decoder.decode([serialize({"pair": ["a", 1]}), serialize({"pair": ["a", "b"]})])
    assert decoded.kept == [0] and "does not match its schema at pair/1" in decoded.rejects[1]
