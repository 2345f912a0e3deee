"""Parquet's parse of a batch's later slices: pyarrow.json with the first slice's schema against json_columns.c,
in-process (no Kafka), on one core.

    python bench/json_columns.py

One 64 MiB batch of the bench's events (1 KiB and 200 B values) is cut into 2 MiB slices as lake-ingest cuts it
(decode.PARSE_SLICE_BYTES); the first slice's schema is inferred as lake-ingest infers it (dates kept as text), and
every later slice is parsed with that schema both ways: pyarrow.json on the calling thread (what lake-ingest did
before json_columns.c, and still does for a slice the C parse does not take) and json_table.table_of. Each line: the
best of 3 in µs per value, and whether the two tables are equal."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

from ingest_core.source import decode  # noqa: E402
from ingest_core.source.json_checks import slice_rows  # noqa: E402
from ingest_core.source.json_table import table_of  # noqa: E402


def best_of_3(parse, slices: list[pa.Array]) -> tuple[float, list[pa.Table]]:
    best, tables = float("inf"), []
    for _ in range(3):
        began = time.perf_counter()
        tables = [parse(s) for s in slices]
        best = min(best, time.perf_counter() - began)
    return best, tables


def main() -> None:
    print("| value size | pyarrow.json, µs per value | json_columns.c, µs per value | ratio | same table |")
    print("|---|---:|---:|---:|---|")
    for size in (1024, 200):
        lines = pa.array(common.EventFactory(size).batch(), pa.binary())
        rows = len(lines)
        step = slice_rows(lines, decode.PARSE_SLICE_BYTES)
        schema = decode._parse_checked(lines.slice(0, step), 64, threads=False).schema
        later = [lines.slice(start, step) for start in range(step, rows, step)]
        count = rows - step
        theirs, arrow_tables = best_of_3(lambda s, t=schema: decode._read(s, 1 << 20, t, strict=True, threads=False), later)
        mine, c_tables = best_of_3(lambda s, t=schema: table_of(s, t), later)
        pairs = zip(arrow_tables, c_tables, strict=True)
        same = all(a is not None and c is not None and c.equals(a.combine_chunks()) for a, c in pairs)
        print(f"| {size} B | {theirs / count * 1e6:.2f} | {mine / count * 1e6:.2f} | {theirs / mine:.1f}x | {same} |")


if __name__ == "__main__":
    main()
