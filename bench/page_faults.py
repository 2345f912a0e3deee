"""What the main thread pays to take consumed values into a partition buffer (ValueColumn), with
and without transparent huge pages for the buffer's memory map. No Kafka: the bench's 1 KiB
values, 5,000 per consume() batch, 13 batches (63 MiB) per buffer, 16 buffers one after the
other (a new map each, as after every cut), in a child process per run so each starts with the
same heap. Medians of --runs runs, alternating.

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


def child(size: int, huge: bool) -> dict:
    import resource
    import time

    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    import common

    from ingest_core.batching.buffer import ValueColumn

    if not huge:
        ValueColumn.HUGE_PAGES_FROM = 1 << 62
    factory = common.EventFactory(size)
    chunk = [factory.event(i) for i in range(5000)]
    buffers, batches = 16, max(1, (64 << 20) // (5000 * size))
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    for _ in range(buffers):
        column = ValueColumn()
        for _ in range(batches):
            column.extend(chunk)
        del column
    after = resource.getrusage(resource.RUSAGE_SELF)
    values = buffers * batches * len(chunk)
    return {
        "wall_us": (time.perf_counter() - began) / values * 1e6,
        "system_us": (after.ru_stime - before.ru_stime) / values * 1e6,
        "faults_per_mib": (after.ru_minflt - before.ru_minflt) / (values * size / (1 << 20)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--child", choices=["huge", "small"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.size, args.child == "huge")))
        return 0
    results: dict[str, list[dict]] = {"small": [], "huge": []}
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
    for kind, label in (("small", "4 KiB (no madvise)"), ("huge", "huge pages from 16 MiB (lake-ingest)")):
        rows = results[kind]
        print(f"| {label} | {statistics.median(r['wall_us'] for r in rows):.3f} | "
              f"{statistics.median(r['system_us'] for r in rows):.3f} | "
              f"{statistics.median(r['faults_per_mib'] for r in rows):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
