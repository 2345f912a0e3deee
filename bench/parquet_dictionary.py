"""What Parquet's dictionary page limit costs and saves on the bench's order events, in-process (no Kafka).

    python bench/parquet_dictionary.py

One batch of the bench's events (200 B and 1 KiB values) is parsed by pyarrow.json, given lake-ingest's five
metadata columns, and written with zstd as ParquetEncoder writes it (row groups of ROW_GROUP_BYTES), once per dictionary setting; each line gives
the median write time per row of 5 writes and the file size. lake-ingest uses `dictionary_pagesize_limit`
= DICTIONARY_PAGE_BYTES (ingest_core/sink/formats/parquet.py)."""
from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

from ingest_core.sink.formats.parquet import DICTIONARY_PAGE_BYTES, ROW_GROUP_BYTES  # noqa: E402


def events_table(size: int, rows: int) -> pa.Table:
    factory = common.EventFactory(size)
    payload = pa_json.read_json(io.BytesIO(b"\n".join(factory.event(i) for i in range(rows)) + b"\n"))
    start_us = 1_700_000_000_000_000
    metadata = {
        "_topic": pc.fill_null(pa.nulls(rows, pa.string()), "orders"),
        "_partition": pc.fill_null(pa.nulls(rows, pa.int32()), pa.scalar(0, pa.int32())),
        "_offset": pa.array(range(rows), pa.int64()),
        "_timestamp": pa.array(range(start_us, start_us + rows * 1000, 1000), pa.timestamp("us", tz="UTC")),
        "_key": pa.array([f"c{i % 9973:05d}" for i in range(rows)]),
    }
    return pa.table({**metadata, **{name: payload.column(name) for name in payload.column_names}})


def write(table: pa.Table, **options) -> tuple[float, int]:
    """(µs per row, median of 5; file bytes)."""
    times, size = [], 0
    group_rows = max(1, ROW_GROUP_BYTES * len(table) // table.nbytes)  # row groups as ParquetEncoder cuts them
    for _ in range(5):
        sink = io.BytesIO()
        began = time.perf_counter()
        pq.write_table(table, sink, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True,
                       write_statistics=True, use_dictionary=True, row_group_size=group_rows, **options)
        times.append(time.perf_counter() - began)
        size = len(sink.getvalue())
    return statistics.median(times) * 1e6 / len(table), size


def main() -> int:
    print("| values | dictionary page limit | µs per row | file MB |")
    print("|---|---|---:|---:|")
    for size, rows in ((200, 100_000), (1024, 60_000)):
        table = events_table(size, rows)
        for label, options in (("1 MiB (Arrow's default)", {}),
                               (f"{DICTIONARY_PAGE_BYTES >> 10} KiB (lake-ingest)",
                                {"dictionary_pagesize_limit": DICTIONARY_PAGE_BYTES})):
            micros, nbytes = write(table, **options)
            print(f"| {size} B x {rows:,} | {label} | {micros:.2f} | {nbytes / 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
