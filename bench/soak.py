"""Is lake-ingest's memory flat under steady traffic? A long run against the real broker.

    python bench/soak.py                 # 30 minutes at 3,000 msg/s of 1 KiB (updates RESULTS.md)
    python bench/soak.py --minutes 2     # smoke check
    python bench/soak.py --rate 8000 --max-age 10s --rev HEAD

A producer thread sends JSON events at a steady --rate to a 4-partition topic while
`ingest run` (default batch settings: 100,000 records, 64 MiB, --max-age) lands them as
Parquet. Every --every seconds the harness reads the process's VmRSS from /proc. At the
end the producer stops, the consumer drains and is sent SIGTERM (it publishes what is
buffered, commits and exits 0), and the lake is checked: every produced record landed,
every offset committed. Printed: RSS min / median / max (after the first 30 s of start-up),
and the least-squares slope of
RSS over time after the warm-up (MiB per hour), which should be about 0.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=3000, help="messages per second")
    parser.add_argument("--small", action="store_true", help="200-byte messages instead of 1 KiB")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--format", default="parquet", choices=["parquet", "ndjson"])
    parser.add_argument("--max-age", default="60s", help="batch.max_age of the consumer")
    parser.add_argument("--every", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, help="seconds left out of the slope (default: a tenth of the run, "
                                                     "at least 60 s and two flush intervals)")
    parser.add_argument("--rev", help="run ingest_core as committed at this revision (default: the work tree)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    size = 200 if args.small else 1024
    duration = args.minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="lake-soak-"))
    source = common.ingest_core_source(args.rev, workdir)
    broker = common.load_kafka_broker_module().LocalKafka(workdir / "kafka").start()
    lake = workdir / "lake"
    topic, group = "soak", "soak-lake-ingest"
    config = workdir / "soak.yaml"
    config.write_text(
        f"topic: {topic}\ngroup_id: {group}\nkafka: {json.dumps({'bootstrap.servers': broker.bootstrap})}\n"
        f"output:\n  url: file://{lake}\n  format: {args.format}\n"
        f"batch: {{max_records: 100000, max_bytes: 64MiB, max_age: {args.max_age}}}\nhttp: {{port: 0}}\n")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "minutes": args.minutes,
              "rate": args.rate, "value_size": size, "partitions": args.partitions, "format": args.format,
              "max_age": args.max_age, "lake_ingest_revision": common.git_revision(args.rev),
              "machine": common.machine(), "loadavg_start": common.load_average()}
    print(f"[soak] {args.minutes:g} min at {args.rate:,} msg/s of {size} B, {args.format}, max_age {args.max_age}; "
          f"RSS every {args.every:g} s; load average {' '.join(f'{x:.2f}' for x in report['loadavg_start'])}", flush=True)
    produced = {"count": 0}
    stop = threading.Event()
    try:
        common.create_topic(broker.bootstrap, topic, args.partitions)
        env = {"PYTHONPATH": str(source)} if source else {}
        stderr = open(workdir / "ingest.stderr", "wb")
        process = subprocess.Popen([sys.executable, "-m", "ingest_core", "run", str(config), "--log-format", "json"],
                                   cwd=common.REPO, env={**_environ(), **env}, stdout=subprocess.DEVNULL, stderr=stderr)
        producer = threading.Thread(target=produce, args=(broker.bootstrap, topic, args.rate, size, args.partitions,
                                                          stop, produced), daemon=True)
        began = time.monotonic()
        producer.start()
        samples: list[tuple[float, float]] = []
        next_sample = began
        while time.monotonic() - began < duration:
            if process.poll() is not None:
                raise RuntimeError(f"ingest run exited early with {process.returncode}; see {workdir / 'ingest.stderr'}")
            now = time.monotonic()
            if now >= next_sample:
                rss = common.rss_mib(process.pid)
                if rss is not None:
                    samples.append((now - began, rss))
                    if len(samples) % max(1, int(60 / args.every)) == 1:
                        print(f"[soak] {now - began:6.0f} s  RSS {rss:6.1f} MiB  produced {produced['count']:,}  "
                              f"load {common.load_average()[0]:.2f}", flush=True)
                next_sample += args.every
            time.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
        stop.set()
        producer.join(60)
        marks = common.high_watermarks(broker.bootstrap, topic, args.partitions)
        drained = wait_committed(broker.bootstrap, group, topic, args.partitions, marks, timeout=180)
        process.send_signal(signal.SIGTERM)
        code = process.wait(120)
        stderr.close()
        rows, files = common.count_rows(lake, (".parquet", ".ndjson", ".ndjson.gz"))
        commits = common.committed(broker.bootstrap, group, topic, args.partitions)
    finally:
        stop.set()
        broker.stop()
    warmup = args.warmup if args.warmup is not None else max(60.0, duration / 10, 2 * _seconds(args.max_age))
    steady = [(t, r) for t, r in samples if t >= warmup] or samples
    # The first seconds are start-up (imports, group join, empty buffers): not what "min" should say.
    values = [r for t, r in samples if t >= min(30.0, duration / 4)] or [r for _, r in samples]
    slope = slope_per_hour(steady)
    report.update({
        "produced": produced["count"], "rows_landed": rows, "files": files, "exit_code": code,
        "drained_before_sigterm": drained, "committed_matches": commits == marks,
        "rss_min_mib": round(min(values), 1), "rss_median_mib": round(statistics.median(values), 1),
        "rss_max_mib": round(max(values), 1), "warmup_s": warmup,
        "rss_steady_min_mib": round(min(r for _, r in steady), 1), "rss_steady_max_mib": round(max(r for _, r in steady), 1),
        "slope_mib_per_hour": round(slope, 1), "samples": [(round(t, 1), round(r, 1)) for t, r in samples],
        "loadavg_end": common.load_average(),
    })
    ok = rows == produced["count"] and commits == marks and code == 0
    bound = 1.5 * 64 * args.partitions + 150
    summary = (
        f"{args.minutes:g} min at {args.rate:,} msg/s of {size} B ({args.format}, max_age {args.max_age}), "
        f"{report['date']}, lake-ingest {report['lake_ingest_revision']}, load average "
        f"{' '.join(f'{x:.2f}' for x in report['loadavg_start'])} at start, "
        f"{' '.join(f'{x:.2f}' for x in report['loadavg_end'])} at end.\n\n"
        f"| RSS min | median | max | after warm-up ({warmup:.0f} s): min / max | slope after warm-up | bound (1.5 x 64 MiB x "
        f"{args.partitions} + 150) | produced | landed | committed = watermarks | exit |\n"
        f"|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n"
        f"| {report['rss_min_mib']:.0f} MiB | {report['rss_median_mib']:.0f} MiB | {report['rss_max_mib']:.0f} MiB | "
        f"{report['rss_steady_min_mib']:.0f} / {report['rss_steady_max_mib']:.0f} MiB | {slope:+.1f} MiB/h | "
        f"{bound:.0f} MiB | {produced['count']:,} | {rows:,} in {files} files | {'yes' if commits == marks else 'NO'} | {code} |"
    )
    print()
    print(summary)
    full_run = args.minutes >= 30 and not args.no_write
    # Only a full run replaces the kept samples; a smoke or --no-write run leaves them alone.
    out = (common.BENCH / "results" if full_run else Path(tempfile.gettempdir())) / f"soak-{size}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\n[soak] raw samples: {out}")
    if full_run:
        common.replace_section("soak", summary)
        print(f"[soak] updated {common.BENCH / 'RESULTS.md'}")
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"[soak] PROBLEM: see {workdir}", file=sys.stderr)
    return 0 if ok else 1


def _environ() -> dict:
    import os

    return dict(os.environ)


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def produce(bootstrap: str, topic: str, rate: int, size: int, partitions: int, stop: threading.Event,
            produced: dict) -> None:
    """Send events at `rate` per second until `stop`, pacing every 100 messages."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": 1})
    factory = common.EventFactory(size)
    began = time.monotonic()
    i = 0
    while not stop.is_set():
        producer.produce(topic, factory.event(i), key=factory.key(i), partition=i % partitions)
        i += 1
        if i % 100 == 0:
            producer.poll(0)
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
            produced["count"] = i
    producer.flush(60)
    produced["count"] = i


def wait_committed(bootstrap, group, topic, partitions, marks, timeout: float) -> bool:
    """Wait until the consumer has committed everything (max_age flushes the tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if common.committed(bootstrap, group, topic, partitions) == marks:
            return True
        time.sleep(2)
    return False


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS (MiB) over time, in MiB per hour."""
    if len(samples) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in samples)
    mean_r = statistics.fmean(r for _, r in samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (r - mean_r) for t, r in samples) / spread * 3600


if __name__ == "__main__":
    sys.exit(main())
