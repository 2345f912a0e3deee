"""File formats: each turns a set of rows into the bytes of one file, without I/O.

A format is one small module exposing an encoder with `extension` and `encode(rows)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Rows:
    """The rows of one output file: decoded payload, metadata columns, and for JSON input
    the validated JSON text of each row (NDJSON writes it through unchanged)."""

    payload: pa.Table
    metadata: pa.Table | None  # _topic, _partition, _offset, _timestamp, _key; None if metadata: false
    json_lines: pa.Array | None  # binary, one value per row


def encoder_for(fmt: str, codec: str):
    if fmt == "parquet":
        from .parquet import ParquetEncoder
        return ParquetEncoder(codec)
    if fmt == "ndjson":
        from .ndjson import NdjsonEncoder
        return NdjsonEncoder(codec)
    raise ValueError(f"output.format {fmt!r} is not known")
