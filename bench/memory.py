"""Memory: one budget per pod, whatever the partition count.

    python bench/memory.py                       # 2,000,000 x 1 KiB for 1, 4, 24, 64, 128 partitions, 3 runs each
    python bench/memory.py --partitions 24 --runs 1 --messages 500000   # a quick look
    python bench/memory.py --idle                # also: RSS of a consumer of an idle topic

For each partition count, one topic is made and preloaded once; `ingest run` then reads
it all from the beginning, as a child process, with a config that names only topic,
group and output (and turns the HTTP port off): everything else is `consumers/defaults.yaml`
as shipped (batch.max_bytes 64MiB, deploy.resources.memory 1Gi, memory.limit its default).

Per case it prints: peak RSS of the whole process from the OS (the child's VmHWM, read
from /proc while it runs: bench/common.py run_child), the budget and the pod limit, records/s from process start to the last
commit, the mean data file size, and how many batches were cut early for memory.
The target: peak RSS <= 80 % of the pod limit in every case, and records/s at 24
partitions within 20 % of 4 partitions (both medians, from the same run).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

MiB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    partition_counts = [int(p) for p in args.partitions.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="lake-bench-memory-"))
    broker = common.load_kafka_broker_module().LocalKafka(workdir / "kafka").start()
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": common.machine(),
                    "lake_ingest_revision": common.git_revision(None), "messages": args.messages,
                    "value_size": args.size, "runs": args.runs, "cases": []}
    try:
        for partitions in partition_counts:
            topic = f"memory-{partitions}-{uuid.uuid4().hex[:6]}"
            common.create_topic(broker.bootstrap, topic, partitions)
            value_bytes, seconds = common.preload(broker.bootstrap, topic, args.messages, partitions, args.size)
            marks = common.high_watermarks(broker.bootstrap, topic, partitions)
            print(f"[memory] {partitions} partitions: preloaded {args.messages:,} ({value_bytes / 1e9:.2f} GB) "
                  f"in {seconds:.0f} s", flush=True)
            runs = [one_run(broker.bootstrap, topic, partitions, marks, workdir, run, value_bytes)
                    for run in range(1, args.runs + 1)]
            report["cases"].append({"partitions": partitions, "runs": runs})
            delete_topic(broker.bootstrap, topic)  # the next case's backlog must not share the disk with this one
        if args.idle:
            report["idle"] = idle_run(broker.bootstrap, workdir)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = markdown_table(report)
    print()
    print(table)
    out = common.BENCH / "results" / f"memory-{args.size}.json"
    if not args.no_write:
        out.write_text(json.dumps(report, indent=2))
        print(f"\n[memory] raw results: {out}")
        common.replace_section("table:memory", table)
        print(f"[memory] updated {common.BENCH / 'RESULTS.md'} (section table:memory)")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--size", type=int, default=1024, help="value bytes (default 1024)")
    parser.add_argument("--partitions", default="1,4,24,64,128")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", action="store_true", help="also measure a consumer of an idle topic")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/memory-SIZE.json")
    return parser.parse_args(argv)


def config_text(bootstrap: str, topic: str, group: str, lake: Path) -> str:
    """Only topic, group and output; the rest is consumers/defaults.yaml as shipped."""
    return (f"extends: {common.REPO / 'consumers' / 'defaults.yaml'}\n"
            f"topic: {topic}\ngroup_id: {group}\n"
            f"kafka: {{bootstrap.servers: '{bootstrap}'}}\n"
            f"output: {{url: 'file://{lake}'}}\n"
            "http: {port: 0}\n")


def one_run(bootstrap: str, topic: str, partitions: int, marks: dict[int, int], workdir: Path, run: int,
            value_bytes: int) -> dict:
    group = f"memory-{uuid.uuid4().hex[:8]}"
    lake = workdir / f"lake-{group}"
    config = workdir / f"{group}.yaml"
    config.write_text(config_text(bootstrap, topic, group, lake))
    child = common.run_child([sys.executable, "-m", "ingest_core", "run", str(config), "--exit-when-idle", "3s",
                              "--log-format", "json"], workdir, group, timeout=1800)
    events = [json.loads(line) for line in child.stdout.splitlines() + child.stderr.splitlines()
              if line.startswith("{")]
    flushes = [e for e in events if e.get("event") == "flush"]
    budget = next((e for e in events if e.get("event") == "memory_budget"), {})
    committed = common.committed(bootstrap, group, topic, partitions)
    landed = sum(e["rows"] for e in flushes)
    last_commit = max(datetime.fromisoformat(e["time"]).timestamp() for e in flushes) if flushes else 0
    seconds = last_commit - child.spawned_at
    result = {
        "run": run, "exit_code": child.returncode, "peak_rss_mib": round(child.peak_rss_mib, 1),
        "pod_limit_mib": pod_limit_mib(config), "budget_mib": round(budget.get("limit", 0) / MiB),
        "budget_messages_mib": round(budget.get("messages", 0) / MiB),
        "records": landed, "all_committed": committed == marks, "seconds": round(seconds, 2),
        "records_per_s": round(landed / seconds) if seconds > 0 else 0,
        "files": sum(len(e["paths"]) for e in flushes),
        "mean_file_mib": round(sum(e["bytes"] for e in flushes) / max(1, sum(len(e["paths"]) for e in flushes)) / MiB, 2),
        "mean_batch_mib": round(value_bytes / max(1, len(flushes)) / MiB, 1),  # message bytes per batch
        "cut_for_memory": sum(1 for e in flushes if e.get("reason") == "memory"),
        "batches": len(flushes), "cpu_s": round(child.cpu_s, 1),
    }
    print(f"[memory] {partitions:>3} partitions run {run}: {result}", flush=True)
    shutil.rmtree(lake, ignore_errors=True)
    return result


def pod_limit_mib(config: Path) -> int:
    """deploy.resources.memory of the config as `ingest render` writes it into the pod."""
    from ingest_core.config import load_settings

    return load_settings(config).deploy.resources.memory_bytes // MiB


def idle_run(bootstrap: str, workdir: Path, seconds: float = 30.0) -> dict:
    """RSS of `ingest run` on a topic with nothing to read, after `seconds`."""
    import subprocess

    topic = f"idle-{uuid.uuid4().hex[:6]}"
    common.create_topic(bootstrap, topic, 4)
    config = workdir / "idle.yaml"
    config.write_text(config_text(bootstrap, topic, f"idle-{topic}", workdir / "idle-lake"))
    process = subprocess.Popen([sys.executable, "-m", "ingest_core", "run", str(config), "--log-format", "json"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=common.REPO)
    samples = []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        time.sleep(1)
        samples.append(common.rss_mib(process.pid) or 0)
    process.terminate()
    process.wait(30)
    result = {"seconds": seconds, "rss_mib": round(samples[-1], 1), "max_rss_mib": round(max(samples), 1)}
    print(f"[memory] idle consumer: {result}", flush=True)
    return result


def delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=60)


def markdown_table(report: dict) -> str:
    lines = [
        f"{report['messages']:,} messages of {report['value_size']} B, shipped defaults (batch.max_bytes 64MiB, "
        f"pod 1Gi, memory.limit its default), medians of {report['runs']} run(s), {report['date']}, "
        f"revision {report['lake_ingest_revision']}",
        "",
        "| partitions | peak RSS MiB (runs) | pod limit MiB | % of pod | budget MiB (messages) | records/s | "
        "vs 4 partitions | mean batch MiB (values) | mean file MiB (Parquet) | cut for memory | all committed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_partitions = {case["partitions"]: case["runs"] for case in report["cases"]}
    base = statistics.median(r["records_per_s"] for r in by_partitions[4]) if 4 in by_partitions else None
    for partitions, runs in by_partitions.items():
        rss = statistics.median(r["peak_rss_mib"] for r in runs)
        speed = statistics.median(r["records_per_s"] for r in runs)
        lines.append(
            f"| {partitions} | {rss:.0f} ({', '.join(format(r['peak_rss_mib'], '.0f') for r in runs)}) | "
            f"{runs[0]['pod_limit_mib']} | {100 * rss / runs[0]['pod_limit_mib']:.0f} % | {runs[0]['budget_mib']} ({runs[0]['budget_messages_mib']}) | "
            f"{speed:,.0f} | {format(speed / base, '.2f') if base else '-'} | "
            f"{statistics.median(r['mean_batch_mib'] for r in runs):.1f} | "
            f"{statistics.median(r['mean_file_mib'] for r in runs):.1f} | "
            f"{statistics.median(r['cut_for_memory'] for r in runs):.0f} of "
            f"{statistics.median(r['batches'] for r in runs):.0f} | "
            f"{'yes' if all(r['all_committed'] and r['records'] == report['messages'] for r in runs) else 'NO'} |")
    if report.get("idle"):
        lines += ["", f"Idle consumer (4 partitions, nothing to read) after {report['idle']['seconds']:.0f} s: "
                      f"{report['idle']['rss_mib']:.0f} MiB RSS (max {report['idle']['max_rss_mib']:.0f})."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
