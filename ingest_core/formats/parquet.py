"""Parquet files that Spark reads: microsecond UTC timestamps, signed ints, names and
types Spark accepts (see schema.spark_readable), metadata columns first."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import spark_readable
from . import Rows

RENAMED_KEY = b"lake_ingest.renamed"  # file metadata: {written name: name in the records}


class ParquetEncoder:
    extension = ".parquet"

    def __init__(self, codec: str):
        self.codec = codec

    def encode(self, rows: Rows) -> bytes:
        table = merge_metadata(rows.payload, rows.metadata)
        keep = rows.metadata.column_names if rows.metadata is not None else ()
        table, renamed = spark_readable(table, keep)
        if renamed:
            table = table.replace_schema_metadata({RENAMED_KEY: json.dumps(renamed, ensure_ascii=False).encode()})
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
    """Metadata columns first; a payload column of the same name (ignoring case, as Spark
    does) is kept as `<name>_payload`."""
    if metadata is None:
        return payload
    taken = {name.lower() for name in metadata.column_names}
    columns = list(metadata.columns)
    names = list(metadata.column_names)
    for name, column in zip(payload.column_names, payload.columns):
        names.append(f"{name}_payload" if name.lower() in taken else name)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=names)
