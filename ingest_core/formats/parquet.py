"""Parquet files that Spark reads: microsecond UTC timestamps, signed ints, names and
types Spark accepts (see schema.spark_readable), metadata columns first."""
from __future__ import annotations

import json
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import spark_readable
from . import Rows

RENAMED_KEY = b"lake_ingest.renamed"  # file metadata: {written name: name in the records}


ROW_GROUP_BYTES = 16 << 20  # Arrow bytes of rows per row group when a batch comes in slices


class ParquetEncoder:
    extension = ".parquet"

    def __init__(self, codec: str):
        self.codec = codec

    def encode(self, rows: Rows) -> pa.Buffer:
        return self.encode_slices([rows])

    def encode_slices(self, slices: Iterable[Rows]) -> pa.Buffer:
        """One file of `slices` (the same schema each), taken one at a time: a row group is
        written once ROW_GROUP_BYTES of rows are waiting, so a batch that comes in slices is
        never held whole. A single slice is one row group, as `pq.write_table` makes it."""
        sink = pa.BufferOutputStream()
        writer: pq.ParquetWriter | None = None
        waiting: list[pa.Table] = []
        waiting_bytes = 0
        try:
            for rows in slices:
                table = self._readable(rows)
                if writer is None:
                    writer = pq.ParquetWriter(
                        sink, table.schema,
                        compression=self.codec if self.codec != "none" else "NONE",
                        coerce_timestamps="us",
                        allow_truncated_timestamps=True,
                        use_dictionary=True,
                        write_statistics=True,
                    )
                waiting.append(table)
                waiting_bytes += table.nbytes
                if waiting_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.concat_tables(waiting))
                    waiting, waiting_bytes = [], 0
            if waiting:
                writer.write_table(pa.concat_tables(waiting))
        finally:
            if writer is not None:
                writer.close()
        return sink.getvalue()

    @staticmethod
    def _readable(rows: Rows) -> pa.Table:
        table = merge_metadata(rows.payload, rows.metadata)
        keep = rows.metadata.column_names if rows.metadata is not None else ()
        table, renamed = spark_readable(table, keep)
        if renamed:
            table = table.replace_schema_metadata({RENAMED_KEY: json.dumps(renamed, ensure_ascii=False).encode()})
        return table


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
