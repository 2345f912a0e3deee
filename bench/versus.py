"""Two revisions of lake-ingest against each other, alternated run by run on one broker.

    python bench/versus.py BASE [NEW] [--runs 5] [--small] [--formats ndjson,parquet] [--write]

For a change whose effect is smaller than the day-to-day drift of the machine: the two
revisions' `ingest run --exit-at-end` (from `git archive` copies of ingest_core, C modules
built) take turns on the same preloaded topic (bench/run.py's, 1,000,000 values over 4
partitions, local lake), run 1 of BASE, run 1 of NEW, run 2 of BASE, ... Time as bench/run.py
counts it (process start to last commit); CPU and page faults from wait4 (all of the child's
threads, kernel included); peak RSS is the child's VmHWM. Medians, with the spread; NEW/BASE is
the median of the per-pair ratios. NEW defaults to HEAD. `--write` puts the table in
bench/RESULTS.md (section `versus:SIZE`).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import run as bench_run  # noqa: E402

FIELDS = [("seconds", "start to committed (s)", "{:.2f}"), ("cpu_s", "CPU (s)", "{:.2f}"),
          ("minor_faults", "page faults (k)", "{:.0f}"), ("peak_rss_mib", "peak RSS (MiB)", "{:.0f}")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against (e.g. a commit before a change)")
    parser.add_argument("new", nargs="?", default="HEAD", help="the revision under test (default HEAD)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each revision and format (default 5)")
    parser.add_argument("--small", action="store_true", help="200-byte messages instead of 1 KiB")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--formats", default="ndjson,parquet")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md (section versus:SIZE)")
    args = parser.parse_args(argv)

    size = 200 if args.small else 1024
    revisions = {label: common.git_revision(rev) for label, rev in (("base", args.base), ("new", args.new))}
    workdir = Path(tempfile.mkdtemp(prefix="lake-versus-"))
    sources = {label: common.ingest_core_source(rev, workdir, folder=f"src-{label}")
               for label, rev in (("base", args.base), ("new", args.new))}
    names = [f"lake-{fmt}" for fmt in args.formats.split(",")]
    broker = common.load_kafka_broker_module().LocalKafka(workdir / "kafka").start()
    results: dict[tuple[str, str], list[dict]] = {(name, label): [] for name in names for label in sources}
    try:
        context = bench_run.preloaded(broker.bootstrap, size, args.messages, 4, workdir, None, None)
        bench_run.measure("ceiling", 0, context)  # warms the broker, untimed
        for run in range(1, args.runs + 1):
            for name in names:
                for number, label in enumerate(sources):
                    context.source = sources[label]
                    result = bench_run.measure(name, run * 10 + number, context)
                    if result["problems"]:
                        raise SystemExit(f"{name} {label} run {run}: {result['problems']}")
                    results[(name, label)].append(result)
                    print(f"[versus] run {run} {name:<13} {label} {revisions[label]:<10} "
                          f"{result['seconds']:.2f} s, CPU {result['cpu_s']:.2f} s, "
                          f"{result['minor_faults'] / 1000:.0f} k faults, {result['peak_rss_mib']:.0f} MiB", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    table = markdown(results, revisions, names, size, args)
    print()
    print(table)
    if args.write:
        common.replace_section(f"versus:{size}", table)
    return 0


def markdown(results: dict, revisions: dict, names: list[str], size: int, args) -> str:
    lines = [f"{args.messages:,} JSON values of {size} B over 4 partitions, local lake; {args.runs} runs of each, "
             f"alternated; base {revisions['base']}, new {revisions['new']}; load average at the end "
             f"{' '.join(f'{x:.2f}' for x in common.load_average())}. Median (lowest-highest).", "",
             "| contender | revision | " + " | ".join(title for _, title, _ in FIELDS) + " | new / base time |",
             "|---|---|" + "---:|" * (len(FIELDS) + 1)]
    for name in names:
        base, new = results[(name, "base")], results[(name, "new")]
        ratio = statistics.median(n["seconds"] / b["seconds"] for b, n in zip(base, new, strict=True))
        for label, rows in (("base", base), ("new", new)):
            cells = []
            for key, _, form in FIELDS:
                values = [r[key] / (1000 if key == "minor_faults" else 1) for r in rows]
                cells.append(f"{form.format(statistics.median(values))} ({form.format(min(values))}-"
                             f"{form.format(max(values))})")
            last = f"{ratio:.2f}" if label == "new" else ""
            lines.append(f"| {name} | {revisions[label]} | " + " | ".join(cells) + f" | {last} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
