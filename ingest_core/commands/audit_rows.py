"""`ingest audit --deep`: read back the `_partition, _offset` of every row of a data file,
whatever the format and compression the settings accept (the reader is chosen by the file's
name, as Spark does), and say clearly why a file cannot be read."""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq


class UnreadableFile(Exception):
    """The file is not what its name says (truncated, another format, not UTF-8 JSON lines)."""


@dataclass
class FileRows:
    rows: int
    partitions: pa.Array | None  # int64 per row; None when the file has no metadata columns
    offsets: pa.Array | None


# Our NDJSON lines start with the metadata fields in this order: read them without parsing the line.
_METADATA_PREFIX = re.compile(rb'\{"_topic":"(?:[^"\\]|\\.)*","_partition":(-?\d+),"_offset":(-?\d+),')


def read_rows(path: str, data: bytes) -> FileRows:
    """The rows of a file by its name: *.parquet, *.ndjson, *.ndjson.gz, *.ndjson.zst."""
    name = path.rsplit("/", 1)[-1]
    try:
        if name.endswith(".parquet"):
            return _parquet_rows(data)
        if name.endswith(".ndjson"):
            return _ndjson_rows(data)
        if name.endswith(".ndjson.gz"):
            return _ndjson_rows(gzip.decompress(data))
        if name.endswith(".ndjson.zst"):
            return _ndjson_rows(_unzstd(data))
    except UnreadableFile:
        raise
    except (pa.ArrowException, OSError, EOFError, zlib.error, ValueError) as error:
        raise UnreadableFile(f"{type(error).__name__}: {_first_line(error)}") from error
    raise UnreadableFile("not a data file this lake writes (.parquet, .ndjson, .ndjson.gz, .ndjson.zst)")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]


def _unzstd(data: bytes) -> bytes:
    with pa.CompressedInputStream(pa.BufferReader(data), "zstd") as stream:
        return stream.read()


def _parquet_rows(data: bytes) -> FileRows:
    parquet = pq.ParquetFile(io.BytesIO(data))
    names = set(parquet.schema_arrow.names)
    if not {"_partition", "_offset"} <= names:
        return FileRows(parquet.metadata.num_rows, None, None)
    table = parquet.read(columns=["_partition", "_offset"])  # reads every page of both columns
    return FileRows(
        table.num_rows,
        table.column("_partition").combine_chunks().cast(pa.int64()),
        table.column("_offset").combine_chunks().cast(pa.int64()),
    )


def _ndjson_rows(text: bytes) -> FileRows:
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    partitions: list[int] = []
    offsets: list[int] = []
    without_metadata = 0
    for number, line in enumerate(lines, 1):
        match = _METADATA_PREFIX.match(line)
        if match is not None and line.endswith(b"}") and number < len(lines):
            partitions.append(int(match.group(1)))
            offsets.append(int(match.group(2)))
            continue
        # Another writer's line, or the last line (parsed whole: a truncated file ends mid-line).
        try:
            row = json.loads(line)
        except ValueError as error:
            raise UnreadableFile(f"line {number} is not a JSON object ({error})") from None
        if not isinstance(row, dict):
            raise UnreadableFile(f"line {number} is not a JSON object")
        if isinstance(row.get("_partition"), int) and isinstance(row.get("_offset"), int):
            partitions.append(row["_partition"])
            offsets.append(row["_offset"])
        else:
            without_metadata += 1
    if without_metadata:
        return FileRows(len(lines), None, None)
    return FileRows(len(lines), pa.array(partitions, pa.int64()), pa.array(offsets, pa.int64()))
