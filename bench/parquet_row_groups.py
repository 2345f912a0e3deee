"""What the row group size of Parquet written in slices costs, in-process (no Kafka).

    python bench/parquet_row_groups.py

One 64 MiB batch of the bench's events (1 KiB and 200 B values) is decoded in slices and written with zstd exactly
as lake-ingest does it (Decoder.decode_in_slices into ParquetEncoder.encode_slices), once per row group size
(`ROW_GROUP_BYTES` in ingest_core/sink/formats/parquet.py, patched for the run). Each line: the median CPU time
per row of 5 encodes (the decode included), the row groups and the file size. Peak memory is not measured here:
bench/memory.py measures it for the whole process."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

from ingest_core.sink.formats import data_bytes, parquet  # noqa: E402
from ingest_core.sink.formats.base import Rows  # noqa: E402
from ingest_core.source.decode import Decoder  # noqa: E402

SIZES_MIB = (4, 8, 16, 32)


def main() -> None:
    print("| value size | row group (Arrow MiB) | CPU µs per row (median of 5) | row groups | file MiB |")
    print("|---|---:|---:|---:|---:|")
    for size in (1024, 200):
        values = pa.array(common.EventFactory(size).batch(), pa.binary())
        rows = len(values)
        for mib in SIZES_MIB:
            parquet.ROW_GROUP_BYTES = mib << 20
            encoder, decoder = parquet.ParquetEncoder("zstd"), Decoder("json")
            times, data = [], b""
            for _ in range(5):
                started = time.process_time()
                slices = decoder.decode_in_slices(values)
                assert slices is not None
                data = encoder.encode_slices(Rows(payload=t, metadata=None, json_lines=None) for t in slices)
                times.append(time.process_time() - started)
            groups = pq.ParquetFile(pa.BufferReader(data_bytes(data))).num_row_groups
            per_row = statistics.median(times) / rows * 1e6
            print(f"| {size} B | {mib} | {per_row:.2f} | {groups} | {len(data_bytes(data)) / 2**20:.1f} |")


if __name__ == "__main__":
    main()
