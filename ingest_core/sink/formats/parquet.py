"""Parquet files that Spark reads: microsecond UTC timestamps, signed ints, names and
types Spark accepts (see schema.spark_readable), metadata columns first."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

from ingest_core.arrow.spark import spark_readable
from ingest_core.sink.formats.base import FileData, FileRows, Pieces, Rows

if TYPE_CHECKING:
    import pyarrow.parquet as pq

RENAMED_KEY = b"lake_ingest.renamed"  # file metadata: {written name: name in the records}
# Arrow bytes of rows per row group when a batch comes in slices. Against 4 MiB: a third of the
# row groups (readers skip and plan by row group), a tenth less CPU to encode a 64 MiB batch of
# 1 KiB events and a 7 % smaller file (python bench/parquet_row_groups.py), and the same peak RSS
# under bench/memory.py (352, 682, 693 MiB at 1, 4, 24 partitions).
ROW_GROUP_BYTES = 16 << 20
# A column chunk's dictionary is given up for plain values once it holds this many bytes. Columns
# with few distinct values (status, country, the topic) keep theirs; one of mostly distinct values
# (ids, free text, offsets) goes plain early instead of building up to Arrow's default 1 MiB of
# dictionary, which is then written beside the indices: on the bench's 200 B order events the
# write takes about a fifth less CPU and the file a quarter less space; at 1 KiB both are the
# same (python bench/parquet_dictionary.py).
DICTIONARY_PAGE_BYTES = 64 << 10


class ParquetEncoder:
    extension = ".parquet"

    def __init__(self, codec: str):
        # pyarrow.parquet (with pyarrow.fs) is imported by the Parquet encoder and reader only: the
        # format registry imports this module for every run, NDJSON ones included, whose start it
        # made 5 ms slower (25 alternated starts of the CLI).
        import pyarrow.parquet  # noqa: F401

        self.codec = codec

    def encode(self, rows: Rows) -> FileData:
        return self.encode_slices([rows])

    def encode_slices(self, slices: Iterable[Rows]) -> FileData:
        """One file of `slices` (the same schema each), taken one at a time: a row group is
        written once ROW_GROUP_BYTES of rows are waiting, so a batch that comes in slices is
        never held whole. A single slice is one row group, as `pq.write_table` makes it."""
        import pyarrow.parquet as pq

        sink = FileChunks()
        writer: pq.ParquetWriter | None = None
        waiting: list[pa.Table] = []
        waiting_bytes = 0
        try:
            for rows in slices:
                table = self._readable(rows)
                if writer is None:
                    writer = pq.ParquetWriter(
                        sink,
                        table.schema,
                        compression=self.codec if self.codec != "none" else "NONE",
                        coerce_timestamps="us",
                        allow_truncated_timestamps=True,
                        use_dictionary=True,
                        dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
                        write_statistics=True,
                    )
                waiting.append(table)
                waiting_bytes += table.nbytes
                if waiting_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.concat_tables(waiting))
                    waiting, waiting_bytes = [], 0
            if waiting:
                assert writer is not None  # opened with the first slice, which is waiting
                writer.write_table(pa.concat_tables(waiting))
        finally:
            if writer is not None:
                writer.close()
        return sink.data()

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
    for name, column in zip(payload.column_names, payload.columns, strict=False):
        names.append(f"{name}_payload" if name.lower() in taken else name)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=names)


class FileChunks(io.RawIOBase):
    """A write-only file kept as chunks of about CHUNK_BYTES: the Parquet writer's output
    without a buffer that doubles as it grows, nor a final copy (`data()`)."""

    CHUNK_BYTES = 1 << 20

    def __init__(self):
        self.chunks: list[bytes] = []
        self.filling = bytearray()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.filling += data
        self.size += len(data)
        if len(self.filling) >= self.CHUNK_BYTES:
            self.chunks.append(bytes(self.filling))
            self.filling = bytearray()
        return len(data)

    def tell(self) -> int:
        return self.size

    def data(self) -> FileData:
        """What was written: bytes when it is one chunk, else Pieces over the chunks."""
        chunks = self.chunks + ([bytes(self.filling)] if self.filling else [])
        self.chunks, self.filling = [], bytearray()
        if len(chunks) == 1:
            return chunks[0]
        return Pieces(lambda: iter(chunks))


class ParquetFormat:
    name = "parquet"
    compressions = ("zstd", "snappy", "gzip", "none")
    writes_json_text = False
    encodes_in_slices = True
    spark_format = "parquet"

    def extension(self, codec: str) -> str:
        return ".parquet"  # the codec is inside the file, per column chunk

    def encoder(self, codec: str) -> ParquetEncoder:
        return ParquetEncoder(codec)

    def read_rows(self, data: bytes, codec: str) -> FileRows:
        import pyarrow.parquet as pq

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

    def spark_options(self, inferred: bool) -> dict[str, str]:
        # Files written from different batches may add columns.
        return {"mergeSchema": "true"} if inferred else {}

    def autoloader_options(self) -> list[tuple[str, str, str]]:
        return []


FORMAT = ParquetFormat()
