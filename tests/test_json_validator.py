"""The C check of NDJSON output (ingest_core/source/json_validator.c) against the per-message
parser that decides what is dead-lettered (json_message.parse_json_object): a row the check
passes must be one that parser keeps, and a valid row should not be flagged."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from ingest_core.source import json_validator
from ingest_core.source.json_checks import suspect_rows
from ingest_core.source.json_message import parse_json_object

FLAGGED = [  # each breaks one rule
    b'{"a":1,"a":2}',
    b'{"a":{"b":1,"b":2}}',
    b'{"a":[{"b":1,"c":2,"b":3}]}',
    b'{"\\u0061":1,"a":2}',
    b'{"a\\"b":1,"a\\u0022b":2}',
    b'{"\\ud83d\\ude00":1,"\xf0\x9f\x98\x80":2}',
    b'{"a":1,}',
    b'{"a":1',
    b'{"a" 1}',
    b'{a:1}',
    b"{'a':1}",
    b'{"a":1}{}',
    b'{"a":1} x',
    b"[1]",
    b"",
    b" ",
    b'{"a":01}',
    b'{"a":1.}',
    b'{"a":.5}',
    b'{"a":1e}',
    b'{"a":+1}',
    b'{"a":-}',
    b'{"a":-NaN}',
    b'{"a":tru}',
    b'{"a":nul}',
    b'{"a":True}',
    b'{"a":"\xff"}',
    b'{"a":"\xc0\xaf"}',  # overlong "/"
    b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate
    b'{"a":"\xf4\x90\x80\x80"}',  # past U+10FFFF
    b'{"a":"\xe2\x82"}',  # cut short
    b'{"a":"x\ty"}',  # a raw tab in a string
    b'{"a":"x\x00y"}',
    b'{"a":"\\x"}',
    b'{"a":"\\u12"}',
    b'{"a":"\\ud83d"}',
    b'{"a":"\\ude00"}',
    b'{"a":"\\ud83dx"}',
    b'{"a":"\\ud83d\\u0041"}',
    b'{"a":"x}',
]
NOT_ONE_LINE = [  # valid JSON objects that are not one NDJSON line as they are: the parser's look makes them one
    b' { "a" : [ 1 , 2 ] , "b" : { } } ',
    b'{"a":\t1,\r\n"b":2}',
    b'{"a":1}\n',
    b'\xef\xbb\xbf{"a":1}',
]
PASSED = [
    b"{}",
    b"{ }",
    b'{ "a" : [ 1 , 2 ] , "b" : {\t} }',
    b'{"a":NaN,"b":Infinity,"c":-Infinity}',
    b'{"a":-0.5e-3,"b":1E+5,"c":0,"d":-0,"e":123456789012345678901234567890}',
    b'{"a":true,"b":false,"c":null}',
    b'{"a":"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f"}',
    b'{"a":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\ud83d\\ude00"}',
    b'{"a":[{"b":1},{"b":2}],"b":{"a":1}}',
    b'{"\\u0061":1,"b":2}',
    b'{"a":"","":""}',
]


def check(values: list[bytes], max_depth: int = 64) -> list[int]:
    return suspect_rows(pa.array(values, pa.binary()), max_depth)


@pytest.mark.parametrize("value", FLAGGED, ids=repr)
def test_a_row_that_breaks_a_rule_is_flagged_and_the_parser_rejects_it(value):
    assert check([b"{}", value, b"{}"]) == [1]
    assert isinstance(parse_json_object(value), str)


@pytest.mark.parametrize("value", PASSED, ids=repr)
def test_a_row_within_the_rules_passes_and_the_parser_keeps_it(value):
    assert check([value]) == []
    assert isinstance(parse_json_object(value), dict)


@pytest.mark.parametrize("value", NOT_ONE_LINE, ids=repr)
def test_a_valid_object_that_is_not_one_line_as_it_is_is_flagged(value):
    assert check([value]) == [0]


def test_a_null_is_flagged_whatever_bytes_its_slot_spans():
    offsets = pa.array([0, 2, 4], pa.int32()).buffers()[1]
    validity = pa.array([True, False]).buffers()[1]
    values = pa.Array.from_buffers(pa.binary(), 2, [validity, offsets, pa.py_buffer(b"{}{}")], null_count=1)
    assert suspect_rows(values, 64) == [1]


@pytest.mark.parametrize("inside", [b"\x00", b"\x1f", b"\n", b"\xff", b"\x80", b"\xc3", b'\\x', b'\\ud800', b'"'])
def test_a_byte_a_string_cannot_hold_is_found_at_every_position_of_a_long_string(inside):
    """Long strings are scanned 16 and 8 bytes at a time: a bad byte (or escape) is found whichever
    byte of a block it falls on, and the same string without it passes."""
    for position in range(40):
        text = b"a" * position + inside + b"b" * (39 - position)
        assert check([b'{"k":"' + text + b'"}']) == [0], (inside, position)
    for position in range(40):  # valid: an escape, a two- and a four-byte character
        for good in (b'\\"', b"\xc3\xa9", b"\xf0\x9f\x98\x80"):
            text = b"a" * position + good + b"b" * (39 - position)
            assert check([b'{"k":"' + text + b'"}']) == [], (good, position)


def test_depth_counts_objects_and_arrays_from_the_top_level_object():
    def nested(depth: int) -> bytes:
        return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    assert check([nested(64), nested(65), nested(2)]) == [1]
    assert check([nested(3), nested(4)], max_depth=3) == [1]
    assert check([nested(2000)], max_depth=5000) == [0]  # past what Python's parser follows: its look decides


def test_objects_with_many_keys_find_a_duplicate_anywhere():
    wide = b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(300)) + b"}"
    assert check([wide, wide[:-1] + b',"k299":0}', wide[:-1] + b',"k0":0}', wide[:-1] + b',"k300":0}']) == [1, 2]


def test_a_slice_of_an_array_is_read_from_its_own_offset():
    values = pa.array([b'{"a":1,"a":2}', b"{}", b"[]", b'{"b":1}'], pa.binary())
    assert suspect_rows(values.slice(1), 64) == [1]
    assert suspect_rows(values.slice(1, 1), 64) == []


def test_offsets_outside_the_data_are_refused_not_read():
    offsets = pa.array([0, 2, 1000], pa.int32()).buffers()[1]
    with pytest.raises(ValueError, match="outside the data"):
        json_validator.suspect_rows(b"{}{}", offsets, 0, 2, 64)
    with pytest.raises(ValueError, match="fewer than"):
        json_validator.suspect_rows(b"{}{}", offsets, 0, 5, 64)


def _one_line(value: bytes) -> bool:
    return value[:1] == b"{" and value[-1:] == b"}" and b"\n" not in value and b"\r" not in value


def _document(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 4 and roll < 0.25:
        keys = [rng.choice(["a", "b", "é", "\\u00e9", '\\"', "k0", "k1", ""]) for _ in range(rng.randint(0, 5))]
        return "{" + ",".join(f'"{key}":{_document(rng, depth + 1)}' for key in keys) + "}"
    if depth < 4 and roll < 0.4:
        return "[" + ",".join(_document(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    return rng.choice(
        ["1", "-2.5e3", "0", '"x"', '"\\ud83d\\ude00"', '"\\n"', "true", "null", "NaN", "-Infinity", '"ü€😀"', '"\\u0000"']
    )


def _mutated(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        roll = rng.random()
        if roll < 0.4 and data:
            data[min(at, len(data) - 1)] = rng.choice(b'{}[]",:\\ 0123456789.eE+-tfnNIu\xff\xc3\x80\x01')
        elif roll < 0.7:
            data.insert(at, rng.choice(b'{}[]",:\\ 0.eE-\xc3\x80'))
        elif data:
            del data[min(at, len(data) - 1)]
    return bytes(data)


def test_against_the_parser_on_random_documents_and_damaged_ones():
    """Nothing the check passes is rejected by the parser; of the documents the parser keeps, only
    those that are not one line as they are (blanks around, a line break) are flagged."""
    rng = random.Random(20261207)
    values = []
    for _ in range(20_000):
        text = f'{{"r":{_document(rng)},"s":{_document(rng)}}}'.encode()
        values.append(_mutated(rng, text) if rng.random() < 0.6 else text)
    flagged = set(check(values, max_depth=3))
    verdicts = [parse_json_object(value, 3) for value in values]
    passed_but_rejected = [v for i, v in enumerate(values) if i not in flagged and isinstance(verdicts[i], str)]
    flagged_but_kept = [
        v for i, v in enumerate(values) if i in flagged and not isinstance(verdicts[i], str) and _one_line(v)
    ]
    assert passed_but_rejected == [] and flagged_but_kept == []
    assert 0.2 < len(flagged) / len(values) < 0.8  # both kinds were tried


def test_the_bench_events_pass():
    events = [
        json.dumps({"id": i, "customer": {"id": i % 7, "name": "n"}, "items": [{"sku": "a", "qty": 1}] * (i % 4 + 1)})
        for i in range(1000)
    ]
    assert check([e.encode() for e in events]) == []
