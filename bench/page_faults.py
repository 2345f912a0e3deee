"""What the main thread pays to take consumed values into a partition buffer (ValueColumn): with
a new memory map per buffer, with and without transparent huge pages, and with the maps reused
(batching/maps.py). No Kafka: the bench's 1 KiB values, 5,000 per consume() batch, 13 batches
(63 MiB) per buffer, 16 buffers one after the other, each written to a file with fsync after it
is filled (untimed; the page cache takes memory as the pipeline's files do), in a child process
per run so each starts with the same heap. Medians of --runs runs, alternating.

    python bench/page_faults.py [--runs 5] [--size 1024]

The kernel grants huge pages only where transparent huge pages are `madvise` or `always`
(/sys/kernel/mm/transparent_hugepage/enabled); with `never` both rows are the same.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = {
    "small": "new map per buffer, 4 KiB pages (no madvise)",
    "huge": "new map per buffer, huge pages from 16 MiB",
    "reused": "maps reused (MapPool), huge pages from 16 MiB (lake-ingest)",
}


def child(size: int, kind: str) -> dict:
    import os
    import resource
    import tempfile
    import time

    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    import common

    from ingest_core.batching import maps
    from ingest_core.batching.buffer import ValueColumn

    if kind == "small":
        maps.HUGE_PAGES_FROM = 1 << 62
    pool = maps.MapPool() if kind == "reused" else None
    factory = common.EventFactory(size)
    chunk = [factory.event(i) for i in range(5000)]
    buffers, batches = 16, max(1, (64 << 20) // (5000 * size))
    wall = system = faults = 0.0
    with tempfile.TemporaryDirectory() as lake:
        for number in range(buffers):
            before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            column = ValueColumn(maps=pool)
            for _ in range(batches):
                column.extend(chunk)
            wall += time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_SELF)
            system += after.ru_stime - before.ru_stime
            faults += after.ru_minflt - before.ru_minflt
            # Published as a file, as the pipeline does: the page cache takes memory the kernel
            # hands out, pages just freed among them (not timed).
            with open(os.path.join(lake, f"{number}.bin"), "wb") as file:
                file.write(column.array().buffers()[2])
                os.fsync(file.fileno())
            del column
    values = buffers * batches * len(chunk)
    return {
        "wall_us": wall / values * 1e6,
        "system_us": system / values * 1e6,
        "faults_per_mib": faults / (values * size / (1 << 20)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--child", choices=list(KINDS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.size, args.child)))
        return 0
    results: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for _ in range(args.runs):
        for kind in results:
            out = subprocess.run([sys.executable, __file__, "--child", kind, "--size", str(args.size)],
                                 capture_output=True, text=True, check=True).stdout
            results[kind].append(json.loads(out))
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    print(f"{args.size} B values into ValueColumn; medians of {args.runs} runs; THP: "
          f"{thp.read_text().strip() if thp.exists() else 'not available'}")
    print()
    print("| buffer pages | µs per value (wall) | kernel µs per value | page faults per MiB |")
    print("|---|---:|---:|---:|")
    for kind, label in KINDS.items():
        rows = results[kind]
        print(f"| {label} | {statistics.median(r['wall_us'] for r in rows):.3f} | "
              f"{statistics.median(r['system_us'] for r in rows):.3f} | "
              f"{statistics.median(r['faults_per_mib'] for r in rows):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
