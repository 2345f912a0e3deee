"""Where lake-ingest spends its time: py-spy on the same 1M-message run bench/run.py times.

    python bench/profile.py                      # 1,000,000 x 1 KiB, NDJSON and Parquet
    python bench/profile.py --messages 200000 --formats parquet --rev HEAD

For each format lake-ingest runs twice under `py-spy record` (one run writes collapsed
stacks for the tables below, one a flame graph), sampling every thread at --rate Hz.
Written to bench/profiles/: lake-FORMAT.svg (flame graph), lake-FORMAT.txt (collapsed stacks)
and summary-SIZE.md (per thread: share of samples; top functions by self and inclusive time).
py-spy samples Python frames: time in C (pyarrow, librdkafka, zstd) shows on the Python line
that called it, which is what a hot-path change has to move.
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import run as bench_run  # noqa: E402

PROFILES = common.BENCH / "profiles"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--formats", default="ndjson,parquet")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--rev", help="profile ingest_core as committed at this revision (default: the work tree)")
    parser.add_argument("--no-svg", action="store_true", help="skip the flame-graph runs")
    parser.add_argument("--idle", action="store_true",
                        help="sample waiting threads too (py-spy --idle): the main thread's wall clock, waits included "
                             "(in consume() for data, in pyarrow for its worker threads, in commit for the broker); "
                             "files get an -idle suffix")
    parser.add_argument("--summarize", metavar="REV", help="only rewrite the summary from the stacks already in "
                                                            "bench/profiles/, reading source lines at REV")
    args = parser.parse_args(argv)
    if args.summarize:
        return resummarize(args)
    venv = common.competitor_venv()
    py_spy = str(venv / "bin" / "py-spy")
    size = 200 if args.small else 1024
    suffix = "-idle" if args.idle else ""
    workdir = Path(tempfile.mkdtemp(prefix="lake-profile-"))
    source = common.ingest_core_source(args.rev, workdir)
    SOURCE_ROOT.append(source or common.REPO)
    PROFILES.mkdir(exist_ok=True)
    broker = common.load_kafka_broker_module().LocalKafka(workdir / "kafka").start()
    report = [f"# Profile of lake-ingest: {args.messages:,} JSON messages of {size} B over {args.partitions} partitions",
              "", f"lake-ingest {common.git_revision(args.rev)}; py-spy {args.rate} Hz, all threads, idle samples "
              f"{'included (wall clock)' if args.idle else 'excluded'}; load average at start "
              f"{bench_run.fmt_load(common.load_average())}.", ""]
    try:
        ctx = bench_run.preloaded(broker.bootstrap, size, args.messages, args.partitions, workdir, venv, source)
        for number, fmt in enumerate(f for f in args.formats.split(",") if f):
            raw = PROFILES / f"lake-{fmt}-{size}{suffix}.txt"
            wrap = [py_spy, "record", "--rate", str(args.rate), "--threads", "--format", "raw", "-o", str(raw),
                    *(["--idle"] if args.idle else []), "--"]
            result = bench_run.measure(f"lake-{fmt}", 100 + number, ctx, wrap=wrap)
            print(f"[profile] lake-{fmt} (raw stacks) {bench_run.describe(result)}", flush=True)
            report += summarize(raw, fmt, result, args.rate)
            if not args.no_svg:
                svg = PROFILES / f"lake-{fmt}-{size}{suffix}.svg"
                wrap = [py_spy, "record", "--rate", str(args.rate), "--threads", "--format", "flamegraph", "-o",
                        str(svg), *(["--idle"] if args.idle else []), "--"]
                result = bench_run.measure(f"lake-{fmt}", 200 + number, ctx, wrap=wrap)
                print(f"[profile] lake-{fmt} (flame graph) {bench_run.describe(result)}", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = PROFILES / f"summary-{size}{suffix}.md"
    out.write_text("\n".join(report) + "\n")
    print("\n".join(report))
    print(f"\n[profile] written: {out}")
    return 0


def resummarize(args) -> int:
    size = 200 if args.small else 1024
    suffix = "-idle" if args.idle else ""
    workdir = Path(tempfile.mkdtemp(prefix="lake-profile-"))
    try:
        SOURCE_ROOT.append(common.ingest_core_source(args.summarize, workdir))
        out = PROFILES / f"summary-{size}{suffix}.md"
        head = out.read_text().split("## lake-", 1)[0].rstrip().splitlines() if out.exists() else []
        report = head + [""]
        for fmt in (f for f in args.formats.split(",") if f):
            raw = PROFILES / f"lake-{fmt}-{size}{suffix}.txt"
            previous = _previous_run(out, fmt)
            report += summarize(raw, fmt, previous, args.rate)
        out.write_text("\n".join(report) + "\n")
        print(f"[profile] rewritten: {out}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _previous_run(summary: Path, fmt: str) -> dict:
    """The timing line of an earlier summary, so a re-summary keeps it."""
    try:
        text = summary.read_text().split(f"## lake-{fmt}", 1)[1]
        match = re.search(r"Timed run under py-spy: ([\d.]+) s .*?\(([\d,]+) records/s", text)
        return {"seconds": float(match.group(1)), "records_per_s": int(match.group(2).replace(",", ""))}
    except (OSError, IndexError, AttributeError):
        return {}


_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_collapsed(path: Path):
    """Yield (thread, [frames root first], samples) from py-spy's raw (collapsed) output."""
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0]
        yield thread, frames[1:], int(count)


def short(frame: str, keep_line: bool = False) -> str:
    """'accept (ingest_core/flow.py)' (with keep_line, ':160' too) from py-spy's
    'accept (/abs/path/ingest_core/flow.py:160)'."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    for anchor in ("site-packages/", "/ingest_core/", "/bench/", "lib/python3"):
        if anchor in file:
            file = file[file.index(anchor):].replace("site-packages/", "")
            break
    line = f":{match.group('line')}" if keep_line and match.group("line") else ""
    return f"{match.group('function')} ({file.lstrip('/')}{line})"


def function_key(frame: str) -> str:
    """A frame without its line number: time in one function adds up over its lines."""
    return re.sub(r":\d+\)$", ")", short(frame))


def summarize(raw: Path, fmt: str, result: dict, rate: int) -> list[str]:
    threads = collections.Counter()
    self_time: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    lines_self = collections.Counter()
    own_lines: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)  # per thread kind
    total = 0
    for thread, frames, count in parse_collapsed(raw):
        if frames and _is_waiting(frames[-1]):
            continue  # a publisher thread blocked on its work queue: idle, whatever py-spy thinks
        kind = thread_kind(thread, frames)
        threads[kind] += count
        total += count
        if not frames:
            continue
        self_time[kind][function_key(frames[-1])] += count
        self_time["all"][function_key(frames[-1])] += count
        lines_self[short(frames[-1], keep_line=True)] += count
        own = next((f for f in reversed(frames) if "ingest_core/" in f), None)
        if own is not None:
            own_lines[kind][short(own, keep_line=True)] += count
        for key in sorted({function_key(f) for f in frames}):  # sorted: ties print in a stable order
            inclusive[kind][key] += count
            inclusive["all"][key] += count
    seconds = result.get("seconds")
    out = [f"## lake-{fmt}", "",
           f"Timed run under py-spy: {seconds} s from assignment to last commit ({result.get('records_per_s', 0):,} "
           f"records/s; the profiler costs some of the 2 cores). {total:,} samples = {total / rate:.1f} s of busy "
           "thread time.", "", "| thread | busy s | share of samples |", "|---|---:|---:|"]
    for kind, count in threads.most_common():
        out.append(f"| {kind} | {count / rate:.1f} | {count / total:.0%} |")
    for kind in ["main"] + [k for k, _ in threads.most_common() if k != "main"]:
        if kind not in self_time:
            continue
        busy = threads[kind]
        out += ["", f"### {kind} thread: top functions by self time (% of this thread's busy samples)", "",
                "| function | self | inclusive |", "|---|---:|---:|"]
        for key, count in self_time[kind].most_common(15):
            out.append(f"| `{key}` | {count / busy:.1%} | {inclusive[kind][key] / busy:.1%} |")
        out += ["", f"### {kind} thread: top functions by inclusive time", "", "| function | inclusive |", "|---|---:|"]
        for key, count in inclusive[kind].most_common(25):
            out.append(f"| `{key}` | {count / busy:.1%} |")
    for kind in ("main", "publisher"):
        busy = threads.get(kind, 0) or 1
        out += ["", f"### {kind} thread(s): the ingest_core lines they were in (innermost ingest_core frame, so time "
                "in pyarrow, librdkafka or the standard library counts on the line that called it)", "",
                f"| line | source | % of {kind}-thread busy samples |", "|---|---|---:|"]
        for line, count in own_lines[kind].most_common(20):
            out.append(f"| `{line}` | `{source_line(line)}` | {count / busy:.1%} |")
    out += ["", "### hottest lines (self time, all threads)", "", "| line | % of all samples |", "|---|---:|"]
    for line, count in lines_self.most_common(20):
        out.append(f"| `{line}` | {count / total:.1%} |")
    out.append("")
    return out


_SOURCES: dict[str, list[str]] = {}
SOURCE_ROOT: list[Path] = []  # where the profiled ingest_core lives (set by main)


def source_line(line: str) -> str:
    """The text of 'func (ingest_core/x.py:12)' in the profiled source, shortened."""
    match = re.search(r"\((ingest_core/[^:]+):(\d+)\)$", line)
    if not match or not SOURCE_ROOT:
        return ""
    path = SOURCE_ROOT[0] / match.group(1)
    if str(path) not in _SOURCES:
        try:
            _SOURCES[str(path)] = path.read_text().splitlines()
        except OSError:
            _SOURCES[str(path)] = []
    text = _SOURCES[str(path)]
    number = int(match.group(2))
    code = text[number - 1].strip() if 0 < number <= len(text) else ""
    return (code[:90] + "…" if len(code) > 90 else code).replace("|", "\\|").replace("`", "'")


def _is_waiting(frame: str) -> bool:
    return frame.startswith("_worker (") and "concurrent/futures/thread.py" in frame


def thread_kind(thread: str, frames: list[str]) -> str:
    """'main', 'publisher' or 'other' from the thread's frames (py-spy names threads by id)."""
    text = ";".join(frames)
    if "_bootstrap" in text and "_worker (concurrent/futures/thread.py" in text:
        return "publisher"
    if "<module> (" in text or "main (" in text and "cli.py" in text:
        return "main"
    return "other"


if __name__ == "__main__":
    sys.exit(main())
