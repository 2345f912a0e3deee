"""schema.py: lossless JSON typing and the fixes that make a table readable by Spark."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from ingest_core.arrow.schema import NumberText, json_text, rows_to_table
from ingest_core.arrow.spark import spark_names, spark_readable


def roundtrip(table: pa.Table) -> pa.Table:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return pq.read_table(io.BytesIO(sink.getvalue()))


def test_rows_to_table_unifies_nested_fields_and_lists():
    rows = [{"l": [1, 2], "s": {"x": 1}}, {"l": [2.5], "s": {"y": "z"}}, {"l": [], "s": None}]
    table, widened = rows_to_table(rows)
    assert table.schema.field("l").type == pa.list_(pa.float64())
    assert table.schema.field("s").type == pa.struct([("x", pa.int64()), ("y", pa.string())])
    assert table.to_pylist() == [{"l": [1.0, 2.0], "s": {"x": 1, "y": None}}, {"l": [2.5], "s": {"x": None, "y": "z"}},
                                 {"l": [], "s": None}]
    assert widened == 0


def test_mixed_list_elements_become_text():
    table, widened = rows_to_table([{"l": [1, "a", {"b": True}]}])
    assert table.column("l").to_pylist() == [["1", "a", '{"b":true}']] and widened == 2


def test_number_text_stays_an_unquoted_number_inside_json_text():
    assert json_text({"n": NumberText("123456789012345678901234567890"), "f": float("nan")}) == \
        '{"n":123456789012345678901234567890,"f":NaN}'


def test_rows_without_fields_keep_their_count():
    table, _ = rows_to_table([{}, {}])
    assert table.num_rows == 2 and table.num_columns == 0


def test_null_and_empty_object_columns_are_dropped_and_nested_ones_too():
    table = pa.table({
        "n": pa.array([None, None], pa.null()),
        "e": pa.array([{}, None], pa.struct([])),
        "s": pa.array([{"keep": 1, "gone": None, "empty": {}}, None],
                      pa.struct([("keep", pa.int64()), ("gone", pa.null()), ("empty", pa.struct([]))])),
        "x": [1, 2],
    })
    fixed, renamed = spark_readable(table)
    assert fixed.column_names == ["s", "x"] and not renamed
    assert fixed.schema.field("s").type == pa.struct([("keep", pa.int64())])
    assert roundtrip(fixed).to_pylist() == [{"s": {"keep": 1}, "x": 1}, {"s": None, "x": 2}]


def test_lists_of_nulls_and_of_empty_objects_keep_their_elements_as_text():
    table = pa.table({
        "tags": pa.array([[], [None], None], pa.list_(pa.null())),
        "objs": pa.array([[{}, None], [], None], pa.list_(pa.struct([]))),
        "m": pa.array([[("k", None)], None, []], pa.map_(pa.string(), pa.null())),
    })
    fixed, _ = spark_readable(table)
    assert fixed.schema.field("tags").type == pa.list_(pa.string())
    assert roundtrip(fixed).to_pylist(maps_as_pydicts="strict") == [
        {"tags": [], "objs": ["{}", None], "m": {"k": None}},
        {"tags": [None], "objs": [], "m": None},
        {"tags": None, "objs": None, "m": {}},
    ]


def test_names_spark_refuses_are_rewritten_and_reported():
    table = pa.table({"a b": [1], "c,d;e{f}(g)=h": [2], "": [3], "tab\there": [4],
                      "s": pa.array([{"x y": 1}])})
    fixed, renamed = spark_readable(table)
    assert fixed.column_names == ["a_b", "c_d_e_f__g__h", "_blank", "tab_here", "s"]
    assert fixed.schema.field("s").type == pa.struct([("x_y", pa.int64())])
    assert renamed == {"a_b": "a b", "c_d_e_f__g__h": "c,d;e{f}(g)=h", "_blank": "", "tab_here": "tab\there",
                       "s.x_y": "s.x y"}


def test_names_equal_but_for_case_are_made_unique_the_same_way_in_any_order():
    assert spark_names(["amount", "Amount", "AMOUNT"]) == ["amount__3", "Amount__2", "AMOUNT"]
    assert spark_names(["AMOUNT", "amount", "Amount"]) == ["AMOUNT", "amount__3", "Amount__2"]
    assert spark_names(["_offset", "_OFFSET"], keep=["_offset"]) == ["_offset", "_OFFSET__2"]
    # a rewritten name never collides with another existing name
    assert spark_names(["a b", "a_b"]) == ["a_b", "a_b__2"] or spark_names(["a b", "a_b"]) == ["a_b__2", "a_b"]


def test_types_spark_cannot_read_are_converted():
    table = pa.table({
        "t": pa.array([1000], pa.time32("ms")),
        "u": pa.array([2**64 - 1], pa.uint64()),
        "u8": pa.array([255], pa.uint8()),
        "d": pa.array([1], pa.int64()).cast(pa.decimal256(50, 0)),
    })
    fixed, _ = spark_readable(table)
    assert [f.type for f in fixed.schema] == [pa.int64(), pa.decimal128(20, 0), pa.int32(), pa.string()]
    assert fixed.to_pylist()[0]["u"] == 2**64 - 1


def test_sliced_struct_arrays_are_rebuilt_correctly():
    array = pa.array([{"a": 1, "n": None}, None, {"a": 3, "n": None}],
                     pa.struct([("a", pa.int64()), ("n", pa.null())])).slice(1)
    fixed, _ = spark_readable(pa.table({"s": array}))
    assert fixed.column("s").to_pylist() == [None, {"a": 3}]


def test_a_table_of_many_chunks_is_fixed_chunk_by_chunk_like_one_chunk():
    """pyarrow.json gives a chunk per MiB parsed; fixing each chunk must equal fixing the whole."""
    from ingest_core.arrow.spark import spark_readable

    def chunk(start):
        return pa.table({
            "u": pa.array(range(start, start + 3), pa.uint64()),
            "gone": pa.nulls(3),
            "s": pa.array([{"Key": i, "key": None} for i in range(3)],
                          pa.struct([("Key", pa.int64()), ("key", pa.string())])),
            "ok": pa.array(["a", "b", "c"]),
        })

    chunked = pa.concat_tables([chunk(0), chunk(3), chunk(6)])
    assert chunked.column("u").num_chunks == 3
    fixed, renamed = spark_readable(chunked)
    whole, renamed_whole = spark_readable(chunked.combine_chunks())
    assert fixed.equals(whole) and renamed == renamed_whole
    assert "gone" not in fixed.column_names and fixed.schema.field("u").type == pa.decimal128(20, 0)
