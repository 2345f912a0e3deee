"""`ingest audit --deep`: read back the `_partition, _offset` of every row of a data file,
whatever the format and compression the settings accept (the format is chosen by the file's
name, as Spark does, and reads its own files: sink/formats/), and say clearly why a file
cannot be read."""

from __future__ import annotations

import zlib

import pyarrow as pa

from ingest_core.sink.formats import FileRows, UnreadableFile, extensions, format_of_file

__all__ = ["FileRows", "UnreadableFile", "read_rows"]


def read_rows(path: str, data: bytes) -> FileRows:
    """The rows of a file by its name (see `extensions()`)."""
    found = format_of_file(path)
    if found is None:
        raise UnreadableFile(f"not a data file this lake writes ({', '.join(extensions())})")
    fmt, codec = found
    try:
        return fmt.read_rows(data, codec)
    except UnreadableFile:
        raise
    except (pa.ArrowException, OSError, EOFError, zlib.error, ValueError) as error:
        raise UnreadableFile(f"{type(error).__name__}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]
