"""What every format shares: the rows of one file (`Rows`), a file's data (`FileData`: bytes, an
Arrow buffer, or `Pieces` that make themselves while the file is written, so uncompressed NDJSON
never exists whole next to its batch), and the `Format` protocol a format module implements.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

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
    """A file's data (`FileData`) as one bytes object (a copy unless it already is one).
    Pieces are copied once, each as it is made, into a buffer that grows in place and
    becomes the bytes object: the file is held once, never a list of copies and their join."""
    if isinstance(data, Pieces):
        joined = io.BytesIO()
        for piece in data:
            joined.write(piece)
        return joined.getvalue()  # the buffer itself, not a copy (nothing else refers to it)
    return data if isinstance(data, bytes) else data.to_pybytes()


class UnreadableFile(Exception):
    """The file is not what its name says (truncated, another format, not UTF-8 JSON lines)."""


@dataclass
class FileRows:
    """What `ingest audit --deep` reads back from a data file."""

    rows: int
    partitions: pa.Array | None  # int64 per row; None when the file has no metadata columns
    offsets: pa.Array | None


class Encoder(Protocol):
    extension: str

    def encode(self, rows: Rows) -> FileData: ...


class Format(Protocol):
    """An output format: one module in sink/formats/ with a `FORMAT` object like this, listed in
    sink/formats/__init__.py. Settings, encode, audit and autoloader ask it; none names a format."""

    @property
    def name(self) -> str:
        """The output.format value."""
        ...

    @property
    def compressions(self) -> tuple[str, ...]:
        """The output.compression values it accepts; the first is the default."""
        ...

    @property
    def writes_json_text(self) -> bool:
        """It writes JSON input as its text (`Rows.json_lines`), so the decoded table only validates it."""
        ...

    @property
    def encodes_in_slices(self) -> bool:
        """Its encoder has `encode_slices`: a batch may be parsed and written a slice at a time."""
        ...

    @property
    def spark_format(self) -> str:
        """Spark's name for the reader ("parquet", "json")."""
        ...

    def extension(self, codec: str) -> str:
        """The file name's ending, which tells a reader the format and compression."""
        ...

    def encoder(self, codec: str) -> Encoder: ...

    def read_rows(self, data: bytes, codec: str) -> FileRows:
        """Every row's `_partition, _offset` (for `ingest audit --deep`); raises UnreadableFile."""
        ...

    def spark_options(self, inferred: bool) -> dict[str, str]:
        """Spark file-source options for these files (`inferred`: no explicit schema)."""
        ...

    def autoloader_options(self) -> list[tuple[str, str, str]]:
        """Extra Auto Loader options as (key, value, why)."""
        ...
