"""Binary Arrow arrays as the bytes they hold, without copying them."""
from __future__ import annotations

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
