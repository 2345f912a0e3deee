"""PartitionBuffer: values kept back to back in one column and cut into batches without a copy."""
from __future__ import annotations

import pyarrow as pa
from fakes import FakeMessage

from ingest_core.batching import maps
from ingest_core.batching.buffer import Batch, FlushPolicy, PartitionBuffer, ValueColumn


def _buffer_with(values: list[bytes | None], keys: list[bytes | None] | None = None, start: int = 10) -> PartitionBuffer:
    buffer = PartitionBuffer("orders", 0)
    keys = keys or [None] * len(values)
    for i, (value, key) in enumerate(zip(values, keys, strict=False)):
        buffer.append(FakeMessage("orders", 0, start + 2 * i, value, key, 1_700_000_000_000 + i), now=1.0)
    return buffer


def test_a_full_cut_hands_the_values_over_as_one_binary_array_with_nulls_kept():
    values = [b'{"a":1}', None, b"", b'{"b":"x"}']
    buffer = _buffer_with(values, keys=[b"k", None, None, b"kk"])
    batch = buffer.take()
    assert batch.values.type == pa.binary()
    assert batch.values.to_pylist() == values
    assert [batch.value(i) for i in range(4)] == values
    assert batch.nbytes == sum(len(v) for v in values if v) + 3
    assert list(batch.offsets) == [10, 12, 14, 16] and batch.end == 16 and batch.base == 10
    assert list(batch.timestamps) == [1_700_000_000_000 + i for i in range(4)]
    assert len(buffer) == 0 and buffer.nbytes == 0 and buffer.base == 17


def test_the_buffer_fills_again_after_a_cut_while_the_batch_still_holds_its_values():
    buffer = _buffer_with([b"one", b"two"])
    first = buffer.take()
    for i, value in enumerate([b"three", b"four"]):
        buffer.append(FakeMessage("orders", 0, 20 + i, value, None, 5), now=2.0)
    second = buffer.take()
    assert first.values.to_pylist() == [b"one", b"two"]
    assert second.values.to_pylist() == [b"three", b"four"]
    assert second.base == 13 and list(second.offsets) == [20, 21]


def test_a_partial_cut_leaves_the_later_messages_in_the_buffer_in_order():
    values = [b"a" * n for n in range(1, 8)] + [None, b"last"]
    buffer = _buffer_with(values)
    batch = buffer.take(through_offset=18)  # offsets 10, 12, ..., 26: five of them are <= 18
    assert batch.values.to_pylist() == values[:5]
    assert batch.nbytes == sum(range(1, 6))
    assert list(buffer.offsets) == [20, 22, 24, 26]
    rest = buffer.take()
    assert rest.values.to_pylist() == values[5:]
    assert rest.base == 19 and rest.nbytes == 6 + 7 + 4


def test_after_a_partial_cut_the_buffer_counts_keys_and_nulls_right_and_fills_on():
    values = [None, b"v1", b"v22", None, b"v4444", b"v55555"]
    keys = [b"k0", None, b"k22", b"k3", None, b"k5"]
    buffer = _buffer_with(values, keys=keys)
    batch = buffer.take(through_offset=14)  # offsets 10, 12, 14
    assert batch.values.to_pylist() == values[:3] and batch.nbytes == 2 + 3 + 2 + 3
    assert buffer.nbytes == 5 + 6 + 2 + 2 and buffer.values.nulls == [0]
    buffer.append(FakeMessage("orders", 0, 30, None, None, 9), now=2.0)
    buffer.append(FakeMessage("orders", 0, 31, b"after", b"k", 9), now=2.0)
    rest = buffer.take()
    assert rest.values.to_pylist() == [*values[3:], None, b"after"]
    assert rest.nbytes == 5 + 6 + 2 + 2 + 5 + 1 and rest.keys == [*keys[3:], None, b"k"]


def test_restore_puts_a_cut_batch_back_in_front_of_what_came_since():
    buffer = _buffer_with([b"x1", None, b"x3"], keys=[b"k1", None, None])
    batch = buffer.take()
    buffer.append(FakeMessage("orders", 0, 30, b"later", None, 9), now=3.0)
    buffer.restore(batch, now=4.0)
    assert buffer.base == 10 and buffer.opened_at == 3.0  # open since the message that came after the cut
    again = buffer.take()
    assert again.values.to_pylist() == [b"x1", None, b"x3", b"later"]
    assert list(again.offsets) == [10, 12, 14, 30]
    assert again.keys == [b"k1", None, None, None]
    assert again.nbytes == 2 + 2 + 5 + 2


def test_messages_before_the_committed_offset_are_dropped_whenever_they_come():
    buffer = _buffer_with([b"a", b"b", b"c", b"d"])  # offsets 10, 12, 14, 16
    assert buffer.drop_before(13) == 2 and buffer.base == 13
    assert list(buffer.offsets) == [14, 16] and buffer.nbytes == 2
    buffer.extend([FakeMessage("orders", 0, o, b"x", None, 5) for o in (11, 12, 18)], now=2.0)  # a later fetch
    assert list(buffer.offsets) == [14, 16, 18]
    batch = buffer.take()
    assert batch.base == 13 and batch.values.to_pylist() == [b"c", b"d", b"x"]
    empty = PartitionBuffer("orders", 0)
    assert empty.drop_before(7) == 0 and empty.base == 7


def test_a_batch_put_back_into_an_empty_buffer_comes_due_by_age_again():
    buffer = _buffer_with([b"a", b"b"])
    batch = buffer.take()
    assert buffer.opened_at is None
    buffer.restore(batch, now=7.0)
    assert buffer.opened_at == 7.0
    policy = FlushPolicy(max_records=100, max_bytes=1 << 20, max_age=5.0)
    assert policy.reason(buffer, 11.0) is None and policy.reason(buffer, 12.0) == "age"


def test_a_batch_built_from_lists_converts_its_values():
    batch = Batch("t", 1, 0, [0, 1], [5, 6], [None, None], [b"v", None], [None, None])
    assert batch.values.type == pa.binary() and batch.values.to_pylist() == [b"v", None]


def test_value_column_array_shares_the_column_memory():
    column = ValueColumn()
    column.extend([b"abc", b"de"])
    array = column.array()
    assert array.to_pylist() == [b"abc", b"de"]
    assert array.buffers()[2].address == pa.py_buffer(column.data).address


def test_extend_takes_a_consume_batch_at_once_nulls_and_empty_values_included():
    buffer = PartitionBuffer("orders", 0)
    buffer.extend([FakeMessage("orders", 0, 5, b"ab")], now=1.0)
    values = [b"c", None, b"", b"def", None]
    buffer.extend([FakeMessage("orders", 0, 6 + i, v, b"key" if i == 0 else None) for i, v in enumerate(values)], now=2.0)
    assert buffer.nbytes == 2 + 1 + 3 + 3 and buffer.opened_at == 1.0 and buffer.base == 5
    batch = buffer.take()
    assert batch.values.to_pylist() == [b"ab"] + values
    assert batch.values.null_count == 2 and list(batch.offsets) == list(range(5, 11))


def test_value_column_grows_in_place_and_its_memory_lives_as_long_as_the_batch(monkeypatch):
    monkeypatch.setattr(ValueColumn, "FIRST_CAPACITY", 16)  # grow several times
    column = ValueColumn()
    chunks = [[bytes([65 + i % 26]) * (i + 1) for i in range(j, j + 7)] for j in range(0, 70, 7)]
    for values in chunks:
        column.extend(values)
    flat = [v for values in chunks for v in values]
    array = column.array()
    assert array.to_pylist() == flat and column.size == sum(map(len, flat))
    assert array.buffers()[2].size == column.size  # the map's spare capacity is not part of the array
    mapping = column.data
    del column
    assert not mapping.closed and array.to_pylist() == flat  # the batch keeps the bytes alive


def _map_flags(column: ValueColumn) -> set[str]:
    """The VmFlags the kernel shows for the column's memory map (/proc/self/smaps)."""
    import ctypes

    start = ctypes.addressof(ctypes.c_char.from_buffer(column.data))
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(part, 16) for part in head.split("-"))
            inside = low <= start < high
        elif inside and head == "VmFlags:":
            return set(line.split()[1:])
    raise AssertionError("the column's map is not in /proc/self/smaps")


def test_a_column_past_sixteen_mib_asks_for_huge_pages_and_a_smaller_one_does_not(monkeypatch):
    monkeypatch.setattr(maps, "HUGE_PAGES_FROM", 4 << 20)
    small, large = ValueColumn(), ValueColumn()
    small.extend([b"x" * 1024] * 1000)  # 1 MiB
    large.extend([b"x" * 1024] * 5000)  # 5 MiB: the map grows past 4 MiB
    assert "hg" not in _map_flags(small) and "hg" in _map_flags(large)
    assert large.array().to_pylist() == [b"x" * 1024] * 5000
