"""Kafka headers in the lake (`_headers` in output.metadata): both formats, the settings
that ask for them, and a buffer that does not read them unless asked."""
import base64
import gzip
import io
import json

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from ingest_core.batching.buffer import Batch, PartitionBuffer
from ingest_core.settings import Settings
from ingest_core.sink.encode import HEADERS_TYPE, BatchEncoder
from ingest_core.sink.formats import data_bytes

ALL = ["_topic", "_partition", "_offset", "_timestamp", "_key", "_headers"]
HEADERS = [
    [("trace", b"t-1"), ("trace", b"t-2"), ("bin", bytes(range(256))), ("null", None)],  # duplicates, binary, null
    None,  # no headers at all
    [],  # an empty header list (as a producer may send)
    [("k\u00e9y \"q\"", b"\x00")],  # a key JSON must escape
]


def settings(**output) -> Settings:
    return Settings.model_validate({"topic": "orders", "output": {"url": "file:///tmp/x", **output}})


def batch(headers, values=None) -> Batch:
    n = len(headers)
    values = values or [json.dumps({"i": i}).encode() for i in range(n)]
    return Batch("orders", 0, 10, list(range(10, 10 + n)), [1_700_000_000_000] * n, [b"k"] * n, values, headers)


def expected(headers):
    return [[{"key": k, "value": v} for k, v in (h or [])] for h in headers]


def parquet_table(encoded):
    [file] = encoded.files
    return pq.read_table(io.BytesIO(data_bytes(file.data)))


def ndjson_rows(encoded):
    [file] = encoded.files
    return [json.loads(line) for line in gzip.decompress(data_bytes(file.data)).splitlines()]


def test_parquet_keeps_headers_in_order_with_duplicates_binary_and_nulls():
    table = parquet_table(BatchEncoder(settings(metadata=ALL)).encode(batch(HEADERS)))
    assert table.column_names[:6] == ALL
    assert table.schema.field("_headers").type == HEADERS_TYPE
    assert table.column("_headers").to_pylist() == expected(HEADERS)


def test_parquet_headers_column_has_the_same_type_when_no_message_has_any():
    table = parquet_table(BatchEncoder(settings(metadata=ALL)).encode(batch([None, None])))
    assert table.schema.field("_headers").type == HEADERS_TYPE
    assert table.column("_headers").to_pylist() == [[], []]


@pytest.mark.parametrize("values", [None, [b' {"i": 0} ', b'{"i": 1}', b'{"i": 2}', b'{}']],
                         ids=["columnwise", "per-row"])
def test_ndjson_headers_are_base64_objects_in_order(values):
    rows = ndjson_rows(BatchEncoder(settings(metadata=ALL, format="ndjson")).encode(batch(HEADERS, values)))
    assert all(list(row)[:6] == ALL for row in rows)
    decoded = [[{"key": h["key"], "value": None if h["value"] is None else base64.b64decode(h["value"])}
                for h in row["_headers"]] for row in rows]
    assert decoded == expected(HEADERS)
    assert rows[1]["_headers"] == []  # no headers: an empty list, never null


def test_one_header_in_a_gzip_file():
    encoded = BatchEncoder(settings(metadata=ALL, format="ndjson", compression="gzip")).encode(batch([[("a", b"1")]]))
    assert ndjson_rows(encoded)[0]["_headers"] == [{"key": "a", "value": base64.b64encode(b"1").decode()}]


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_metadata_true_has_no_headers(fmt):
    encoded = BatchEncoder(settings(format=fmt)).encode(batch(HEADERS))
    names = parquet_table(encoded).column_names if fmt == "parquet" else list(ndjson_rows(encoded)[0])
    assert "_headers" not in names and "_key" in names


def test_metadata_settings():
    assert settings().output.metadata_columns == tuple(ALL[:5])
    assert not settings().output.with_headers
    assert settings(metadata=False).output.metadata_columns == ()
    assert settings(metadata=list(reversed(ALL))).output.metadata_columns == tuple(ALL)
    with pytest.raises(ValidationError, match="unknown metadata column"):
        settings(metadata=ALL + ["_header"])
    with pytest.raises(ValidationError, match="missing _key"):
        settings(metadata=ALL[:4])


class CountingMessage:
    def __init__(self, offset):
        self.offset_ = offset
        self.header_calls = 0

    def partition(self): return 0
    def offset(self): return self.offset_
    def timestamp(self): return (1, 0)
    def key(self): return None
    def value(self): return b"{}"

    def headers(self):
        self.header_calls += 1
        return [("h", b"v")]


def test_a_buffer_reads_headers_only_when_asked():
    messages = [CountingMessage(i) for i in range(3)]
    without = PartitionBuffer("orders", 0, with_headers=False)
    without.extend(messages, 0.0)
    assert sum(m.header_calls for m in messages) == 0 and without.take().headers == []
    keeping = PartitionBuffer("orders", 0, with_headers=True)
    keeping.extend(messages, 0.0)
    assert keeping.take().headers == [[("h", b"v")]] * 3


def test_autoloader_hints_type_the_headers_only_when_asked():
    from ingest_core.commands.autoloader import schema_hints
    assert "_headers ARRAY<STRUCT<key: STRING, value: BINARY>>" in schema_hints(settings(metadata=ALL))
    assert "_headers" not in schema_hints(settings())


def test_headers_are_read_for_the_lake_or_a_dead_letter_topic_only():
    assert not BatchEncoder(settings()).reads_headers
    assert BatchEncoder(settings(metadata=ALL)).reads_headers
    with_topic = Settings.model_validate({"topic": "orders", "output": {"url": "file:///x"},
                                          "dead_letter": {"topic": "orders.dlq"}})
    assert BatchEncoder(with_topic).reads_headers and not BatchEncoder(with_topic).with_headers
