"""File formats: each turns a set of rows into the bytes of one file, without I/O.

A file's data is bytes, an Arrow buffer, or a list of buffers written back to back (large
NDJSON: joining the pieces would copy the whole file once more, with the GIL held).

A format is one small module exposing an encoder with `extension` and `encode(rows)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import pyarrow as pa


@dataclass(frozen=True)
class Rows:
    """The rows of one output file: decoded payload, metadata columns, and for JSON input
    the validated JSON text of each row (NDJSON writes it through unchanged)."""

    payload: pa.Table
    metadata: pa.Table | None  # _topic, _partition, _offset, _timestamp, _key; None if metadata: false
    json_lines: pa.Array | None  # binary, one value per row


FileData = Union[bytes, pa.Buffer, list[pa.Buffer]]  # a list: the file is its pieces, back to back


def data_size(data: FileData) -> int:
    """The size in bytes of a file's data (`FileData`)."""
    return sum(len(piece) for piece in data) if isinstance(data, list) else len(data)


def data_bytes(data: FileData) -> bytes:
    """A file's data (`FileData`) as one bytes object (a copy unless it already is one)."""
    if isinstance(data, list):
        return b"".join(piece.to_pybytes() if isinstance(piece, pa.Buffer) else piece for piece in data)
    return data if isinstance(data, bytes) else data.to_pybytes()


def encoder_for(fmt: str, codec: str):
    if fmt == "parquet":
        from .parquet import ParquetEncoder
        return ParquetEncoder(codec)
    if fmt == "ndjson":
        from .ndjson import NdjsonEncoder
        return NdjsonEncoder(codec)
    raise ValueError(f"output.format {fmt!r} is not known")
