"""NDJSON files: one JSON object per line, metadata fields first, the payload unchanged.
Kafka headers (`_headers`) are a list of `{"key": text, "value": base64}` objects.

JSON input is written through as the producer wrote it (NaN and Infinity included:
Spark's JSON reader accepts them by default). Other input (Avro, raw) is written from
its Arrow rows: bytes as base64, timestamps as ISO-8601 with `Z`, dates as ISO-8601,
decimals as strings (exact), maps as objects.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import gzip
import json
import re
import zlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.arrow.binary import lines_text
from ingest_core.sink.formats import ndjson_lines
from ingest_core.sink.formats.base import FileData, FileRows, Pieces, Rows, UnreadableFile


class NdjsonEncoder:
    def __init__(self, codec: str):
        self.codec = codec
        self.extension = _EXTENSIONS[codec]

    def encode(self, rows: Rows) -> FileData:
        if rows.json_lines is not None:
            bodies = rows.json_lines
        else:
            bodies = pa.array(_bodies_from_table(rows.payload), pa.binary())
        metadata = rows.metadata
        return _compress(Pieces(lambda: text_slices(metadata, bodies)), self.codec)


# Rows spliced at a time (≈ 2 MiB of 1 KiB values), so only one slice of text exists at a time.
SLICE_ROWS = 2048


def text_slices(metadata: pa.Table | None, bodies: pa.Array) -> Iterator[pa.Buffer | bytes]:
    """The file's text, SLICE_ROWS lines at a time: each body after its metadata fields (or
    alone with `metadata: false`), one line each. Made while the file is written, so only one
    slice of text exists at a time. A slice is made in C from the Arrow buffers (ndjson_lines.c);
    it goes the per-row way only when that cannot do it (a body with blanks around it, a null
    body, a timestamp before 1970, over 2 GiB); both ways give the same bytes."""
    for start in range(0, len(bodies), SLICE_ROWS):
        part = bodies.slice(start, SLICE_ROWS)
        if metadata is None:
            yield lines_text(part)
            continue
        part_metadata = metadata.slice(start, SLICE_ROWS)
        lines = _spliced_in_c(part_metadata, part)
        if lines is not None:
            yield lines
        else:
            prefixes = _metadata_prefixes(part_metadata)
            yield b"".join(_splice(prefix, body) for prefix, body in zip(prefixes, part.to_pylist(), strict=False))


def _spliced_in_c(metadata: pa.Table, bodies: pa.Array) -> bytes | None:
    """The lines (each ending in a newline) of the per-row splice below, made by ndjson_lines.c
    from the columns' buffers with the GIL released; None when a row needs the per-row way."""
    if not len(bodies) or bodies.null_count or bodies.type != pa.binary():
        return None
    topic = metadata.column("_topic")[0].as_py()
    partition = metadata.column("_partition")[0].as_py()
    keys = metadata.column("_key").combine_chunks()
    headers = headers_json(metadata.column("_headers")) if "_headers" in metadata.column_names else None
    return ndjson_lines.lines(
        f'{{"_topic":{json.dumps(topic)},"_partition":{partition},"_offset":'.encode(),
        _int64_buffer(metadata.column("_offset").combine_chunks()),
        _int64_buffer(metadata.column("_timestamp").combine_chunks().cast(pa.int64())),
        _binary_buffers(keys),
        headers,
        _binary_buffers(bodies),
        len(bodies),
    )


def _int64_buffer(numbers: pa.Array) -> tuple[pa.Buffer, int]:
    return numbers.buffers()[1], numbers.offset


def _binary_buffers(values: pa.Array) -> tuple[pa.Buffer | None, pa.Buffer, pa.Buffer, int]:
    validity, offsets, data = values.buffers()
    return (
        validity if values.null_count else None,
        offsets,
        data if data is not None else pa.py_buffer(b""),
        values.offset,
    )


def _metadata_prefixes(metadata: pa.Table) -> list[bytes]:
    topics = metadata.column("_topic").to_pylist()
    partitions = metadata.column("_partition").to_pylist()
    offsets = metadata.column("_offset").to_pylist()
    stamps = pc.strftime(metadata.column("_timestamp"), format="%Y-%m-%dT%H:%M:%S.%fZ").to_pylist()
    keys = metadata.column("_key").to_pylist()
    topic_json = json.dumps(topics[0]) if topics else '""'
    prefixes = [
        f'{{"_topic":{topic_json},"_partition":{p},"_offset":{o},"_timestamp":"{_millis(t)}","_key":{json.dumps(k)}'.encode()
        for p, o, t, k in zip(partitions, offsets, stamps, keys, strict=False)
    ]
    if "_headers" in metadata.column_names:
        prefixes = [
            prefix + b',"_headers":' + text
            for prefix, text in zip(prefixes, headers_json(metadata.column("_headers")), strict=False)
        ]
    return prefixes


def headers_json(headers: pa.ChunkedArray | pa.Array) -> list[bytes]:
    """Each row's headers as JSON: `[{"key":"k","value":"<base64>"},...]` in order, duplicates
    kept, a null value as null; `[]` for a message without headers (docs/headers.md)."""
    lengths = pc.list_value_length(headers).to_pylist()
    if not any(lengths):
        return [b"[]"] * len(lengths)
    return [
        b"[]"
        if not length
        else json.dumps(
            [
                {"key": h["key"], "value": None if h["value"] is None else base64.b64encode(h["value"]).decode("ascii")}
                for h in row
            ],
            separators=(",", ":"),
        ).encode()
        for length, row in zip(lengths, headers.to_pylist(), strict=False)
    ]


def _millis(stamp: str) -> str:
    # strftime's %f on a microsecond timestamp gives 6 digits (Arrow may give more); keep ms.
    head, _, fraction = stamp.partition(".")
    return f"{head}.{fraction[:3]}Z"


def _splice(prefix: bytes, body: bytes) -> bytes:
    """One line of a slice that ndjson_lines.c cannot make: the body from after its "{", its blanks around it taken off."""
    body = body.strip(b" \t\r\n")
    return prefix + (b"," if body[1:-1].strip(b" \t\r\n") else b"") + body[1:] + b"\n"


def _bodies_from_table(payload: pa.Table) -> list[bytes]:
    rows = payload.to_pylist(maps_as_pydicts="lossy")
    return [json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=_jsonable).encode() for row in rows]


def _jsonable(value):
    """What json.dumps cannot write by itself."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _compress(text: Pieces, codec: str) -> FileData:
    """Uncompressed: the text, made while it is written. Compressed: the text is compressed
    as it is made, one slice at a time, and the (much smaller) result is the file's bytes."""
    if codec == "gzip":
        # A gzip member with mtime 0 and no name: the same batch always gives the same bytes.
        gzip_stream = zlib.compressobj(6, zlib.DEFLATED, 31)
        return b"".join([gzip_stream.compress(piece) for piece in text] + [gzip_stream.flush()])
    if codec == "zstd":
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as stream:
            for piece in text:
                stream.write(piece)
        return sink.getvalue()
    return text


_EXTENSIONS = {"gzip": ".ndjson.gz", "zstd": ".ndjson.zst", "none": ".ndjson"}
# Our lines start with the metadata fields in this order: read them without parsing the line.
_METADATA_PREFIX = re.compile(rb'\{"_topic":"(?:[^"\\]|\\.)*","_partition":(-?\d+),"_offset":(-?\d+),')


class NdjsonFormat:
    name = "ndjson"
    compressions = tuple(_EXTENSIONS)
    writes_json_text = True
    encodes_in_slices = False
    spark_format = "json"

    def extension(self, codec: str) -> str:
        return _EXTENSIONS[codec]

    def encoder(self, codec: str) -> NdjsonEncoder:
        return NdjsonEncoder(codec)

    def read_rows(self, data: bytes, codec: str) -> FileRows:
        if codec == "gzip":
            data = gzip.decompress(data)
        elif codec == "zstd":
            with pa.CompressedInputStream(pa.BufferReader(data), "zstd") as stream:
                data = stream.read()
        return _rows_of_text(data)

    def spark_options(self, inferred: bool) -> dict[str, str]:
        # _timestamp is ISO-8601 text in NDJSON.
        return {"inferTimestamp": "true"} if inferred else {}

    def autoloader_options(self) -> list[tuple[str, str, str]]:
        return [("cloudFiles.inferColumnTypes", "true", "numbers and booleans, not all strings")]


def _rows_of_text(text: bytes) -> FileRows:
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


FORMAT = NdjsonFormat()
