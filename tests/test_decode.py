"""decode.py: JSON batches (fast path and per-message isolation), raw, tombstone policies."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pytest

from ingest_core.source.decode import TOMBSTONE_REASON, Decoder, decode_json
from ingest_core.source.json_message import parse_json_object


def test_a_clean_batch_is_parsed_whole_and_keeps_its_lines():
    values = [b'{"a": 1, "s": "x"}', b'{"a": 2, "t": [1, 2]}']
    decoded = decode_json(values)
    assert decoded.kept == [0, 1] and not decoded.rejects and decoded.widened == 0
    assert decoded.table.to_pylist() == [{"a": 1, "s": "x", "t": None}, {"a": 2, "s": None, "t": [1, 2]}]
    assert decoded.lines.to_pylist() == values


POISON = {
    b"\xff\xfe{}": "invalid UTF-8",
    b'{"a": "\xc3"}': "invalid UTF-8",  # pyarrow.json would take it; the file would hold invalid UTF-8
    b'{"a": ': "invalid JSON",
    b"[1, 2]": "got a JSON array",
    b"42": "got a JSON number",
    b'"text"': "got a JSON string",
    b"null": "got a JSON null",
    b"true": "got a JSON boolean",
    b'{"a": 1, "a": 2}': "duplicate key 'a'",
    b'{"a": 1} {"b": 2}': "invalid JSON",  # two objects in one message
    b'{"a": "\\ud800"}': "unpaired UTF-16 surrogate",
    b'{"a": -NaN}': "invalid JSON",
    b'{"a": 1,}': "invalid JSON",
    b"   ": "empty value",
    b'{"a":' * 65 + b"1" + b"}" * 65: "nesting deeper than decode.max_depth (64)",
    b'{"a":' + b"[" * 70 + b"]" * 70 + b"}": "nesting deeper than decode.max_depth (64)",
    b"[" * 100_000 + b"]" * 100_000: "invalid JSON",
}


@pytest.mark.parametrize("poison", list(POISON), ids=lambda v: repr(v[:20]))
def test_each_poison_message_is_rejected_with_its_reason_and_good_neighbours_land(poison):
    values = [b'{"id": 1}', poison, b'{"id": 3}']
    decoded = decode_json(values)
    assert decoded.kept == [0, 2]
    assert list(decoded.rejects) == [1] and POISON[poison] in decoded.rejects[1]
    assert decoded.table.to_pylist() == [{"id": 1}, {"id": 3}]
    assert decoded.lines.to_pylist() == [b'{"id": 1}', b'{"id": 3}']


def test_depth_limit_is_inclusive_and_configurable():
    nested = b'{"a":' * 63 + b"1" + b"}" * 63  # 63 objects under the top-level... 64 levels in all
    assert parse_json_object(b"{\"top\": " + nested + b"}", 64) != "x"
    assert isinstance(parse_json_object(b"{\"top\": " + nested + b"}", 64), dict)
    assert "max_depth (63)" in parse_json_object(b"{\"top\": " + nested + b"}", 63)
    decoded = decode_json([b"{\"top\": " + nested + b"}"], max_depth=64)
    assert decoded.kept == [0] and not decoded.rejects


def test_integers_beyond_int64_keep_every_digit_as_text():
    big = 123456789012345678901234567890
    decoded = decode_json([b'{"n": 1}', f'{{"n": {big}}}'.encode(), b'{"n": -9223372036854775809}'])
    assert decoded.table.schema.field("n").type == pa.string()
    assert decoded.table.column("n").to_pylist() == ["1", str(big), "-9223372036854775809"]
    assert decoded.widened == 3 and not decoded.rejects


def test_an_int_a_double_cannot_hold_is_not_rounded_when_the_column_has_fractions():
    decoded = decode_json([b'{"n": 9007199254740993}', b'{"n": 1.5}'])
    assert decoded.table.column("n").to_pylist() == ["9007199254740993", "1.5"]
    small = decode_json([b'{"n": 3}', b'{"n": 1.5}'])  # exact in a double: the column is double
    assert small.table.column("n").to_pylist() == [3.0, 1.5] and small.widened == 0


def test_int64_extremes_stay_int64():
    decoded = decode_json([b'{"n": 9223372036854775807}', b'{"n": -9223372036854775808}'])
    assert decoded.table.schema.field("n").type == pa.int64()
    assert decoded.table.column("n").to_pylist() == [2**63 - 1, -(2**63)]


def test_nan_and_infinity_land_as_doubles():
    decoded = decode_json([b'{"x": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}', b'{"x": 1.5}'])
    values = decoded.table.column("x").to_pylist()
    assert values[0] != values[0] and values[1:] == [float("inf"), float("-inf"), 1.5]
    assert not decoded.rejects


def test_a_number_beyond_double_keeps_its_text():
    decoded = decode_json([b'{"x": 1e400}', b'{"x": 2.5}'])
    assert decoded.table.column("x").to_pylist() == ["1e400", "2.5"]


def test_date_like_strings_stay_strings_with_their_exact_text():
    values = [b'{"d": "2024-01-01", "t": {"at": "2024-01-01T10:00:00Z"}, "l": ["2024-01-01 10:00:00"]}']
    decoded = decode_json(values)
    assert decoded.table.to_pylist() == [{"d": "2024-01-01", "t": {"at": "2024-01-01T10:00:00Z"},
                                          "l": ["2024-01-01 10:00:00"]}]
    assert decoded.table.schema.field("d").type == pa.string()


def test_conflicts_widen_only_the_conflicting_field_and_count_it():
    values = [b'{"o": {"a": 1, "b": "x"}, "n": 1}', b'{"o": {"a": "one", "b": "y"}, "n": 2.5}', b'{"o": {"a": true}}']
    decoded = decode_json(values)
    assert decoded.table.schema.field("o").type == pa.struct([("a", pa.string()), ("b", pa.string())])
    assert decoded.table.column("o").to_pylist() == [{"a": "1", "b": "x"}, {"a": "one", "b": "y"}, {"a": "true", "b": None}]
    assert decoded.table.column("n").to_pylist() == [1.0, 2.5, None]
    assert decoded.widened == 2  # 1 and true written as text; "one" was already text


def test_object_versus_scalar_becomes_json_text():
    decoded = decode_json([b'{"v": {"k": [1, "\xc3\xa9", null]}}', b'{"v": 7}', b'{"v": [1]}', b'{"v": "s"}'])
    assert decoded.table.column("v").to_pylist() == ['{"k":[1,"\u00e9",null]}', "7", "[1]", "s"]
    assert decoded.widened == 3


def test_a_nested_object_appearing_and_new_fields_land_together():
    decoded = decode_json([b'{"id": 1}', b'{"id": 2, "new": "x"}', b'{"id": 3, "geo": {"lat": 1.5}}'])
    assert decoded.table.to_pylist() == [
        {"id": 1, "new": None, "geo": None},
        {"id": 2, "new": "x", "geo": None},
        {"id": 3, "new": None, "geo": {"lat": 1.5}},
    ]


def test_newlines_bom_and_carriage_returns_are_normalised_for_ndjson():
    decoded = decode_json([b'\xef\xbb\xbf{"a":\r\n 1}', b'{"b": "x"}'])
    assert decoded.lines.to_pylist() == [b'{"a":   1}', b'{"b": "x"}'] and decoded.kept == [0, 1]


def test_a_5_mb_message_is_parsed():
    value = json.dumps({"blob": "x" * (5 * 1024 * 1024), "n": 1}).encode()
    decoded = decode_json([b'{"n": 0}', value])
    assert decoded.kept == [0, 1] and len(decoded.table.column("blob")[1].as_py()) == 5 * 1024 * 1024


@pytest.mark.parametrize("policy,kept,rejected,skipped", [
    ("dead_letter", [0, 2], [1], 0),
    ("skip", [0, 2], [], 1),
    ("row", [0, 1, 2], [], 0),
])
@pytest.mark.parametrize("fmt", ["json", "raw"])
def test_tombstone_policies(fmt, policy, kept, rejected, skipped):
    decoded = Decoder(fmt, tombstones=policy).decode([b'{"a": 1}', None, b'{"a": 3}'])
    assert decoded.kept == kept and sorted(decoded.rejects) == rejected and decoded.skipped == skipped
    assert all(decoded.rejects[i] == TOMBSTONE_REASON for i in rejected)
    assert decoded.table.num_rows == len(kept)
    if policy == "row":
        column = "a" if fmt == "json" else "value"
        assert decoded.table.column(column).to_pylist()[1] is None


def test_tombstones_with_bad_messages_keep_batch_positions():
    decoded = Decoder("json", tombstones="skip").decode([None, b"oops", b'{"a": 2}', None, b'{"a": 4}'])
    assert decoded.kept == [2, 4] and list(decoded.rejects) == [1] and decoded.skipped == 2
    assert decoded.table.column("a").to_pylist() == [2, 4]


def test_raw_keeps_bytes_as_they_are():
    decoded = Decoder("raw").decode([b"\x00\xff", b"text"])
    assert decoded.table.column("value").to_pylist() == [b"\x00\xff", b"text"] and decoded.kept == [0, 1]


def test_decoding_is_deterministic_on_the_slow_path():
    values = [b'{"a": 1}', b'{"a": "x", "b": {"c": 2}}', b"bad", b'{"b": 3}']
    one, two = decode_json(values), decode_json(values)
    assert one.table.equals(two.table) and one.rejects == two.rejects and one.widened == two.widened


# ---- batches past the sample (decode.py parses a big batch once, with the first rows' types)

def _whole_batch_inference(values: list[bytes]) -> pa.Table:
    """The reference: infer the whole batch, then parse again with date-like fields as text."""
    import io

    import pyarrow.json as pa_json

    from ingest_core.source.decode import _text_schema

    data = b"\n".join(values)
    options = pa_json.ReadOptions(block_size=1 << 20)
    table = pa_json.read_json(io.BytesIO(data), read_options=options)
    return pa_json.read_json(io.BytesIO(data), read_options=options, parse_options=pa_json.ParseOptions(
        explicit_schema=_text_schema(table.schema), unexpected_field_behavior="infer"))


def _rows(n, late=None, start=2500):
    rows = [json.dumps({"id": i, "at": f"2026-11-{1 + i % 28:02d}T10:00:00Z", "n": i,
                        "o": {"d": "2026-01-01", "x": i}}).encode() for i in range(n)]
    if late:
        rows[start:] = [json.dumps({**json.loads(r), **late(i)}).encode() for i, r in enumerate(rows[start:], start)]
    return rows


@pytest.mark.parametrize("late", [
    None,
    lambda i: {"later": "2026-11-23 10:00:00"},  # a new date-like field after the sample
    lambda i: {"n": i + 0.5},  # an int column that turns out to hold fractions
    lambda i: {"o": {"d": "2026-01-01", "x": i, "y": "2026-01-02T00:00:00"}},  # a new nested date-like field
    lambda i: {"at": "not a date"},  # a date-like field that is not one everywhere
    lambda i: {"extra": None, "tags": ["a", "2026-01-01"]},
], ids=["stable", "new-date-field", "int-then-double", "nested-new-date", "not-always-a-date", "nulls-and-lists"])
def test_a_big_batch_gives_the_table_whole_batch_inference_gives(late):
    values = _rows(4000, late)
    decoded = decode_json(values)
    assert not decoded.rejects and decoded.widened == 0
    assert decoded.table.equals(_whole_batch_inference(values))
    assert not any(pa.types.is_timestamp(f.type) for f in decoded.table.schema)


def test_a_field_null_in_the_first_rows_gets_its_type_from_the_rest():
    values = [json.dumps({"id": i, "v": None if i < 3000 else f"x{i}", "at": "2026-11-23"}).encode() for i in range(4000)]
    decoded = decode_json(values)
    assert decoded.table.equals(_whole_batch_inference(values))
    assert decoded.table.schema.field("v").type == pa.string()


@pytest.mark.parametrize("poison", list(POISON), ids=lambda v: repr(v[:20]))
def test_ndjson_validation_rejects_the_same_poison(poison):
    """text_only (NDJSON output): one parse, no table kept, the same messages rejected."""
    values = [b'{"id": 1, "x": 1.5}', poison, b'{"id": 3}']
    decoded = decode_json(values, text_only=True)
    assert decoded.kept == [0, 2]
    assert list(decoded.rejects) == [1] and POISON[poison] in decoded.rejects[1]
    assert decoded.lines.to_pylist() == [b'{"id": 1, "x": 1.5}', b'{"id": 3}']


@pytest.mark.parametrize("value, line", [
    (b'{"a": "caf\xc3\xa9",\n "b": 1}', b'{"a": "caf\xc3\xa9",  "b": 1}'),  # non-ASCII and a raw newline
    (b'{"a": 1,\r"b": 2}', b'{"a": 1, "b": 2}'),
    (b'{"a":\t1}  ', b'{"a":\t1}'),  # a tab (not printable), trailing blanks
    (b'\t{"a": 1}', b'{"a": 1}'),
])
def test_values_that_are_not_one_clean_line_become_one(value, line):
    clean = [b'{"id": %d}' % i for i in range(3)]
    for text_only in (False, True):
        decoded = decode_json(clean + [value], text_only=text_only)
        assert decoded.lines.to_pylist() == clean + [line] and not decoded.rejects


def test_ndjson_check_parses_only_the_lines_it_flags(monkeypatch):
    import ingest_core.source.json_checks as json_checks

    parsed = []
    real = json_checks.parse_json_object
    monkeypatch.setattr(json_checks, "parse_json_object", lambda line, depth: parsed.append(line) or real(line, depth))
    values = [b'{"id": %d, "s": "x"}' % i for i in range(50)]
    values[37] = b'{"id": 37, "s": -NaN}'
    values[44] = b'{"id": 44 "s": 1}'
    decoded = decode_json(values, text_only=True)
    assert sorted(decoded.rejects) == [37, 44] and decoded.kept == [i for i in range(50) if i not in (37, 44)]
    assert decoded.table.num_rows == 48 and parsed == [values[37], values[44]]
    assert decoded.lines.to_pylist() == [v for i, v in enumerate(values) if i not in (37, 44)]
    parsed.clear()
    clean = decode_json([v for i, v in enumerate(values) if i not in (37, 44)], text_only=True)
    assert not clean.rejects and clean.table.num_rows == 48 and clean.table.num_columns == 0 and not parsed


def test_ndjson_check_takes_fields_whose_type_changes_without_parsing_each_message(monkeypatch):
    import ingest_core.source.json_checks as json_checks

    monkeypatch.setattr(json_checks, "parse_json_object", lambda *a: pytest.fail("a message was parsed alone"))
    values = [b'{"a": %s}' % v for v in (b"1", b'"x"', b"[1]", b'{"b": null}', b"1.5")] * 100
    decoded = decode_json(values, text_only=True)
    assert decoded.kept == list(range(500)) and not decoded.rejects and decoded.lines.to_pylist() == values


def test_ndjson_tombstones_landed_as_rows_and_values_on_several_lines_become_one_line_each():
    values = [b'{"a": 1}', None, b'{"a":\n 2}\n', b' {"a": 3}', b'{"a": 4} {}']
    decoded = Decoder("json", tombstones="row", text_only=True).decode(values)
    assert decoded.kept == [0, 1, 2, 3] and list(decoded.rejects) == [4]
    assert decoded.lines.to_pylist() == [b'{"a": 1}', b"{}", b'{"a":  2}', b'{"a": 3}'] and decoded.lines.null_count == 0


def test_ndjson_values_on_several_lines_are_made_one_line_and_checked_again_without_parsing_each(monkeypatch):
    import ingest_core.source.json_checks as json_checks

    monkeypatch.setattr(json_checks, "parse_json_object", lambda *a: pytest.fail("a message was parsed alone"))
    values = [json.dumps({"id": i, "items": [1, 2]}, indent=2).encode() for i in range(200)]
    decoded = decode_json(values, text_only=True)
    assert decoded.kept == list(range(200)) and not decoded.rejects
    assert decoded.lines.to_pylist() == [v.replace(b"\n", b" ") for v in values]


def test_ndjson_check_compares_keys_as_decoded_text_and_counts_depth_like_python():
    values = [
        b'{"\\u0061": 1, "b": 2}',  # kept: "a" and "b"
        b'{"\\u0061": 1, "a": 2}',  # the same key twice once decoded
        b'{"a": "\\ud83d\\ude00"}',  # a surrogate pair: one character
        b'{"a": "\\ud83d"}',  # half of one
        b'{"a": [{"b": 1}]}',  # depth 3
        b'{"a": [{"b": [1]}]}',  # depth 4
    ]
    decoded = Decoder("json", max_depth=3, text_only=True).decode(values)
    assert decoded.kept == [0, 2, 4]
    assert "duplicate key 'a'" in decoded.rejects[1] and "surrogate" in decoded.rejects[3]
    assert "decode.max_depth (3)" in decoded.rejects[5]


def test_minus_nan_is_found_nested_and_the_text_is_searched_only_when_a_double_is_nan():
    values = [b'{"id": %d, "xs": [1.5, 2.5], "s": "-NaN in a string is text"}' % i for i in range(20)]
    clean = decode_json(values)
    assert not clean.rejects and clean.table.num_rows == 20
    values[7] = b'{"id": 7, "xs": [1.5, -NaN], "s": "t"}'
    values[9] = b'{"id": 9, "xs": [NaN], "s": "t"}'  # NaN itself is accepted (Spark reads it)
    decoded = decode_json(values)
    assert sorted(decoded.rejects) == [7] and "invalid JSON" in decoded.rejects[7]
    assert decoded.table.num_rows == 19


def test_the_lines_reader_gives_the_joined_text_in_any_read_sizes(monkeypatch):
    """pyarrow.json reads a batch through LinesReader instead of one joined copy: the bytes
    must be exactly the values each followed by a newline, however the reads fall."""
    import io

    import pyarrow as pa

    from ingest_core.arrow.binary import LinesReader, joined

    values = pa.array([b'{"a":%d}' % i + b"x" * (i % 5) for i in range(1000)], pa.binary())
    monkeypatch.setattr(LinesReader, "PIECE_ROWS", 7)
    expected = joined(values, b"\n").to_pybytes()
    for size in (1, 3, 64, 1 << 20):
        reader, got = LinesReader(values), bytearray()
        while chunk := reader.read(size):
            got += chunk
        assert bytes(got) == expected
    assert io.BufferedReader(LinesReader(values.slice(3, 0))).read() == b""
    assert io.BufferedReader(LinesReader(values.slice(995)), buffer_size=4).read() == expected[-sum(
        len(v) + 1 for v in values.slice(995).to_pylist()):]


def test_text_over_the_join_limit_is_read_piece_by_piece_and_gives_the_same_table(monkeypatch):
    """A slice is joined for the parser (pyarrow reads it in place); a whole batch over
    JOINED_PARSE_BYTES goes through LinesReader instead (no joined copy of 64 MiB)."""
    from ingest_core.source import decode

    values = [b'{"id": %d, "s": "x%d", "t": "2026-11-30T12:00:00", "xs": [1.5]}' % (i, i) for i in range(500)]
    sources = []
    real = decode.pa_json.read_json
    monkeypatch.setattr(decode.pa_json, "read_json", lambda source, **k: sources.append(type(source)) or real(source, **k))
    joined = decode.Decoder("json").decode(values).table
    assert set(sources) == {pa.BufferReader}
    sources.clear()
    monkeypatch.setattr(decode, "JOINED_PARSE_BYTES", 1000)
    monkeypatch.setattr(decode.LinesReader, "PIECE_ROWS", 7)
    assert decode.Decoder("json").decode(values).table.equals(joined)
    assert set(sources) == {io.BufferedReader}


def test_one_whole_batch_parse_at_a_time_but_ndjson_slices_are_free(monkeypatch):
    """The publisher threads share a Decoder; its lock lets one whole-batch parse (Parquet)
    run at a time (pyarrow.json already uses every core), while NDJSON's small validation
    slices never wait for it."""
    from ingest_core.source import decode

    seen = []
    real = decode._parse_checked
    monkeypatch.setattr(decode, "_parse_checked", lambda *a, **k: seen.append(held.whole_parse.locked()) or real(*a, **k))
    held = decode.Decoder("json")
    assert held.decode([b'{"a":1}', b'{"a":2}']).table.num_rows == 2 and seen == [True]
    assert not held.whole_parse.locked()
    seen.clear()
    held = decode.Decoder("json", text_only=True)
    assert held.decode([b'{"a":1}', b'{"a":2}']).kept == [0, 1] and seen == []  # NDJSON is checked, not parsed


def test_slices_are_parsed_on_the_calling_thread_and_whole_batches_on_arrows_pool(monkeypatch):
    """A slice is a block or two: Arrow's thread pool only cost CPU and kept its memory in
    threads whose allocator caches are never released (round 8)."""
    from ingest_core.source import decode

    seen = []
    real = decode.pa_json.read_json
    monkeypatch.setattr(decode.pa_json, "read_json", lambda *a, **k: seen.append(k["read_options"].use_threads) or real(*a, **k))
    monkeypatch.setattr(decode, "PARSE_SLICE_BYTES", 200)
    values = [b'{"id": %d, "s": "x"}' % i for i in range(60)]
    tables = list(decode.Decoder("json").decode_in_slices(values))
    assert sum(t.num_rows for t in tables) == 60 and len(tables) > 1 and seen and not any(seen)
    seen.clear()
    assert decode.Decoder("json").decode(values).table.num_rows == 60 and seen and all(seen)


@pytest.mark.parametrize("count", [7, 30_000])
def test_a_list_that_holds_only_nulls_lands_in_parquet(count):
    """pyarrow.json (26.0) builds a list<null> column whose offsets run past its items when the lists
    hold nulls; the Parquet writer then refuses the table, and the batch could never land. Such a
    table is parsed again row by row. 30,000 rows: the batch in slices, the first one affected."""
    import pyarrow.parquet as pq

    from ingest_core.sink.formats import data_bytes
    from ingest_core.sink.formats.base import Rows
    from ingest_core.sink.formats.parquet import ParquetEncoder
    from ingest_core.source.decoded import NotSliceable

    values = [b'{"a":[null],"b":%d}' % i if i % 3 else b'{"a":[null,null],"b":%d}' % i for i in range(count)]
    decoder = Decoder("json")
    tables = decoder.decode_in_slices(values)
    try:
        table = pa.concat_tables(list(tables)) if tables is not None else decoder.decode(values).table
    except NotSliceable:  # the whole batch, as the encoder does
        table = decoder.decode(values).table
    table.validate(full=True)
    data = ParquetEncoder("zstd").encode(Rows(payload=table, metadata=None, json_lines=None))
    landed = pq.read_table(pa.BufferReader(data_bytes(data))).to_pylist()
    assert landed == [json.loads(v) for v in values]
