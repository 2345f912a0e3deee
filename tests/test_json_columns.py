"""json_columns.c (through json_table.py): JSON lines into the columns of a known schema. Whatever it
takes, it must give exactly pyarrow.json's table for the same schema; whatever pyarrow.json refuses,
it must refuse too (None), so that the caller's fallback decides as before."""

from __future__ import annotations

import io
import json
import random
import struct

import pyarrow as pa
import pyarrow.json as pa_json
import pytest

from ingest_core.source.decode import Decoder
from ingest_core.source.json_table import plan_of, table_of


def _pyarrow(lines: list[bytes], schema: pa.Schema) -> pa.Table | None:
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        return pa_json.read_json(io.BytesIO(b"\n".join(lines)), parse_options=options).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _mine(lines: list[bytes], schema: pa.Schema) -> pa.Table | None:
    return table_of(pa.array(lines, pa.binary()), schema)


def _bits(table: pa.Table) -> list:
    """The table's values with every double as its 8 bytes (so -0.0 and 0.0, or two NaNs, differ)."""

    def exact(value):
        if isinstance(value, float):
            return struct.pack("<d", value)
        if isinstance(value, dict):
            return {k: exact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [exact(v) for v in value]
        return value

    return exact(table.to_pylist())


def _agrees(lines: list[bytes], schema: pa.Schema) -> bool:
    """Checks the contract for these lines; True when the C parse took them."""
    theirs, mine = _pyarrow(lines, schema), _mine(lines, schema)
    if theirs is None:
        assert mine is None, f"pyarrow.json refuses {lines!r} but the C parse took it"
        return False
    if mine is not None:
        mine.validate(full=True)
        assert mine.schema == theirs.schema
        for name in theirs.column_names:
            if _valid(theirs.column(name)):
                assert _bits(mine.select([name])) == _bits(theirs.select([name])), lines
    return mine is not None


def _valid(column: pa.ChunkedArray) -> bool:
    """pyarrow.json (26.0) builds list<null> columns whose offsets run past their items; such a
    column is not compared (the C parse's must still be valid: checked above)."""
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        assert "list<item: null>" in str(column.type)
        return False
    return True


_WORDS = ["a", "é", "😀", 'q"uote', "back\\slash", "tab\t", "nl\n", "\u0000", "\u001f", "/", "\u2028", "x" * 40]


def _shape(rng: random.Random, depth: int) -> object:
    kinds = ["bool", "int", "double", "string", "null"] + (["list", "struct"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "list":
        return ["list", _shape(rng, depth + 1)]
    if kind == "struct":
        return ["struct", {f"f{depth}_{i}": _shape(rng, depth + 1) for i in range(rng.randint(1, 4))}]
    return kind


def _value(rng: random.Random, shape) -> object:
    if rng.random() < 0.15 and shape != "null":
        return None
    if shape == "null":
        return None
    if shape == "bool":
        return rng.random() < 0.5
    if shape == "int":
        return rng.choice([0, -1, 1, rng.randint(-(1 << 63), (1 << 63) - 1), rng.randint(-1000, 1000)])
    if shape == "double":
        return rng.choice([0.5, -0.0, 1e300, 5e-324, rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-30, 30)])
    if shape == "string":
        return "".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 4)))
    if shape[0] == "list":
        return [_value(rng, shape[1]) for _ in range(rng.randint(0, 3))]
    fields = shape[1]
    return {k: _value(rng, v) for k, v in fields.items() if rng.random() < 0.85}


def _document(rng: random.Random, shapes: dict) -> bytes:
    row = {k: _value(rng, v) for k, v in shapes.items() if rng.random() < 0.9}
    keys = list(row)
    rng.shuffle(keys)
    separators = rng.choice([(",", ":"), (", ", ": ")])
    return json.dumps({k: row[k] for k in keys}, separators=separators, ensure_ascii=rng.random() < 0.5).encode()


def _schema_of(lines: list[bytes]) -> pa.Schema:
    return pa_json.read_json(io.BytesIO(b"\n".join(lines))).schema


@pytest.mark.parametrize("seed", range(40))
def test_random_documents_give_pyarrow_json_table(seed):
    rng = random.Random(seed)
    shapes = {f"c{i}": _shape(rng, 0) for i in range(rng.randint(1, 6))}
    first = [_document(rng, shapes) for _ in range(200)]
    schema = _schema_of(first)
    later = [_document(rng, shapes) for _ in range(200)]
    _agrees(later, schema)


def test_random_documents_are_mostly_taken():
    """The differential test above proves little if the C parse refuses everything."""
    taken = tried = 0
    for seed in range(40):
        rng = random.Random(seed)
        shapes = {f"c{i}": _shape(rng, 0) for i in range(rng.randint(1, 6))}
        first = [_document(rng, shapes) for _ in range(200)]
        schema = _schema_of(first)
        later = [_document(rng, shapes) for _ in range(20)]
        for line in later:  # one at a time: a row the first rows never typed is refused alone
            if _pyarrow([line], schema) is not None:
                tried += 1
                taken += _agrees([line], schema)
    assert tried > 400
    assert taken == tried


_SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("d", pa.float64()),
        ("s", pa.string()),
        ("b", pa.bool_()),
        ("n", pa.null()),
        ("l", pa.list_(pa.int64())),
        ("o", pa.struct([("x", pa.int64()), ("y", pa.string())])),
    ]
)

_LINES = [
    # taken
    b'{"i":1,"d":2,"s":"x","b":true,"n":null,"l":[1,2],"o":{"x":1,"y":"z"}}',
    b'{"i":-0,"d":-0,"s":"","b":false,"l":[],"o":{}}',
    b'{"i":9223372036854775807,"d":-0.0}',
    b'{"i":-9223372036854775808,"d":1e-400}',
    b'{ "i" : 1 , "l" : [ 1 , null ] , "o" : null }',
    b'{"s":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00\\u0000"}',
    b'{"d":123456789012345678901234567890}',
    b'{"d":0.1e1,"i":0}',
    b'{"d":1.7976931348623157e308}',
    b'{"d":4.9e-324}',
    b'{"d":2.2250738585072011e-308}',
    b'{"d":9007199254740993}',
    b'{"d":1E22,"i":1}',
    b'{"d":1e23}',
    b"{}",
    # refused by pyarrow.json or by the C parse
    b'{"i":9223372036854775808}',
    b'{"i":-9223372036854775809}',
    b'{"i":1.0}',
    b'{"i":1e2}',
    b'{"i":"1"}',
    b'{"i":true}',
    b'{"s":1}',
    b'{"s":true}',
    b'{"s":{}}',
    b'{"s":[]}',
    b'{"b":1}',
    b'{"n":1}',
    b'{"n":"x"}',
    b'{"l":1}',
    b'{"l":[1.5]}',
    b'{"l":{}}',
    b'{"o":[]}',
    b'{"o":{"z":1}}',
    b'{"o":{"x":1,"x":2}}',
    b'{"zz":1}',
    b'{"i":1,"i":2}',
    b'{"i":1,"i":null}',
    b'{"\\u0069":1}',
    b'{"d":NaN}',
    b'{"d":-NaN}',
    b'{"d":Infinity}',
    b'{"d":-Infinity}',
    b'{"d":1e400}',
    b'{"d":01}',
    b'{"d":1.}',
    b'{"d":.5}',
    b'{"d":+1}',
    b'{"d":1e}',
    b'{"s":"\\ud800"}',
    b'{"s":"\\udc00"}',
    b'{"s":"\\ud800\\u0041"}',
    b'{"s":"\\x"}',
    b'{"s":"\\u12"}',
    b'{"s":"a\tb"}',
    b'{"s":"abc}',
    b'{"i":1,}',
    b'{"i":1',
    b'{"i":1} x',
    b'{"i":1}{}',
    b'{"i" 1}',
    b"{i:1}",
    b'{"i":tru}',
    b'{"b":truex}',
    b'{"i":nul}',
    b'{"i":null1}',
    b"[1]",
]


@pytest.mark.parametrize("line", _LINES, ids=range(len(_LINES)))
def test_each_edge_agrees_with_pyarrow_json(line):
    _agrees([line], _SCHEMA)


def test_the_edges_that_should_be_taken_are():
    taken = [line for line in _LINES if _mine([line], _SCHEMA) is not None]
    assert taken == _LINES[:15]


@pytest.mark.parametrize("seed", range(3))
def test_number_texts_round_as_pyarrow_json(seed):
    """Doubles from every path: the fast one (15 digits, a power of ten up to 22) and strtod."""
    rng = random.Random(seed)
    texts = []
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25))).lstrip("0") or "0"
        text = rng.choice(["", "-"]) + digits
        if rng.random() < 0.6:
            text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
        if rng.random() < 0.5:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330))
        texts.append(text)
    schema = pa.schema([("d", pa.float64())])
    texts += ["0e308", "0e309", "0.0e309", "0.00e309", "0.01e309", "0e-400", "1e-400", "10e308", "1e308", "0e99999"]
    lines = [b'{"d":%s}' % t.encode() for t in texts if abs(float(t)) != float("inf")]
    for line in lines:
        assert _agrees([line], schema) or _pyarrow([line], schema) is None, line
    assert _agrees([line for line in lines if _pyarrow([line], schema) is not None], schema)


def test_the_integer_and_double_column_agree_on_every_int64_edge():
    schema = pa.schema([("i", pa.int64()), ("d", pa.float64())])
    values = [0, 1, -1, 2**31, -(2**31) - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1, -(2**63), 10**18, 999999999999999999]
    assert _agrees([b'{"i":%d,"d":%d}' % (v, v) for v in values], schema)


def test_a_schema_it_cannot_build_is_left_to_pyarrow():
    lines = pa.array([b'{"t":"2020-01-01"}'], pa.binary())
    assert plan_of(pa.timestamp("s")) is None
    assert table_of(lines, pa.schema([("t", pa.timestamp("s"))])) is None
    assert table_of(lines, pa.schema([])) is None
    assert table_of(lines.cast(pa.large_binary()), pa.schema([("t", pa.string())])) is None
    assert table_of(pa.array([b'{"t":"x"}', None], pa.binary()), pa.schema([("t", pa.string())])) is None


def test_a_schema_nested_deeper_than_the_parse_goes_is_left_to_pyarrow():
    t: pa.DataType = pa.int64()
    for _ in range(498):  # the int64 at depth 499: the root is 0, its field 1
        t = pa.list_(t)
    assert plan_of(pa.struct([("a", t)])) is not None
    deeper = pa.struct([("a", pa.list_(t))])
    assert plan_of(deeper) is None
    assert table_of(pa.array([b'{"a":null}'], pa.binary()), pa.schema(list(deeper))) is None


def test_a_slice_of_an_array_is_read_from_its_offset():
    lines = pa.array([b'{"i":1}', b'{"i":2}', b'{"i":3}', b'{"i":4}'], pa.binary())
    table = table_of(lines.slice(1, 2), pa.schema([("i", pa.int64())]))
    assert table is not None and table.column("i").to_pylist() == [2, 3]


def test_a_plan_that_is_not_one_is_an_error():
    from ingest_core.source import json_columns

    offsets = struct.pack("<2i", 0, 2)
    with pytest.raises(ValueError):
        json_columns.parse((5, None, ()), b"{}", offsets, 0, 1)  # a list without its item
    with pytest.raises(ValueError):
        json_columns.parse((4, None, ()), b"{}", offsets, 0, 1)  # the root is not a struct
    with pytest.raises(ValueError):
        json_columns.parse((6, (b"a",), ()), b"{}", offsets, 0, 1)  # a name without its field
    with pytest.raises(TypeError):
        json_columns.parse((6, ("a",), ((2, None, ()),)), b"{}", offsets, 0, 1)  # a name as str
    with pytest.raises(ValueError):
        json_columns.parse((6, (), ()), b"{}", offsets, 0, 5)  # more rows than the offsets hold


def test_parquet_slices_parsed_in_c_give_the_whole_batch_table():
    rng = random.Random(7)
    values = [
        json.dumps(
            {
                "id": i,
                "amount": round(rng.uniform(-1e4, 1e4), 2),
                "who": {"name": rng.choice(_WORDS), "tags": [rng.choice(_WORDS) for _ in range(i % 3)]},
                "at": f"2026-05-{1 + i % 28:02d}T00:00:00Z",
            }
        ).encode()
        for i in range(30_000)
    ]
    decoder = Decoder("json")
    slices = decoder.decode_in_slices(pa.array(values, pa.binary()))
    assert slices is not None
    sliced = pa.concat_tables(list(slices))
    whole = decoder.decode(values).table
    assert sliced.schema == whole.schema
    assert _bits(sliced) == _bits(whole)


@pytest.mark.parametrize("seed", range(12))
def test_a_whole_batch_parsed_in_c_with_the_first_rows_types_is_what_inferring_it_gives(seed, monkeypatch):
    """_parse_lines takes the C parse with the first 1,000 rows' types whenever every row fits them:
    the table must be the one pyarrow.json gives inferring the whole batch (dates kept as text)."""
    from ingest_core.source import decode

    rng = random.Random(seed)
    shapes = {f"c{i}": _shape(rng, 0) for i in range(rng.randint(1, 6))}
    rows = []
    for i in range(3000):
        row = json.loads(_document(rng, shapes))
        if rng.random() < 0.9:
            row["at"] = f"2026-05-{1 + i % 28:02d}T00:00:{i % 60:02d}Z"
        rows.append(json.dumps(row).encode())
    if seed % 3 == 0:  # a later row brings a field the first rows did not have: not taken in C
        rows[2500] = rows[2500][:-1] + b', "late": 1}'
    lines = pa.array(rows, pa.binary())
    taken: list[bool] = []

    def spy(lines: pa.Array, schema: pa.Schema) -> pa.Table | None:
        table = table_of(lines, schema)
        taken.append(table is not None)
        return table

    monkeypatch.setattr(decode, "table_of", spy)
    mine = decode._parse_lines(lines)
    assert taken[0] == (seed % 3 != 0)
    monkeypatch.setattr(decode, "table_of", lambda lines, schema: None)
    theirs = decode._parse_lines(lines)
    assert mine is not None and theirs is not None
    if taken[0]:
        mine.validate(full=True)
    assert mine.schema == theirs.schema
    for name in theirs.column_names:
        if _valid(theirs.column(name)):
            assert _bits(mine.select([name])) == _bits(theirs.select([name]))
