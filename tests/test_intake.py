"""The consume loop's per-message work in C (ingest_core/batching/intake.c), against what the
Python it replaces gave: messages grouped by partition with the reports among them counted, and a
partition's messages taken apart into columns, the values written straight into the buffer's map."""

from __future__ import annotations

import sys
from array import array

import confluent_kafka
import pytest
from fakes import FakeMessage, PartitionEnd

from ingest_core.batching import intake
from ingest_core.batching.buffer import PartitionBuffer, ValueColumn


@pytest.fixture(autouse=True, params=["C functions", "method calls"])
def message_methods(request):
    """Every test here runs with confluent_kafka.Message's methods called through their C functions
    (as `ingest run` does) and through Python's method calls."""
    assert intake.use_methods_of(confluent_kafka.Message if request.param == "C functions" else None) is (
        request.param == "C functions")
    yield request.param
    intake.use_methods_of(None)


def test_use_methods_of_takes_a_type_whose_methods_are_c_functions_only():
    assert intake.use_methods_of(confluent_kafka.Message)
    assert not intake.use_methods_of(FakeMessage)  # Python methods: left as it was
    assert not intake.use_methods_of(int)  # no such methods
    with pytest.raises(TypeError):
        intake.use_methods_of(confluent_kafka.Message(topic="t"))
    messages = [kafka_message(0, 5, b"v"), FakeMessage("t", 0, 6, b"w")]
    offsets, stamps, keys, headers, ends, nulls, key_bytes, value_bytes = intake.columns(
        messages, True, 0, lambda size: bytearray(size))
    assert array("q", offsets).tolist() == [5, 6] and keys == [b"k", None] and value_bytes == 2


def test_a_subclass_of_message_goes_through_its_own_methods():
    class Renumbered(confluent_kafka.Message):
        def offset(self):
            return 1000 + super().offset()

    intake.use_methods_of(confluent_kafka.Message)
    message = Renumbered(topic="t", partition=0, offset=1, key=b"k", value=b"v", timestamp=(1, 5))
    offsets = intake.columns([message], False, 0, lambda size: bytearray(size))[0]
    assert array("q", offsets).tolist() == [1001]


def kafka_message(partition: int, offset: int, value: bytes | None, key: bytes | None = b"k", headers=None):
    return confluent_kafka.Message(topic="t", partition=partition, offset=offset, key=key, value=value,
                                   timestamp=(1, 1_700_000_000_000 + offset), headers=headers)


def test_messages_are_grouped_by_partition_in_order_and_reports_count_what_came_before_them():
    messages = [kafka_message(0, 0, b"a"), kafka_message(1, 0, b"b"), PartitionEnd("t", 1, 1), kafka_message(0, 1, b"c"),
                PartitionEnd("t", 2, 0), kafka_message(1, 1, b"d"), PartitionEnd("t", 0, 2)]
    groups, reports = intake.by_partition(messages)
    assert {p: [m.value() for m in group] for p, group in groups.items()} == {0: [b"a", b"c"], 1: [b"b", b"d"]}
    assert [(m.partition(), before) for m, before in reports] == [(1, 1), (2, 0), (0, 2)]
    assert intake.by_partition([]) == ({}, [])
    with pytest.raises(TypeError):
        intake.by_partition(tuple(messages))


@pytest.mark.parametrize("make", [kafka_message, lambda p, o, v, key=b"k", headers=None: FakeMessage("t", p, o, v, key,
                                                                                   1_700_000_000_000 + o, headers)])
def test_columns_are_what_each_message_says_and_values_land_back_to_back_in_the_room_reserved(make):
    messages = [make(0, 10, b"abc"), make(0, 11, None, key=None), make(0, 12, b"", key=b"kk"),
                make(0, 13, "é".encode() * 3, headers=[("h", b"v")])]
    room = bytearray(100)
    asked = []

    def reserve(count):
        asked.append(count)
        return memoryview(room)[5 : 5 + count]

    offsets, stamps, keys, headers, ends, nulls, key_bytes, value_bytes = intake.columns(messages, True, 7, reserve)
    assert array("q", offsets).tolist() == [10, 11, 12, 13]
    assert array("q", stamps).tolist() == [1_700_000_000_000 + o for o in (10, 11, 12, 13)]
    assert keys == [b"k", None, b"kk", b"k"] and key_bytes == 4
    assert headers == [None, None, None, [("h", b"v")]]
    assert asked == [9] and value_bytes == 9 and bytes(room[5:14]) == b"abc" + "é".encode() * 3
    assert array("q", ends).tolist() == [10, 10, 10, 16] and nulls == [1]
    assert intake.columns(messages, False, 0, lambda n: bytearray(n))[3] is None  # headers() not asked for


def test_columns_refuses_what_it_cannot_take_and_drops_what_it_took_so_far():
    good = kafka_message(0, 1, b"x" * 1000)
    no_tuple = type("NoTuple", (FakeMessage,), {"timestamp": lambda self: 5})("t", 0, 1, b"x")
    refused = [
        (ValueError, "smaller", [good], lambda n: bytearray(n - 1)),
        (TypeError, "bytes or None", [good, FakeMessage("t", 0, 2, "text")], bytearray),
        (TypeError, "tuple", [good, no_tuple], bytearray),
        (ZeroDivisionError, "", [good], lambda n: 1 / 0),
    ]

    def errors() -> list[str]:
        found = []
        for _, _, messages, reserve in refused:
            try:
                intake.columns(messages, False, 0, reserve)
            except Exception as error:  # noqa: BLE001 - each is checked below
                found.append(f"{type(error).__name__}: {error}")
        return found

    before = sys.getrefcount(good.value())
    found = errors()
    after = sys.getrefcount(good.value())
    assert after == before  # no reference kept on the error paths
    for (kind, words, _, _), error in zip(refused, found, strict=True):
        assert error.startswith(kind.__name__) and words in error


def test_a_buffer_takes_real_kafka_messages_as_the_python_columns_did():
    buffer = PartitionBuffer("t", 0, with_headers=True)
    first = [kafka_message(0, o, b"v%d" % o if o % 3 else None, headers=[("h", b"%d" % o)]) for o in range(5)]
    buffer.extend(first, 1.0)
    buffer.extend([kafka_message(0, 5, b"last", key=None)], 2.0)
    assert list(buffer.offsets) == list(range(6)) and buffer.keys == [b"k"] * 5 + [None]
    assert buffer.nbytes == len(b"v1v2v4last") + 5
    assert buffer.headers[:2] == [[("h", b"0")], [("h", b"1")]] and buffer.headers[5] is None
    batch = buffer.take()
    assert batch.values.to_pylist() == [None, b"v1", b"v2", None, b"v4", b"last"]
    assert list(batch.timestamps) == [1_700_000_000_000 + o for o in range(6)]


def test_reserve_grows_the_map_in_place_across_many_lots():
    column = ValueColumn()
    expected = []
    for lot in range(40):
        values = [bytes([lot]) * (1000 + lot)] * 50
        expected += values
        _, _, _, _, ends, nulls, _, count = intake.columns(
            [FakeMessage("t", 0, i, v) for i, v in enumerate(values)], False, column.size, column.reserve)
        column.took(count, ends, nulls)
    assert column.size == sum(map(len, expected)) > ValueColumn.FIRST_CAPACITY
    assert column.array().to_pylist() == expected


def test_a_lot_of_a_mebibyte_or_more_is_copied_without_the_lock_and_lands_whole():
    """Values of 1 MiB and more in one call are copied with Python's lock released: each lands back
    to back, Nones among them take no byte, and every value's reference is dropped after."""
    values = [bytes([i % 251]) * (1024 + i) if i % 7 else None for i in range(3000)]  # ~3 MiB
    messages = [FakeMessage("t", 0, i, v) for i, v in enumerate(values)]
    counts = [sys.getrefcount(v) for v in values if v is not None]
    column = ValueColumn()
    _, _, _, _, ends, nulls, _, count = intake.columns(messages, False, column.size, column.reserve)
    column.took(count, ends, nulls)
    assert count == sum(len(v) for v in values if v is not None) > 1 << 20
    assert column.array().to_pylist() == values
    assert [sys.getrefcount(v) for v in values if v is not None] == counts
