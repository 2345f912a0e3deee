"""NDJSON files: one JSON object per line, metadata fields first, the payload unchanged.

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

import pyarrow as pa
import pyarrow.compute as pc

from . import Rows


class NdjsonEncoder:
    def __init__(self, codec: str):
        self.codec = codec
        self.extension = {"none": ".ndjson", "gzip": ".ndjson.gz", "zstd": ".ndjson.zst"}[codec]

    def encode(self, rows: Rows) -> bytes:
        bodies = rows.json_lines if rows.json_lines is not None else _bodies_from_table(rows.payload)
        if rows.metadata is None:
            text = b"\n".join(bodies) + b"\n"
        else:
            try:
                text = _spliced_columnwise(rows.metadata, bodies)
            except pa.ArrowCapacityError:  # over 2 GiB of text in one file: the per-row path copes
                text = None
            if text is None:
                prefixes = _metadata_prefixes(rows.metadata)
                text = b"".join(_splice(prefix, body) for prefix, body in zip(prefixes, bodies))
        return _compress(text, self.codec)


_NEEDS_JSON_ESCAPE = r'[^\x20-\x7e]|["\\]'


def _spliced_columnwise(metadata: pa.Table, bodies: list[bytes]) -> bytes | None:
    """The same bytes as the per-row splice below, built with Arrow kernels (no Python per row).
    None when a key or body needs the per-row path (a key that JSON must escape, non-UTF-8)."""
    keys = metadata.column("_key").combine_chunks()
    if pc.any(pc.match_substring_regex(keys, _NEEDS_JSON_ESCAPE)).as_py():
        return None
    try:
        text = pa.array(bodies, pa.binary()).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    count = len(bodies)
    topic = metadata.column("_topic")[0].as_py() if count else ""

    def constant(value: str) -> pa.Array:
        return pa.array([value] * count, pa.string())

    stamps = pc.utf8_slice_codeunits(
        pc.strftime(metadata.column("_timestamp").combine_chunks(), format="%Y-%m-%dT%H:%M:%S"), 0, 23)
    quoted_keys = pc.if_else(pc.is_null(keys), constant("null"),
                             pc.binary_join_element_wise(constant('"'), keys, constant('"'), ""))
    inner = pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(text), 1, -1))
    separator = pc.if_else(pc.equal(pc.utf8_length(inner), 0), constant(""), constant(","))
    lines = pc.binary_join_element_wise(
        constant(f'{{"_topic":{json.dumps(topic)},"_partition":'),
        metadata.column("_partition").combine_chunks().cast(pa.string()),
        constant(',"_offset":'), metadata.column("_offset").combine_chunks().cast(pa.string()),
        constant(',"_timestamp":"'), stamps, constant('Z","_key":'), quoted_keys,
        separator, inner, constant("}\n"), "")
    validity, offsets_buffer, data = lines.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset)
    return data.to_pybytes()[offsets[0].as_py():offsets[-1].as_py()]


def _metadata_prefixes(metadata: pa.Table) -> list[bytes]:
    topics = metadata.column("_topic").to_pylist()
    partitions = metadata.column("_partition").to_pylist()
    offsets = metadata.column("_offset").to_pylist()
    stamps = pc.strftime(metadata.column("_timestamp"), format="%Y-%m-%dT%H:%M:%S.%fZ").to_pylist()
    keys = metadata.column("_key").to_pylist()
    topic_json = json.dumps(topics[0]) if topics else '""'
    return [
        f'{{"_topic":{topic_json},"_partition":{p},"_offset":{o},"_timestamp":"{_millis(t)}","_key":{json.dumps(k)}'.encode()
        for p, o, t, k in zip(partitions, offsets, stamps, keys)
    ]


def _millis(stamp: str) -> str:
    # strftime's %f on a microsecond timestamp gives 6 digits (Arrow may give more); keep ms.
    head, _, fraction = stamp.partition(".")
    return f"{head}.{fraction[:3]}Z"


def _splice(prefix: bytes, body: bytes) -> bytes:
    inner = body.strip()[1:-1].strip()
    return prefix + (b"," + inner if inner else b"") + b"}\n"


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


def _compress(data: bytes, codec: str) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0 keeps bytes deterministic
    if codec == "zstd":
        return pa.compress(data, codec="zstd", asbytes=True)
    return data
