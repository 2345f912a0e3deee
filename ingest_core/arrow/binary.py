"""Binary Arrow arrays as the bytes they hold, without copying them (or a few thousand at a time), and
constant arrays made without a Python list per row."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc


def values_buffer(array: pa.Array) -> pa.Buffer:
    """The values of a binary (or string) array back to back, as a slice of its data buffer."""
    if not len(array):
        return pa.py_buffer(b"")
    offsets = pa.Array.from_buffers(pa.int32(), len(array) + 1, [None, array.buffers()[1]], offset=array.offset)
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    return array.buffers()[2].slice(first, last - first) if last > first else pa.py_buffer(b"")


def joined(values: pa.Array, end: bytes) -> pa.Buffer:
    """Each value followed by `end`, back to back (a kernel: the GIL is released meanwhile).
    Raises pa.ArrowCapacityError past 2 GiB."""
    scalar = pa.scalar(end, pa.binary())
    return values_buffer(pc.binary_join_element_wise(values, scalar, pa.scalar(b"", pa.binary())))


def lines_text(values: pa.Array) -> pa.Buffer | bytes:
    """Each value followed by a newline, back to back: `joined` (no Python per value), or
    past 2 GiB, where an Arrow binary array cannot hold the result, joined in Python."""
    try:
        return joined(values, b"\n")
    except pa.ArrowCapacityError:
        return b"".join(value + b"\n" for value in values.to_pylist())


class LinesReader(io.RawIOBase):
    """A binary file whose content is `values`, each followed by a newline: what
    `joined(values, b"\n")` holds, made PIECE_ROWS values at a time as it is read, so a
    parser reading it never needs the whole text copied at once (for a 64 MiB batch that
    copy was a quarter of pyarrow.json's peak memory)."""

    PIECE_ROWS = 4096

    def __init__(self, values: pa.Array):
        self.values = values
        self.next_row = 0
        self.piece = memoryview(b"")
        self.at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while self.at >= len(self.piece):
            if self.next_row >= len(self.values):
                return 0
            piece = lines_text(self.values.slice(self.next_row, self.PIECE_ROWS))
            self.piece, self.at = memoryview(piece).cast("B"), 0
            self.next_row += self.PIECE_ROWS
        count = min(len(target), len(self.piece) - self.at)
        target[:count] = self.piece[self.at : self.at + count]
        self.at += count
        return count


def repeated(value: str | int, count: int, type_: pa.DataType) -> pa.Array:
    """`count` copies of one value as an array, built by an Arrow kernel (no Python list of `count` items)."""
    return pc.fill_null(pa.nulls(count, type_), pa.scalar(value, type_))
