"""NDJSON files: one JSON object per line, metadata fields first, the payload unchanged."""
from __future__ import annotations

import base64
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
            prefixes = _metadata_prefixes(rows.metadata)
            text = b"".join(_splice(prefix, body) for prefix, body in zip(prefixes, bodies))
        return _compress(text, self.codec)


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
    rows = payload.to_pylist()
    return [json.dumps({k: _jsonable(v) for k, v in row.items()}, separators=(",", ":")).encode() for row in rows]


def _jsonable(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _compress(data: bytes, codec: str) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0 keeps bytes deterministic
    if codec == "zstd":
        return pa.compress(data, codec="zstd", asbytes=True)
    return data
