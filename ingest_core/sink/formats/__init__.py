"""File formats: each turns a set of rows into the bytes of one file, without I/O.

A file's data is bytes, an Arrow buffer, or `Pieces` that make themselves while the file
is written (uncompressed NDJSON: only one
slice of the file's text exists at a time, instead of the whole file next to its batch).

A format is one small module exposing an encoder with `extension` and `encode(rows)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import pyarrow as pa


@dataclass(frozen=True)
class Rows:
    """The rows of one output file: decoded payload, metadata columns, and for JSON input
    the validated JSON text of each row (NDJSON writes it through unchanged)."""

    payload: pa.Table
    metadata: (
        pa.Table | None
    )  # _topic, _partition, _offset, _timestamp, _key (and _headers if asked); None if metadata: false
    json_lines: pa.Array | None  # binary, one value per row


class Pieces:
    """A file's data as pieces made when they are read, in order. Each iteration makes them
    again (a publish retried after an outage writes the same bytes); `size` is known once one
    iteration has finished."""

    def __init__(self, make: Callable[[], Iterator[bytes | pa.Buffer]]):
        self._make = make
        self.size: int | None = None

    def __iter__(self) -> Iterator[bytes | pa.Buffer]:
        size = 0
        for piece in self._make():
            size += len(piece)
            yield piece
        self.size = size


FileData: TypeAlias = bytes | pa.Buffer | Pieces  # Pieces: the file is its pieces, back to back


def pieces_of(data: FileData) -> Iterable[bytes | pa.Buffer]:
    """A file's data as pieces to write one after the other."""
    return data if isinstance(data, Pieces) else [data]


def data_size(data: FileData) -> int:
    """The size in bytes of a file's data (`FileData`)."""
    if isinstance(data, Pieces) and data.size is not None:
        return data.size
    return sum(len(piece) for piece in pieces_of(data))


def data_bytes(data: FileData) -> bytes:
    """A file's data (`FileData`) as one bytes object (a copy unless it already is one)."""
    if isinstance(data, Pieces):
        return b"".join(piece.to_pybytes() if isinstance(piece, pa.Buffer) else piece for piece in data)
    return data if isinstance(data, bytes) else data.to_pybytes()


def encoder_for(fmt: str, codec: str):
    if fmt == "parquet":
        from ingest_core.sink.formats.parquet import ParquetEncoder

        return ParquetEncoder(codec)
    if fmt == "ndjson":
        from ingest_core.sink.formats.ndjson import NdjsonEncoder

        return NdjsonEncoder(codec)
    raise ValueError(f"output.format {fmt!r} is not known")
