"""Per-partition buffers and the policy that decides when one is flushed.

A buffer holds the consumed messages of one partition column by column (offsets,
timestamps, keys, values, headers), so the encoders can work on whole arrays; the values
are kept back to back in one memory map, which a cut hands over as an Arrow binary array.
`FlushPolicy.reason()` is a pure function of a buffer and the clock.
"""

from __future__ import annotations

import bisect
import mmap
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, islice
from typing import Any, Protocol, cast

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.batching import intake
from ingest_core.batching.maps import KeptMap, MapPool, grow, new_map
from ingest_core.settings import BatchSettings


class KafkaMessage(Protocol):
    """The part of confluent_kafka.Message the pipeline reads (tests pass fakes)."""

    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...


@dataclass(frozen=True)
class Batch:
    """A cut of one partition's messages, ready to encode. `base` is the offset the batch
    follows (the committed position when it started); `end` its last offset. `values` is
    one Arrow binary array (null for a message without a value); lists are converted."""

    topic: str
    partition: int
    base: int
    offsets: Sequence[int]  # array('q') when cut from a buffer
    timestamps: Sequence[int]  # milliseconds since the epoch, UTC
    keys: list[bytes | None]
    values: pa.Array
    headers: list[Any]  # [(key, value), ...] or None per message; an empty list when headers were not kept
    nbytes: int = 0  # bytes of keys and values, as counted against batch.max_bytes

    def __post_init__(self) -> None:
        if not isinstance(self.values, pa.Array):
            object.__setattr__(self, "values", pa.array(self.values, pa.binary()))

    @property
    def end(self) -> int:
        return self.offsets[-1]

    def value(self, index: int) -> bytes | None:
        """One message's value as bytes (dead letters, per-message paths)."""
        return self.values[index].as_py()

    def __len__(self) -> int:
        return len(self.offsets)


class ValueColumn:
    """The values of a buffer back to back in one anonymous memory map, with where each one
    ends: the buffers of an Arrow binary array, so a cut gives the encoder its array without
    a copy. (Holding 65,000 Python `bytes` and copying them into an array at encode time cost
    a quarter of the encode, with the GIL held, and a second copy of the batch in memory.)
    Values arrive a consume() batch at a time: one join and one running sum per batch.

    Why a memory map and not a bytearray: a bytearray lives in the C heap, and one that grows
    by a consume() batch at a time up to tens of MiB left holes there that the heap kept
    (a 30-minute soak peaked at the memory bound with pyarrow on malloc). A private
    anonymous map grows in place (mremap), costs memory only for the pages written, and is
    given back whole when its batch is dropped, or, taken from a pipeline's MapPool (maps.py),
    kept for a later buffer once nothing holds its batch's bytes."""

    __slots__ = ("data", "size", "ends", "nulls", "maps", "kept")

    FIRST_CAPACITY = 1 << 20  # address space, not memory: pages count once written

    def __init__(self, values: list[bytes | None] | None = None, maps: MapPool | None = None) -> None:
        self.data: mmap.mmap | None = None  # made (or taken from `maps`) at the first value
        self.size = 0  # bytes of values in `data`
        self.ends = array("q", [0])  # value i is data[ends[i]:ends[i + 1]]
        self.nulls: list[int] = []  # positions of messages without a value
        self.maps = maps  # where the map comes from: a pipeline's pool, or None for a new one
        self.kept: KeptMap | None = None  # the pool's record of `data`
        if values:
            self.extend(values)

    def extend(self, values: list[bytes | None]) -> int:
        """Append values (None: a message without one); returns the bytes added. One join and
        one running sum in C for the lot, no Python work per value unless some are None."""
        start = self.size
        try:
            lengths = list(map(len, values))  # type: ignore[arg-type]  # a None raises TypeError
        except TypeError:  # a None among them
            lengths = []
            for value in values:
                if value is None:
                    self.nulls.append(len(self.ends) - 1 + len(lengths))
                    lengths.append(0)
                else:
                    lengths.append(len(value))
            values = [v for v in values if v is not None]
        self._append(b"".join(cast("list[bytes]", values)))
        self.ends.fromlist(list(islice(accumulate(lengths, initial=start), 1, None)))  # where each new value ends
        return self.size - start

    def rest(self, count: int) -> ValueColumn:
        """A new column of the values from position `count` on (the messages past a cut): their
        bytes copied from this column's map in one piece, their ends shifted, no Python object
        per value."""
        rest = ValueColumn(maps=self.maps)
        start = self.ends[count]
        if self.size > start:
            assert self.data is not None
            with memoryview(self.data) as data:
                rest._append(data[start : self.size])
        ends = pa.Array.from_buffers(pa.int64(), len(self.ends) - count, [None, pa.py_buffer(self.ends)], offset=count)
        shifted = pc.subtract(ends, pa.scalar(start, pa.int64()))
        rest.ends = array("q")
        rest.ends.frombytes(memoryview(shifted.buffers()[1])[: 8 * len(shifted)])  # no copy of the buffer first
        rest.nulls = [position - count for position in self.nulls if position >= count]
        return rest

    def reserve(self, count: int) -> memoryview:
        """Room for `count` more bytes of values, where they go next (intake.columns writes them)."""
        self._grow(self.size + count)
        assert self.data is not None
        return memoryview(self.data)[self.size : self.size + count]

    def took(self, count: int, ends: bytes, nulls: list[int]) -> None:
        """`count` bytes were written into the room `reserve` gave: `ends` says where each value
        ends, `nulls` are the positions (in this lot) of messages without a value."""
        if nulls:
            first = len(self)
            self.nulls += [first + position for position in nulls]
        self.size += count
        self.ends.frombytes(ends)
        self._wrote()

    def _append(self, data: bytes | memoryview) -> None:
        end = self.size + len(data)
        self._grow(end)
        assert self.data is not None
        self.data[self.size : end] = data
        self.size = end
        self._wrote()

    def _grow(self, end: int) -> None:
        """Make the map hold at least `end` bytes."""
        if self.data is None:
            capacity = max(end, self.FIRST_CAPACITY)
            if self.maps is not None:
                self.kept = self.maps.take(capacity)
                self.data = self.kept.map
            else:
                self.data = new_map(capacity)
        elif end > len(self.data):
            grow(self.data, max(end, 2 * len(self.data)))  # raises BufferError once array() has shared the bytes

    def _wrote(self) -> None:
        if self.kept is not None:
            self.kept.wrote(self.size)

    def __len__(self) -> int:
        return len(self.ends) - 1

    def array(self) -> pa.Array:
        """The values as an Arrow binary array sharing this column's bytes (the column must not
        grow afterwards: a map whose memory is shared cannot be resized)."""
        count = len(self)
        validity = None
        if self.nulls:
            present = [True] * count
            for position in self.nulls:
                present[position] = False
            validity = pa.array(present, pa.bool_()).buffers()[1]
        data = pa.py_buffer(self.data).slice(0, self.size) if self.data is not None else pa.py_buffer(b"")
        values = pa.Array.from_buffers(
            pa.large_binary(), count, [validity, pa.py_buffer(self.ends), data], null_count=len(self.nulls)
        )
        if self.size < 2**31:
            return values.cast(pa.binary())  # new 32-bit offsets; the bytes stay where they are
        return values  # over 2 GiB: only a large_binary array can hold it


@dataclass
class PartitionBuffer:
    topic: str
    partition: int
    base: int | None = None  # next offset to commit; None until the first message or assignment says
    # 8 bytes a number in array('q'), where a list holds a 32-byte int object and a pointer
    offsets: array = field(default_factory=lambda: array("q"))
    timestamps: array = field(default_factory=lambda: array("q"))
    keys: list[bytes | None] = field(default_factory=list)
    values: ValueColumn = field(default_factory=ValueColumn)
    headers: list[Any] = field(default_factory=list)  # empty unless with_headers
    nbytes: int = 0
    opened_at: float | None = None  # monotonic time of the first message in the buffer
    # Keep each message's Kafka headers (`_headers` in output.metadata). Off, headers() is never
    # called: it costs about 90 ns a message with or without headers, measured alone, where the
    # whole consumer spends about 1.7 us a message at 200 B values (bench/RESULTS.md).
    with_headers: bool = True
    maps: MapPool | None = None  # the pipeline's pool the values' maps come from (None: a new map each)

    def __post_init__(self) -> None:
        self.values.maps = self.maps

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, message: KafkaMessage, now: float) -> None:
        self.extend([message], now)

    def extend(self, messages: list[KafkaMessage], now: float) -> None:
        """Add messages of this partition, in offset order, taken apart into the columns in one
        pass in C (intake.c): about a third of the cost of a list comprehension per column."""
        if not messages:
            return
        if self.base is not None and messages[0].offset() < self.base:
            # Before the committed offset this buffer starts at: landed already (see drop_before).
            messages = [m for m in messages if m.offset() >= self.base]
            if not messages:
                return
        if not self.offsets:
            self.opened_at = now
            if self.base is None:
                self.base = messages[0].offset()
        column = self.values
        offsets, stamps, keys, headers, ends, nulls, key_bytes, value_bytes = intake.columns(
            messages, self.with_headers, column.size, column.reserve
        )
        column.took(value_bytes, ends, nulls)
        self.offsets.frombytes(offsets)
        self.timestamps.frombytes(stamps)
        self.keys += keys
        if headers is not None:
            self.headers += headers
        self.nbytes += value_bytes + key_bytes

    def take(self, through_offset: int | None = None) -> Batch:
        """Cut the buffer: the messages up to `through_offset` (all if None) leave as a Batch."""
        count = len(self.offsets)
        if through_offset is not None:
            count = bisect.bisect_right(self.offsets, through_offset)  # offsets only grow
        assert self.base is not None and count > 0
        values = self.values.array()  # the column's bytes move to the batch: it never grows again
        if count == len(self.offsets):  # the usual cut, everything: hand the columns over, no copy
            batch = Batch(
                self.topic,
                self.partition,
                self.base,
                self.offsets,
                self.timestamps,
                self.keys,
                values,
                self.headers,
                self.nbytes,
            )
            self._empty_columns()
        else:
            keys, cut_values = self.keys[:count], values.slice(0, count)
            cut_bytes = self.values.ends[count] + sum(map(len, filter(None, keys)))  # ends[0] is 0
            batch = Batch(
                self.topic,
                self.partition,
                self.base,
                self.offsets[:count],
                self.timestamps[:count],
                keys,
                cut_values,
                self.headers[:count],
                cut_bytes,
            )
            self.values = self.values.rest(count)  # the messages past the cut
            del self.offsets[:count], self.timestamps[:count], self.keys[:count], self.headers[:count]
        self.nbytes -= batch.nbytes
        self.base = batch.end + 1
        self.opened_at = self.opened_at if self.offsets else None
        return batch

    def drop_before(self, offset: int) -> int:
        """Start the buffer at `offset`, the committed one: drop the messages before it and
        return how many. librdkafka starts fetching a newly assigned partition from the offset
        committed when it looked; a commit that lands after that (an earlier owner's, late)
        leaves messages before the committed offset that are in the lake already."""
        count = bisect.bisect_left(self.offsets, offset)
        if count:
            self.take(through_offset=self.offsets[count - 1])
        self.base = offset
        return count

    def restore(self, batch: Batch, now: float) -> None:
        """Put a cut batch back in front of the buffer (its boundaries must be cut again). The
        buffer counts as open since `now` unless it already was: what is left after the new cut
        must still come due by age (at the end of a topic nothing else will make it due)."""
        if self.opened_at is None:
            self.opened_at = now
        self.offsets[:0] = array("q", batch.offsets)
        self.timestamps[:0] = array("q", batch.timestamps)
        self.keys[:0] = batch.keys
        self.values = ValueColumn(batch.values.to_pylist() + self.values.array().to_pylist(), self.maps)
        self.headers[:0] = batch.headers
        self.nbytes += _size(batch.values, batch.keys)
        self.base = batch.base

    def _empty_columns(self) -> None:
        """New, empty columns (a cut hands the old ones to its batch)."""
        self.offsets, self.timestamps, self.keys, self.headers = array("q"), array("q"), [], []
        self.values = ValueColumn(maps=self.maps)


def _size(values: pa.Array, keys: list[bytes | None]) -> int:
    value_bytes = pc.sum(pc.binary_length(values)).as_py() or 0
    return value_bytes + sum(len(k) for k in keys if k)


@dataclass(frozen=True)
class FlushPolicy:
    max_records: int
    max_bytes: int
    max_age: float

    @classmethod
    def from_settings(cls, batch: BatchSettings) -> FlushPolicy:
        return cls(batch.max_records, batch.max_bytes, batch.max_age)

    def reason(self, buffer: PartitionBuffer, now: float) -> str | None:
        """Why the buffer must be flushed now ('records', 'bytes', 'age'), or None."""
        if not buffer.offsets:
            return None
        if len(buffer.offsets) >= self.max_records:
            return "records"
        if buffer.nbytes >= self.max_bytes:
            return "bytes"
        if buffer.opened_at is not None and now - buffer.opened_at >= self.max_age:
            return "age"
        return None
