"""Parquet files that Spark reads: microsecond UTC timestamps, signed ints, stable names."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from . import Rows


class ParquetEncoder:
    extension = ".parquet"

    def __init__(self, codec: str):
        self.codec = codec

    def encode(self, rows: Rows) -> bytes:
        table = merge_metadata(rows.payload, rows.metadata)
        sink = io.BytesIO()
        pq.write_table(
            table, sink,
            compression=self.codec if self.codec != "none" else "NONE",
            coerce_timestamps="us",
            allow_truncated_timestamps=True,
            use_dictionary=True,
            write_statistics=True,
        )
        return sink.getvalue()


def merge_metadata(payload: pa.Table, metadata: pa.Table | None) -> pa.Table:
    """Metadata columns first; a payload column of the same name is kept as `<name>_payload`."""
    if metadata is None:
        return payload
    taken = set(metadata.column_names)
    columns = list(metadata.columns)
    names = list(metadata.column_names)
    for name, column in zip(payload.column_names, payload.columns):
        names.append(f"{name}_payload" if name in taken else name)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=names)
