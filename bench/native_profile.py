"""Where lake-ingest's CPU goes below Python: `perf record` on the same run bench/run.py times.

    python bench/native_profile.py                     # 1,000,000 x 1 KiB, NDJSON and Parquet
    python bench/native_profile.py --small --formats ndjson

py-spy (bench/profile.py) shows Python frames: a write() that takes long shows as the Python
line that called it. perf samples every thread's CPU, the kernel's included, by native symbol,
so it tells a slow page-cache copy from a slow parser. Each format runs once under
`perf record -F RATE -g`; the samples are grouped into the categories below (by shared object
and symbol name). Also measured, outside lake-ingest: what writing 1 GiB to a new file costs
in this machine's kernel when its pages come from the free pool, and when they were just freed.
Written to bench/profiles/native-SIZE.md. Needs `perf` (linux-perf) and permission to use it.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import run as bench_run  # noqa: E402

PROFILES = common.BENCH / "profiles"

# (category, shared-object pattern, symbol pattern): the first match wins.
CATEGORIES = [
    ("kernel: copying file data into the page cache (write)", r"kernel", r"copy_folio_from_iter|generic_perform_write|ext4_"),
    ("kernel: page faults, zeroing and unmapping memory", r"kernel",
     r"fault|clear_page|do_anonymous|unmap|zap_|free_pages|free_unref|alloc_pages|get_page_from_freelist|"
     r"rmqueue|folio|lru|mmap|munmap|mremap|release_pages|page_|memcg|mem_cgroup|slab|alloc_|lock_vma|list_del"),
    ("kernel: receiving from the broker (sockets)", r"kernel", r"copy_to_iter|tcp_|skb|sock_|recv"),
    ("kernel: threads waking and waiting (futex, scheduler)", r"kernel",
     r"futex|schedule|switch|spin_unlock|wake|enqueue|dequeue|pick_next|update_curr|try_to_wake"),
    ("kernel: other", r"kernel", r""),
    ("pyarrow.json parse (RapidJSON and Arrow's JSON builders)", r"libarrow\.so", r"json|rapidjson|ValidateUTF8"),
    ("Parquet writer and zstd", r"libparquet|zstd", r""),
    ("Parquet writer and zstd", r"libarrow", r"ZSTD|zstd|parquet"),  # zstd is linked into libarrow
    ("Arrow compute kernels (splice, checks, casts)", r"libarrow_compute|_compute\.cpython", r""),
    # Symbols only, no call chains: Arrow's own builders and buffers land here whoever calls them
    # (the JSON parser's builders among them).
    ("Arrow other (builders, buffers, memory pool)", r"libarrow|libarrow_python|lib\.cpython", r""),
    ("memcpy / memmove (libc)", r"libc", r"mem(move|cpy)"),
    ("malloc / free (libc)", r"libc", r"malloc|free|calloc|realloc|_int_|unlink_chunk|consolidate|tcache|sysmalloc"),
    ("libc other", r"libc", r""),
    ("Python: garbage collector", r"libpython", r"gc_|visit_|subtract_refs|move_unreachable|update_refs"),
    ("Python interpreter and objects", r"libpython|python3", r""),
    ("librdkafka and confluent-kafka", r"librdkafka|cimpl", r""),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--small", action="store_true", help="200-byte messages instead of 1 KiB")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--formats", default="ndjson,parquet")
    parser.add_argument("--rate", type=int, default=499, help="perf samples per second per CPU")
    parser.add_argument("--rev", help="profile ingest_core as committed at this revision (default: the work tree)")
    args = parser.parse_args(argv)
    perf = shutil.which("perf")
    if perf is None:
        print("native_profile: `perf` is not installed (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 2
    size = 200 if args.small else 1024
    workdir = Path(tempfile.mkdtemp(prefix="lake-native-"))
    source = common.ingest_core_source(args.rev, workdir)
    PROFILES.mkdir(exist_ok=True)
    report = [f"# Native profile of lake-ingest: {args.messages:,} JSON messages of {size} B over "
              f"{args.partitions} partitions", "",
              f"lake-ingest {common.git_revision(args.rev)}; `perf record -F {args.rate} -g`, every thread of the "
              f"lake-ingest process, kernel included; load average at start {bench_run.fmt_load(common.load_average())}. "
              "Shares are of all CPU samples of that process (its CPU time, not wall time).", ""]
    report += page_cache_costs(workdir)
    broker = common.load_kafka_broker_module().LocalKafka(workdir / "kafka").start()
    try:
        ctx = bench_run.preloaded(broker.bootstrap, size, args.messages, args.partitions, workdir, None, source)
        for number, fmt in enumerate(f for f in args.formats.split(",") if f):
            data = workdir / f"perf-{fmt}.data"
            wrap = [perf, "record", "-F", str(args.rate), "-g", "-o", str(data), "--"]
            result = bench_run.measure(f"lake-{fmt}", 300 + number, ctx, wrap=wrap)
            print(f"[native] lake-{fmt} {bench_run.describe(result)}", flush=True)
            report += summarize(perf, data, fmt, result, args.messages)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = PROFILES / f"native-{size}.md"
    out.write_text("\n".join(report) + "\n")
    print("\n".join(report))
    print(f"\n[native] written: {out}")
    return 0


def page_cache_costs(workdir: Path) -> list[str]:
    """Writing 1 GiB to a new file, three ways: pages from the kernel's free pool (twice, files
    kept), then again after those files were deleted (pages just freed)."""
    chunk = b"x" * (1 << 20)
    rows = []

    def write(name: str, label: str) -> None:
        path = workdir / name
        started, before = time.perf_counter(), os.times()
        with open(path, "wb") as handle:
            for _ in range(1024):
                handle.write(chunk)
        after, elapsed = os.times(), time.perf_counter() - started
        rows.append(f"| {label} | {1024 / elapsed:,.0f} MiB/s | {after.system - before.system:.2f} s |")

    write("cold-a.bin", "new file, pages from the free pool")
    write("cold-b.bin", "a second new file, pages from the free pool")
    for name in ("cold-a.bin", "cold-b.bin"):
        (workdir / name).unlink()
    write("warm.bin", "a third new file, right after deleting those two")
    (workdir / "warm.bin").unlink()
    return ["## What writing files costs on this machine (1 GiB, 1 MiB writes, no fsync)", "",
            "| write | speed | kernel CPU |", "|---|---:|---:|", *rows, ""]


def summarize(perf: str, data: Path, fmt: str, result: dict, messages: int) -> list[str]:
    text = subprocess.run([perf, "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                           "--sort", "dso,sym", "-t", "|"], capture_output=True, text=True, check=True).stdout
    shares: dict[str, float] = {name: 0.0 for name, _, _ in CATEGORIES}
    shares["other"] = 0.0
    top: list[tuple[float, str]] = []
    for line in text.splitlines():
        fields = line.split("|")
        if line.startswith("#") or len(fields) < 3:
            continue
        try:
            share = float(fields[0].strip().rstrip("%"))
        except ValueError:
            continue
        dso, symbol = fields[1].strip(), fields[2].strip()
        symbol = symbol[4:] if symbol[:4] in ("[k] ", "[.] ") else symbol
        shares[category(dso, symbol)] += share
        top.append((share, f"{short_symbol(symbol)} ({dso})"))
    seconds = result.get("seconds")
    lines = [f"## lake-{fmt}", "",
             f"Timed run under perf: {seconds} s from assignment to last commit "
             f"({result.get('records_per_s', 0):,} records/s), {result.get('cpu_s', 0) / messages * 1e6:.1f} µs of CPU "
             "per record (the whole process, start-up included; perf's own cost too).", "",
             "| where | share of CPU |", "|---|---:|"]
    lines += [f"| {name} | {share:.1f} % |" for name, share in sorted(shares.items(), key=lambda kv: -kv[1])
              if share >= 0.05]
    lines += ["", "Top symbols:", "", "| symbol | share |", "|---|---:|"]
    lines += [f"| `{name}` | {share:.1f} % |" for share, name in sorted(top, reverse=True)[:15]]
    return lines + [""] + by_thread(perf, data)


def by_thread(perf: str, data: Path) -> list[str]:
    """Each thread's share of the process's CPU samples, and the main thread's top symbols. The
    main thread is the lowest thread id (it is the process's own); the publisher threads and
    librdkafka's show as `python` and `rdk:*`."""
    text = subprocess.run([perf, "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                           "--sort", "pid", "-t", "|"], capture_output=True, text=True, check=True).stdout
    threads: list[tuple[int, str, float]] = []
    for line in text.splitlines():
        fields = line.split("|")
        match = re.match(r"\s*(\d+):(.*)", fields[1]) if len(fields) >= 2 and not line.startswith("#") else None
        if match:
            threads.append((int(match.group(1)), match.group(2).strip(), float(fields[0].strip().rstrip("%"))))
    if not threads:
        return []
    main_tid = min(tid for tid, _, _ in threads)
    rows = [f"| {'main (consume loop)' if tid == main_tid else name} | {tid} | {share:.1f} % |"
            for tid, name, share in sorted(threads, key=lambda t: -t[2]) if share >= 0.1]
    lines = ["By thread (share of the process's CPU samples):", "", "| thread | id | share |", "|---|---:|---:|", *rows, ""]
    # perf script, not `perf report --tid`: the leaf symbol of each of the main thread's samples.
    text = subprocess.run([perf, "script", "-i", str(data), "-F", "tid,ip,sym"], capture_output=True, text=True,
                          check=True).stdout
    leaves: collections.Counter[str] = collections.Counter()
    tid, first = None, False
    for line in text.splitlines():
        if not line.strip():
            tid = None
        elif not line.startswith("\t"):  # a sample's header: its thread id (right-aligned); its frames follow, tab-indented
            tid, first = int(line.split()[0]), True
        elif first and tid is not None:
            first = False
            if tid == main_tid:
                parts = line.split(None, 1)
                leaves[short_symbol(parts[1].strip() if len(parts) > 1 else "?")] += 1
    total = sum(leaves.values()) or 1
    top = [(100 * count / total, name) for name, count in leaves.items()]
    lines += ["The main thread's top symbols (share of the main thread's CPU samples):", "", "| symbol | share |",
              "|---|---:|", *[f"| `{name}` | {share:.1f} % |" for share, name in sorted(top, reverse=True)[:12]], ""]
    return lines


def category(dso: str, symbol: str) -> str:
    for name, dso_pattern, symbol_pattern in CATEGORIES:
        if re.search(dso_pattern, dso) and re.search(symbol_pattern, symbol):
            return name
    return "other"


def short_symbol(symbol: str) -> str:
    """A C++ symbol without its template arguments, at most 90 characters."""
    while True:
        shorter = re.sub(r"<[^<>]*>", "", symbol)
        if shorter == symbol:
            break
        symbol = shorter
    return symbol[:90]


if __name__ == "__main__":
    sys.exit(main())
