import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest_core.batching.buffer import Batch
from ingest_core.settings import Settings
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.formats import data_bytes

HOUR_MS = 3_600_000
BASE_TS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def settings(**output) -> Settings:
    return Settings.model_validate({"topic": "orders", "output": {"url": "file:///tmp/x", **output}})


def batch(values, timestamps=None, keys=None) -> Batch:
    n = len(values)
    return Batch("orders", 2, 100, list(range(100, 100 + n)), timestamps or [BASE_TS] * n,
                 keys or [b"k"] * n, values, [None] * n)


def test_parquet_has_metadata_columns_and_payload():
    encoded = BatchEncoder(settings()).encode(batch([b'{"a": 1, "b": "x"}', b'{"a": 2, "b": "y"}']))
    assert [f.path for f in encoded.files] == ["dt=2023-11-14/hour=22/orders+2+00000000000000000100.parquet"]
    table = pq.read_table(io.BytesIO(encoded.files[0].data))
    assert table.column_names[:5] == ["_topic", "_partition", "_offset", "_timestamp", "_key"]
    assert table.column("_offset").to_pylist() == [100, 101]
    assert table.schema.field("_timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.column("a").to_pylist() == [1, 2]


def test_rows_split_by_hour_folder_with_their_first_offset():
    stamps = [BASE_TS, BASE_TS + HOUR_MS, BASE_TS + 1]
    encoded = BatchEncoder(settings()).encode(batch([b'{"a":1}', b'{"a":2}', b'{"a":3}'], stamps))
    assert [(f.path, f.rows, f.first_offset, f.last_offset) for f in encoded.files] == [
        ("dt=2023-11-14/hour=22/orders+2+00000000000000000100.parquet", 2, 100, 102),
        ("dt=2023-11-14/hour=23/orders+2+00000000000000000101.parquet", 1, 101, 101),
    ]


def test_encoding_is_deterministic():
    values = [json.dumps({"i": i, "s": "x" * i}).encode() for i in range(50)]
    for fmt in ("parquet", "ndjson"):
        one = BatchEncoder(settings(format=fmt)).encode(batch(values))
        two = BatchEncoder(settings(format=fmt)).encode(batch(values))
        assert [data_bytes(f.data) for f in one.files] == [data_bytes(f.data) for f in two.files]


def test_ndjson_gzip_lines_carry_metadata_and_payload():
    encoded = BatchEncoder(settings(format="ndjson")).encode(batch([b'{"a": 1}', b' {} ', b'{"n":\n 2}'], keys=[b"k1", None, b"\xff"]))
    lines = gzip.decompress(encoded.files[0].data).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["_offset"] for r in rows] == [100, 101, 102]
    assert rows[0] == {"_topic": "orders", "_partition": 2, "_offset": 100, "_timestamp": "2023-11-14T22:13:20.000Z",
                       "_key": "k1", "a": 1}
    assert rows[1]["_key"] is None and set(rows[1]) == {"_topic", "_partition", "_offset", "_timestamp", "_key"}
    assert rows[2]["n"] == 2 and rows[2]["_key"] == "base64:/w=="
    assert encoded.files[0].path.endswith(".ndjson.gz")


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_bad_messages_are_rejected_with_reason_and_the_rest_land(fmt):
    values = [b'{"a": 1}', b'{"a": ', b'[1, 2]', None, b'\xff\xfe', b'{"a": 2}', b'   ', b'7']
    encoded = BatchEncoder(settings(format=fmt)).encode(batch(values))
    assert sum(f.rows for f in encoded.files) == 2
    reasons = {r.index: r.reason for r in encoded.rejects}
    assert set(reasons) == {1, 2, 3, 4, 6, 7}
    assert "invalid JSON" in reasons[1] and "JSON array" in reasons[2] and "tombstone" in reasons[3]
    assert "UTF-8" in reasons[4] or "invalid JSON" in reasons[4]


def test_type_conflict_is_widened_not_dropped():
    encoded = BatchEncoder(settings()).encode(batch([b'{"a": 1}', b'{"a": "x"}', b'{"a": {"b": 1}}']))
    table = pq.read_table(io.BytesIO(encoded.files[0].data))
    assert table.column("a").to_pylist() == ["1", "x", '{"b":1}']
    assert encoded.widened == 2 and not encoded.rejects


def test_payload_column_named_like_metadata_is_kept():
    encoded = BatchEncoder(settings()).encode(batch([b'{"_offset": "mine"}']))
    table = pq.read_table(io.BytesIO(encoded.files[0].data))
    assert table.column("_offset").to_pylist() == [100]
    assert table.column("_offset_payload").to_pylist() == ["mine"]


def test_metadata_false_writes_payload_only():
    encoded = BatchEncoder(settings(metadata=False)).encode(batch([b'{"a": 1}']))
    assert pq.read_table(io.BytesIO(encoded.files[0].data)).column_names == ["a"]


def test_parquet_is_spark_readable_and_records_renamed_columns():
    values = [b'{"a b": 1, "A B": 2, "_OFFSET": "p", "nil": null, "empty": {}, "tags": []}']
    encoded = BatchEncoder(settings()).encode(batch(values))
    file = pq.ParquetFile(io.BytesIO(encoded.files[0].data))
    names = file.schema_arrow.names
    assert names == ["_topic", "_partition", "_offset", "_timestamp", "_key", "a_b__2", "A_B", "_OFFSET_payload", "tags"]
    renamed = json.loads(file.schema_arrow.metadata[b"lake_ingest.renamed"])
    assert renamed == {"a_b__2": "a b", "A_B": "A B"}
    row = file.read().to_pylist()[0]
    assert (row["a_b__2"], row["A_B"], row["_OFFSET_payload"], row["tags"]) == (1, 2, "p", [])


def test_skipped_tombstones_are_counted_not_rejected():
    s = Settings.model_validate({"topic": "orders", "decode": {"tombstones": "skip"}, "output": {"url": "file:///tmp/x"}})
    encoded = BatchEncoder(s).encode(batch([b'{"a": 1}', None, None]))
    assert encoded.skipped == 2 and not encoded.rejects and sum(f.rows for f in encoded.files) == 1


def test_partition_by_a_record_field_escapes_hostile_values():
    values = [b'{"c": "../../etc"}', b'{"c": "DE"}', b'{"c": null}', b'{"c": ".hidden"}', b'{}']
    encoded = BatchEncoder(settings(partition_by="country={c}")).encode(batch(values))
    assert sorted(f.path.split("/")[0] for f in encoded.files) == [
        "country=%2E.%2F..%2Fetc", "country=%2Ehidden", "country=DE",
        "country=__HIVE_DEFAULT_PARTITION__"]
    assert sum(f.rows for f in encoded.files) == 5


def test_raw_lands_bytes_in_parquet_and_base64_in_ndjson():
    raw = Settings.model_validate({"topic": "orders", "decode": {"format": "raw"}, "output": {"url": "file:///tmp/x"}})
    table = pq.read_table(io.BytesIO(BatchEncoder(raw).encode(batch([b"\x00\xff", b"t"])).files[0].data))
    assert table.column("value").to_pylist() == [b"\x00\xff", b"t"] and table.schema.field("value").type == pa.binary()
    nd = Settings.model_validate({"topic": "orders", "decode": {"format": "raw"},
                                  "output": {"url": "file:///tmp/x", "format": "ndjson", "compression": "none"}})
    data = BatchEncoder(nd).encode(batch([b"\x00\xff"])).files[0].data  # uncompressed NDJSON: Arrow buffers
    rows = [json.loads(line) for line in data_bytes(data).splitlines()]
    assert rows[0]["value"] == "AP8=" and rows[0]["_offset"] == 100


def test_folders_computed_per_distinct_second_equal_per_row_strftime():
    import random

    import pyarrow.compute as pc

    from ingest_core.sink.paths import PartitionTemplate

    rng = random.Random(5)
    stamps = [BASE_TS + rng.randrange(-5 * HOUR_MS, 5 * HOUR_MS) for _ in range(2000)]
    for fmt in ("dt=%Y-%m-%d/hour=%H/m=%M", "dt=%Y-%m-%d/t=%H%M%S"):
        template = PartitionTemplate.parse(fmt.replace("%Y-%m-%d", "{timestamp:%Y-%m-%d}")
                                           .replace("=%H/", "={timestamp:%H}/").replace("m=%M", "m={timestamp:%M}")
                                           .replace("t=%H%M%S", "t={timestamp:%H%M%S}"))
        per_row = pc.strftime(pa.array(stamps, pa.timestamp("ms", tz="UTC")), format=fmt)
        assert template.folders(stamps).to_pylist() == per_row.to_pylist()
        assert template.folders(pa.array(stamps, pa.int64())).to_pylist() == per_row.to_pylist()
    # A batch within one hour (many minutes, one folder), and one crossing into the next hour.
    template = PartitionTemplate.parse("dt={timestamp:%Y-%m-%d}/hour={timestamp:%H}")
    hour_start = BASE_TS - BASE_TS % HOUR_MS
    for stamps in ([hour_start + rng.randrange(HOUR_MS) for _ in range(500)],
                   [hour_start + rng.randrange(HOUR_MS) for _ in range(499)] + [hour_start + HOUR_MS]):
        per_row = pc.strftime(pa.array(stamps, pa.timestamp("ms", tz="UTC")), format="dt=%Y-%m-%d/hour=%H")
        folders = template.folders(stamps)
        assert folders.type == pa.string() and folders.to_pylist() == per_row.to_pylist()


def _per_row_text(metadata, bodies) -> bytes:
    from ingest_core.sink.formats import ndjson
    return b"".join(ndjson._splice(p, b) for p, b in zip(ndjson._metadata_prefixes(metadata), bodies, strict=False))


def _sliced_text(metadata, bodies) -> bytes:
    from ingest_core.sink.formats import ndjson
    return b"".join(bytes(piece) for piece in ndjson.text_slices(metadata, pa.array(bodies, pa.binary())))


def _metadata(count: int, stamps_ms: list[int], keys: list[bytes | None], headers=None) -> pa.Table:
    columns = {
        "_topic": ["or\"ders"] * count, "_partition": pa.array([2] * count, pa.int32()),
        "_offset": pa.array(range(100, 100 + count), pa.int64()),
        "_timestamp": pa.array(stamps_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC")),
        "_key": pa.array([None if k is None else k.decode() for k in keys], pa.string()),
    }
    if headers is not None:
        from ingest_core.sink.encode import headers_array
        columns["_headers"] = headers_array(headers)
    return pa.table(columns)


def test_ndjson_lines_made_in_c_are_the_bytes_of_the_per_row_splice(monkeypatch):
    """ndjson_lines.c against the per-row splice (json.dumps for keys, Arrow's strftime for times),
    on keys JSON must escape, null keys, headers, bodies with no field, times across the calendar,
    and in slices of a few rows (array offsets not 0)."""
    from ingest_core.sink.formats import ndjson
    bodies = [b'{"a":1}', b"{}", b"{ }", b"{\t}", b'{"s":"caf\xc3\xa9"}', b'{"b":[1,{"c":"x"}]}', b'{"n":null}']
    keys = [b"k1", None, b'say "hi"', b"back\\slash", b"tab\there\nnl\x01\x1f\x7f", "é€😀".encode(), b"", b"plain-key"]
    stamps = [0, 1, 999, 1000, 86_399_999, 951_782_400_000, 951_868_799_999, 4_107_542_400_000, 1_700_000_000_123,
              253_402_300_799_999, 1_582_934_400_000, 946_684_800_000]
    rows = 7 * 8 * 12 // 4
    pick = [(bodies[i % 7], keys[i % 8], stamps[i % 12]) for i in range(rows)]
    body_list = [b for b, _, _ in pick]
    metadata = _metadata(rows, [t for _, _, t in pick], [k for _, k, _ in pick])
    expected = _per_row_text(metadata, body_list)
    assert expected.count(b"\n") == rows and b'"_key":"say \\"hi\\""' in expected
    made = []
    plain_lines = ndjson.ndjson_lines.lines
    monkeypatch.setattr(ndjson.ndjson_lines, "lines", lambda *a: made.append(a[-1]) or plain_lines(*a))
    assert _sliced_text(metadata, body_list) == expected
    monkeypatch.setattr(ndjson, "SLICE_ROWS", 5)
    assert _sliced_text(metadata, body_list) == expected
    assert sum(made) == 2 * rows  # every slice made in C
    with_headers = _metadata(rows, [t for _, _, t in pick], [k for _, k, _ in pick],
                             [[("h", b"v\x00"), ("h", None)] if i % 3 else None for i in range(rows)])
    assert _sliced_text(with_headers, body_list) == _per_row_text(with_headers, body_list)
    assert b'"_headers":[{"key":"h","value":"dgA="},{"key":"h","value":null}]' in _per_row_text(with_headers, body_list)
    # Every day of 1999-2001 (2000 a leap year) and random times up to 9999: the same calendar.
    import random
    rng = random.Random(7)
    days = [day * 86_400_000 + rng.randrange(86_400_000) for day in range(10_592, 11_688)]
    stamps = days + [rng.randrange(253_402_300_800_000) for _ in range(3000)]
    metadata = _metadata(len(stamps), stamps, [b"k"] * len(stamps))
    assert _sliced_text(metadata, [b"{}"] * len(stamps)) == _per_row_text(metadata, [b"{}"] * len(stamps))


def test_a_slice_c_cannot_make_goes_the_per_row_way_with_the_same_bytes(monkeypatch):
    """A time before 1970 or a body with blanks around it: that slice alone goes the per-row way."""
    from ingest_core.sink.formats import ndjson
    monkeypatch.setattr(ndjson, "SLICE_ROWS", 3)
    per_row_slices: list[int] = []
    real_prefixes = ndjson._metadata_prefixes
    monkeypatch.setattr(ndjson, "_metadata_prefixes", lambda m: per_row_slices.append(len(m)) or real_prefixes(m))
    for stamps, bodies in (([1_000] * 4 + [-1] + [1_000] * 4, [b'{"a":1}'] * 9),
                           ([1_000] * 9, [b'{"a":1}'] * 4 + [b' {"a":1} '] + [b'{"a":1}'] * 4)):
        metadata = _metadata(9, stamps, [b"k"] * 9)
        text = _sliced_text(metadata, bodies)
        assert per_row_slices == [3]
        assert text == b"".join(ndjson._splice(p, b) for p, b in zip(real_prefixes(metadata), bodies, strict=False))
        per_row_slices.clear()
    assert b'"_timestamp":"1969-12-31T23:59:59.999Z"' in _per_row_text(_metadata(1, [-1], [b"k"]), [b"{}"])


def test_ndjson_lines_refuses_buffers_shorter_than_the_rows_asked_for():
    from ingest_core.sink.formats import ndjson_lines
    offsets = (pa.array([1, 2], pa.int64()).buffers()[1], 0)
    keys = pa.array(["a", "b"])
    bodies = pa.array([b"{}", b"{}"])
    key_parts = (None, keys.buffers()[1], keys.buffers()[2], 0)
    body_parts = (None, bodies.buffers()[1], bodies.buffers()[2], 0)
    assert ndjson_lines.lines(b"{", offsets, offsets, key_parts, None, body_parts, 2).count(b"\n") == 2
    for count, keys_at in ((3, 0), (2, 1)):
        with pytest.raises(ValueError):
            ndjson_lines.lines(b"{", offsets, offsets, (None, keys.buffers()[1], keys.buffers()[2], keys_at), None,
                               body_parts, count)
    with pytest.raises(ValueError):
        ndjson_lines.lines(b"{", offsets, offsets, key_parts, [b"[]"], body_parts, 2)


def test_ndjson_in_many_pieces_is_the_same_text_with_every_codec(monkeypatch):
    """The splice's pieces are written (none) or compressed (gzip, zstd) one after the other,
    never joined first: each codec must still give the one text, and the same bytes twice."""
    from ingest_core.sink.formats import ndjson
    values = [json.dumps({"i": i, "s": "x" * (i % 7)}).encode() for i in range(10)]
    expected = None
    for slice_rows in (3, 1000):
        monkeypatch.setattr(ndjson, "SLICE_ROWS", slice_rows)
        for codec in ("none", "gzip", "zstd"):
            encoder = BatchEncoder(settings(format="ndjson", compression=codec, partition_by=""))
            one, two = encoder.encode(batch(values)), encoder.encode(batch(values))
            data = data_bytes(one.files[0].data)
            assert data == data_bytes(two.files[0].data)
            if codec == "gzip":
                data = gzip.decompress(data)
            elif codec == "zstd":
                data = pa.CompressedInputStream(pa.BufferReader(data), "zstd").read()
            rows = [json.loads(line) for line in data.splitlines()]
            assert [r["i"] for r in rows] == list(range(10)) and [r["_offset"] for r in rows] == list(range(100, 110))
            expected = expected or data
            assert data == expected


def test_uncompressed_ndjson_is_made_while_it_is_written_and_again_for_a_retry(monkeypatch, tmp_path):
    """Uncompressed NDJSON is `Pieces`: one slice of text at a time, made when the file is
    written. A slice C cannot make (here a time before 1970) goes the per-row way alone; the
    other slices are made in C; the text is the same either way, and a second write (a
    retried publish) gives the same bytes."""
    from ingest_core.sink.formats import Pieces, data_size, ndjson
    from ingest_core.sink.storage import LakeStore

    values = [json.dumps({"i": i}).encode() for i in range(10)]
    keys = [b"k"] * 10
    keys[7] = b'say "hi"'
    stamps = [BASE_TS] * 10
    stamps[7] = -1
    per_row_slices = []
    real_prefixes = ndjson._metadata_prefixes
    monkeypatch.setattr(ndjson, "_metadata_prefixes", lambda m: per_row_slices.append(len(m)) or real_prefixes(m))
    monkeypatch.setattr(ndjson, "SLICE_ROWS", 3)
    encoded = BatchEncoder(settings(format="ndjson", compression="none", partition_by="")).encode(
        batch(values, stamps, keys=keys))
    data = encoded.files[0].data
    assert isinstance(data, Pieces) and per_row_slices == []  # nothing made yet
    first = data_bytes(data)
    assert per_row_slices == [3]  # rows 6..8 only
    assert data.size == len(first) == data_size(data)
    rows = [json.loads(line) for line in first.splitlines()]
    assert [r["i"] for r in rows] == list(range(10)) and rows[7]["_key"] == 'say "hi"'
    store = LakeStore.open(str(tmp_path))
    assert store.publish("a.ndjson", data) and (tmp_path / "a.ndjson").read_bytes() == first
    # metadata: false writes the bodies alone, slice by slice.
    plain = BatchEncoder(settings(format="ndjson", compression="none", partition_by="", metadata=False)).encode(batch(values))
    assert data_bytes(plain.files[0].data) == b"".join(v + b"\n" for v in values)


# ---- Parquet from JSON, parsed and written a slice at a time (encode.py, round 8)

def _events(n, late=None, start=250):
    rows = [json.dumps({"id": i, "at": f"2026-11-{1 + i % 28:02d}T10:00:00Z", "a b": i % 3, "A": "x", "a": "y",
                        "o": {"d": "2026-01-01", "x": i * 1.5, "tags": ["t", str(i)]}, "maybe": None}).encode()
            for i in range(n)]
    if late:
        rows[start:] = [late(i, json.loads(r)) for i, r in enumerate(rows[start:], start)]
    return rows


def _both_ways(monkeypatch, values):
    """The batch encoded in slices (a few rows each) and whole."""
    from ingest_core.sink.formats import parquet
    from ingest_core.source import decode

    monkeypatch.setattr(decode, "PARSE_SLICE_BYTES", 4_000)  # about 20 rows per slice
    monkeypatch.setattr(parquet, "ROW_GROUP_BYTES", 20_000)  # a row group every few slices
    sliced = BatchEncoder(settings())
    whole = BatchEncoder(settings())
    whole.parquet_in_slices = False
    return sliced.encode(batch(values)), whole.encode(batch(values))


def _files(encoded):
    return [(f.path, f.rows, f.first_offset, f.last_offset) for f in encoded.files]


def _read(file):
    return pq.ParquetFile(pa.BufferReader(data_bytes(file.data)))


def _json(row):
    return json.dumps(row).encode()


@pytest.mark.parametrize("late, sliced", [
    (None, True),
    (lambda i, r: _json({**r, "maybe": f"now {i}"}), False),  # a field null in the first slice gets a type
    (lambda i, r: _json({**r, "new": i}), False),  # a field the first slice did not have
    (lambda i, r: _json({**r, "o": {**r["o"], "deep": True}}), False),  # the same, nested
    (lambda i, r: _json({**r, "id": i + 0.5}), False),  # an int field with fractions
    (lambda i, r: _json({**r, "at": i}), False),  # a number in a date-like text field: widened one by one
    (lambda i, r: _json({**r, "at": "not a date"}), True),  # text in a date-like field: text either way
    (lambda i, r: _json({**r, "o": {**r["o"], "x": 2}}), True),  # ints in a double field
    (lambda i, r: _json({k: v for k, v in r.items() if k != "A"}), True),  # a field missing: null
], ids=["stable", "null-then-text", "new-field", "new-nested-field", "int-then-double", "number-in-date-field",
        "not-a-date", "int-in-double", "missing-field"])
def test_parquet_in_slices_gives_the_rows_types_and_names_of_the_whole_batch(monkeypatch, late, sliced):
    one, whole = _both_ways(monkeypatch, _events(300, late))
    assert _files(one) == _files(whole) and not one.rejects and one.widened == whole.widened
    got, expected = _read(one.files[0]), _read(whole.files[0])
    assert got.read().equals(expected.read())
    assert got.schema_arrow.metadata == expected.schema_arrow.metadata  # the renamed columns ("a b", "a")
    assert expected.metadata.num_row_groups == 1
    assert (got.metadata.num_row_groups > 1) is sliced  # a batch that does not fit its first slice goes whole


@pytest.mark.parametrize("bad, reason", [
    (b'{"id": 280 "s": 1}', "invalid JSON"),
    (b'{"id": 280, "o": {"x": -NaN}}', "invalid JSON"),
    (b'{"id": 280, "id": 281}', "duplicate key"),
])
def test_a_bad_message_in_a_later_slice_is_rejected_as_in_a_whole_batch(monkeypatch, bad, reason):
    values = _events(300)
    values[280] = bad
    one, whole = _both_ways(monkeypatch, values)
    assert [r.index for r in one.rejects] == [280] and reason in one.rejects[0].reason
    assert [(r.index, r.reason) for r in one.rejects] == [(r.index, r.reason) for r in whole.rejects]
    assert _read(one.files[0]).read().equals(_read(whole.files[0]).read())


def test_a_long_integer_rounded_into_a_double_in_a_later_slice_is_kept_exact(monkeypatch):
    values = _events(300)
    values[290] = _json({**json.loads(values[290]), "o": {"x": 12345678901234567891}})
    one, _ = _both_ways(monkeypatch, values)
    column = _read(one.files[0]).read().column("o").combine_chunks().field("x")
    assert column[290].as_py() == "12345678901234567891" and one.widened > 0


def test_a_batch_over_two_folders_or_foldered_by_a_field_is_encoded_whole(monkeypatch):
    from ingest_core.source import decode

    monkeypatch.setattr(decode, "PARSE_SLICE_BYTES", 4_000)
    values = _events(300)
    stamps = [BASE_TS] * 150 + [BASE_TS + HOUR_MS] * 150
    encoded = BatchEncoder(settings()).encode(batch(values, stamps))
    assert [f.rows for f in encoded.files] == [150, 150]
    by_field = BatchEncoder(settings(partition_by="a={a}"))
    assert not by_field.parquet_in_slices and by_field.encode(batch(values)).files[0].rows == 300
