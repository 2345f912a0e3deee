"""registry.py through the three wire formats, against confluent-kafka's in-process `mock://`
registry: schema evolution (what the local registry cannot check, it has no compatibility
endpoint), serializers that ask for the latest version (its `versions/latest` answers 404),
and the failures every format shares."""
from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from integration.registry import SchemaRegistry
from integration.wire_schemas import FORMATS, expected_row, order, serializer

from ingest_core.settings import Settings
from ingest_core.source.decode import Decoder
from ingest_core.source.decoded import DecodeUnavailable

TOPIC = "orders"


def mock_client():
    return SchemaRegistryClient.new_client({"url": "mock://registry-tests"})


@pytest.fixture
def registry():
    with SchemaRegistry() as server:
        yield server


def decoder(fmt: str, client) -> Decoder:
    return Decoder(fmt, schema_registry={"url": "mock://registry-tests"}, registry_client=client)


@pytest.mark.parametrize("fmt", FORMATS)
def test_backward_compatible_evolution_lands_every_field_of_both_versions_in_one_table(fmt):
    # v2 adds a field with a default, removes one and widens two (wire_schemas.py): a BACKWARD
    # compatible change in the registry's terms; a batch holding both versions, interleaved,
    # becomes one table (one file), no field lost.
    client = mock_client()
    produce = {version: serializer(fmt, version, client, TOPIC) for version in (1, 2)}
    versions = [1, 2, 1, 2, 2, 1]
    decoded = decoder(fmt, client).decode([produce[v](order(v, i)) for i, v in enumerate(versions)])
    assert not decoded.rejects and decoded.kept == list(range(len(versions)))
    rows = decoded.table.to_pylist()
    for i, version in enumerate(versions):
        expected = expected_row(fmt, version, i)
        assert {name: rows[i][name] for name in expected} == expected
    assert decoded.table.schema.field("qty").type == ("double" if fmt == "json_schema" else "int64")


@pytest.mark.parametrize("fmt", FORMATS)
def test_messages_written_by_a_serializer_that_uses_the_latest_version_land(fmt):
    # use.latest.version needs GET /subjects/{s}/versions/latest, which the local registry lacks.
    client = mock_client()
    serializer(fmt, 1, client, TOPIC)(order(1, 0))  # registers v1
    serializer(fmt, 2, client, TOPIC)(order(2, 0))  # registers v2, the latest
    latest = serializer(fmt, 2, client, TOPIC, conf={"auto.register.schemas": False, "use.latest.version": True})
    decoded = decoder(fmt, client).decode([latest(order(2, 7))])
    assert not decoded.rejects
    assert decoded.table.to_pylist()[0]["email"] == "u7@x"


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_id_wrong_magic_and_short_values_are_dead_lettered_with_a_reason(fmt):
    client = mock_client()
    good = serializer(fmt, 1, client, TOPIC)(order(1, 1))
    decoded = decoder(fmt, client).decode([good, b"\x00\x00\x00\x03\xe7" + good[5:], b"\x07" + good[1:], b"\x00\x01",
                                           b""])
    assert decoded.kept == [0]
    assert "unknown schema id 999" in decoded.rejects[1]
    assert "first byte is 0x07, expected the magic byte 0x00" in decoded.rejects[2]
    assert "shorter than the 5-byte header" in decoded.rejects[3] and "empty value" in decoded.rejects[4]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_schema_of_another_format_rejects_its_messages(fmt):
    client = mock_client()
    other = "avro" if fmt != "avro" else "json_schema"
    value = serializer(other, 1, client, TOPIC)(order(1, 1))
    reason = decoder(fmt, client).decode([value]).rejects[0]
    assert f"decode.format {fmt} reads" in reason


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("down, status", [("refuse", "503"), ("unauthorized", "401")])
def test_a_failing_registry_raises_for_a_retry_naming_the_key(fmt, registry, down, status):
    good = serializer(fmt, 1, SchemaRegistryClient({"url": registry.url}), TOPIC)(order(1, 1))
    decoding = Decoder(fmt, schema_registry={"url": registry.url, "max.retries": 0})
    registry.down = down
    with pytest.raises(DecodeUnavailable) as error:
        decoding.decode([good])
    assert not error.value.permanent and status in str(error.value) and "decode.schema_registry" in str(error.value)
    registry.down = None
    assert decoding.decode([good]).kept == [0]  # the same batch, retried, lands


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unreachable_registry_names_its_url_and_key(fmt, registry):
    good = serializer(fmt, 1, SchemaRegistryClient({"url": registry.url}), TOPIC)(order(1, 1))
    url = registry.url
    registry.stop()
    with pytest.raises(DecodeUnavailable) as error:
        Decoder(fmt, schema_registry={"url": url, "max.retries": 0}).decode([good])
    assert "cannot reach the schema registry" in str(error.value) and url in str(error.value)
    assert "decode.schema_registry.url" in str(error.value)
    registry.start()


@pytest.mark.parametrize("fmt", ["json_schema", "protobuf"])
def test_the_new_formats_need_a_registry_url(fmt):
    with pytest.raises(ValueError, match="schema_registry"):
        Settings.model_validate({"topic": "t", "decode": {"format": fmt}, "output": {"url": "file:///x"}})
