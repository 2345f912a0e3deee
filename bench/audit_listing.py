"""How long `ingest audit` (without --deep) takes on a lake of many batches, on local disk.

Builds a synthetic lake as `ingest run` lays it out (one marker and one data file per batch,
spread over partitions and hour folders), then times the audit's own work: listing the lake,
reading and parsing every marker, checking the chains and the files. The broker is not asked
(the committed offsets are given), so the figure is the lake's side only.

    python bench/audit_listing.py                # 100,000 batches over 12 partitions
    python bench/audit_listing.py --batches 20000 --keep /tmp/lake
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest_core.commands.audit import audit
from ingest_core.sink.ledger import BatchMarker, MarkedFile, marker_path

ROWS = 1000  # records per batch (the files are empty: the audit without --deep never opens them)


def build(root: Path, batches: int, partitions: int, topic: str = "orders") -> dict[int, tuple[int, int, int]]:
    per_partition = batches // partitions
    made_folders: set[Path] = set()
    for partition in range(partitions):
        for index in range(per_partition):
            base = index * ROWS
            path = f"dt=2026-12-0{1 + index // 2400 % 9}/hour={index // 100 % 24:02d}/{topic}+{partition}+{base:020d}.parquet"
            marker = BatchMarker(topic, partition, base, base + ROWS - 1, ROWS, 0,
                                 (MarkedFile(path, ROWS, base, base + ROWS - 1),))
            for relative, data in ((path, b""), (marker_path(topic, partition, base), marker.to_json())):
                full = root / relative
                if full.parent not in made_folders:
                    full.parent.mkdir(parents=True, exist_ok=True)
                    made_folders.add(full.parent)
                with open(full, "wb") as handle:
                    handle.write(data)
    return {p: (per_partition * ROWS, 0, per_partition * ROWS) for p in range(partitions)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="build the lake here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    began = time.monotonic()
    positions = build(root, args.batches, args.partitions)
    built = time.monotonic() - began
    os.sync()
    settings = types.SimpleNamespace(topic="orders", output=types.SimpleNamespace(url=f"file://{root}",
                                                                                  storage_options={}))
    began = time.monotonic()
    report = audit(settings, positions=positions)
    took = time.monotonic() - began
    print(f"{report.marker_files} markers, {report.data_files} data files ({args.partitions} partitions) "
          f"built in {built:.1f} s; audit (listing, markers, chains, files) {took:.1f} s; "
          f"findings {len(report.all_findings)}")
    if args.keep is None:
        import shutil
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
