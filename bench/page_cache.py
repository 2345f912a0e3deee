"""What the page cache costs a writer on this machine, and what dropping written pages saves.

    python bench/page_cache.py            # 1 GiB in 64 MiB files, 3 rounds, each way

Writes the files as the local store publishes them (write, flush, fsync), either keeping their pages in the page
cache or dropping them after the fsync (`posix_fadvise(DONTNEED)`, what ingest_core/sink/stores/local.py does),
and prints the median wall time and the kernel CPU of each way. The two ways alternate, and each round's files
are deleted before the next."""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

CHUNK = (b"x" * 1023 + b"\n") * 2048  # 2 MiB of 1 KiB lines


def write_files(folder: str, files: int, file_mib: int, drop: bool) -> tuple[float, float]:
    """(wall s, kernel CPU s) of writing `files` files of `file_mib` MiB into `folder`."""
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(files):
        with open(os.path.join(folder, f"f{i}"), "wb") as handle:
            for _ in range(file_mib // 2):
                handle.write(CHUNK)
            handle.flush()
            os.fsync(handle.fileno())
            if drop:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter() - began, after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--file-mib", type=int, default=64)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {"kept in the page cache": [], "dropped after fsync": []}
    root = tempfile.mkdtemp(prefix="page-cache-", dir=args.dir)
    try:
        for _ in range(args.rounds):
            for label, drop in (("kept in the page cache", False), ("dropped after fsync", True)):
                folder = tempfile.mkdtemp(dir=root)
                results[label].append(write_files(folder, args.files, args.file_mib, drop))
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = args.files * args.file_mib
    print(f"{total} MiB in {args.files} files of {args.file_mib} MiB, medians of {args.rounds} rounds\n")
    print("| written pages | wall s | kernel CPU s |")
    print("|---|---:|---:|")
    for label, runs in results.items():
        print(f"| {label} | {statistics.median(r[0] for r in runs):.2f} | {statistics.median(r[1] for r in runs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
