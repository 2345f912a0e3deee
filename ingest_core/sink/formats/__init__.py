"""Output formats: each turns a set of rows into the bytes of one file, without I/O, and reads
its files back for `ingest audit --deep`. A format is one module here with a `FORMAT` object
(the `Format` protocol in base.py), listed in `_FORMATS` below; adding one is that file and its
tests (tests/test_formats.py loops over every format and compression of this registry).
"""

from __future__ import annotations

from ingest_core.sink.formats import ndjson, parquet
from ingest_core.sink.formats.base import (
    Encoder,
    FileData,
    FileRows,
    Format,
    Pieces,
    Rows,
    UnreadableFile,
    data_bytes,
    data_size,
    pieces_of,
)

__all__ = [
    "FORMATS",
    "Encoder",
    "FileData",
    "FileRows",
    "Format",
    "Pieces",
    "Rows",
    "UnreadableFile",
    "data_bytes",
    "data_size",
    "encoder_for",
    "extensions",
    "format_of_file",
    "pieces_of",
]

_FORMATS: tuple[Format, ...] = (parquet.FORMAT, ndjson.FORMAT)
FORMATS: dict[str, Format] = {f.name: f for f in _FORMATS}  # by output.format; the first is the default


def encoder_for(fmt: str, codec: str) -> Encoder:
    if fmt not in FORMATS:
        raise ValueError(f"output.format {fmt!r} is not known")
    return FORMATS[fmt].encoder(codec)


def extensions() -> list[str]:
    """Every data file name ending a lake may hold."""
    return list(dict.fromkeys(f.extension(c) for f in _FORMATS for c in f.compressions))


def format_of_file(path: str) -> tuple[Format, str] | None:
    """The format and compression of a data file, from its name (as Spark tells them); None when
    the name is not one of ours."""
    name = path.rsplit("/", 1)[-1]
    found = [(f, c) for f in _FORMATS for c in f.compressions if name.endswith(f.extension(c))]
    return max(found, key=lambda fc: len(fc[0].extension(fc[1])), default=None)
