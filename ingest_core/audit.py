"""`ingest audit CONFIG`: what the lake holds against what the topic has, per partition.

The lake's batch markers form one chain per partition: each batch starts where the one
before ended (base = previous end + 1). From the chain and the file listing the audit
reports landed offset ranges, gaps (a hole in the chain, or a commit beyond it), overlaps
(two batches covering one offset), files a committed batch should have but does not, and
lag (high watermark minus committed offset). `--deep` also reads every data file's
`_partition, _offset` columns and checks each row once, inside its batch.
Exit 0 when clean, 1 on any gap, overlap, missing file or duplicate row.
"""
from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, load_settings
from .ledger import BatchMarker, Ledger
from .storage import LakeStore, StorageError


def add_arguments(parser) -> None:
    parser.add_argument("config", type=Path)
    parser.add_argument("--deep", action="store_true", help="also read every data file's _partition/_offset columns")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


@dataclass
class PartitionReport:
    partition: int
    batches: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)  # merged landed [first, last] offset ranges
    rows: int = 0
    dead_letters: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    overlaps: list[tuple[int, int]] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    duplicate_rows: int = 0
    in_flight: int = 0  # batches claimed at or after the committed offset (published or not yet)
    committed: int | None = None
    low: int | None = None
    high: int | None = None

    @property
    def lag(self) -> int | None:
        if self.high is None:
            return None
        start = self.committed if self.committed is not None and self.committed >= 0 else self.low
        return None if start is None else self.high - start

    @property
    def problems(self) -> int:
        return len(self.gaps) + len(self.overlaps) + len(self.missing_files) + self.duplicate_rows


def check_chain(partition: int, markers: list[BatchMarker], files: set[str], committed: int | None) -> PartitionReport:
    """Pure: the report of one partition from its markers, the lake's file listing and the commit."""
    report = PartitionReport(partition, committed=committed)
    markers = sorted(markers, key=lambda m: m.base)
    report.batches = len(markers)
    previous: BatchMarker | None = None
    for marker in markers:
        settled = committed is not None and committed >= 0 and marker.end < committed
        if not settled:
            report.in_flight += 1
        if previous is not None:
            if marker.base > previous.end + 1:
                report.gaps.append((previous.end + 1, marker.base - 1))
            elif marker.base <= previous.end:
                report.overlaps.append((marker.base, min(previous.end, marker.end)))
        if settled:
            report.missing_files.extend(f.path for f in marker.files if f.path not in files)
            report.rows += sum(f.rows for f in marker.files)
            report.dead_letters += marker.dead_letters
            if report.ranges and report.ranges[-1][1] + 1 >= marker.base:
                report.ranges[-1] = (report.ranges[-1][0], max(report.ranges[-1][1], marker.end))
            else:
                report.ranges.append((marker.base, marker.end))
        previous = marker if previous is None or marker.end > previous.end else previous
    if committed is not None and committed >= 0 and markers:
        landed_to = max((m.end for m in markers if m.end < committed), default=None)
        first_base = markers[0].base
        if landed_to is not None and committed > landed_to + 1:
            report.gaps.append((landed_to + 1, committed - 1))  # committed, but never landed
        elif landed_to is None and committed > first_base:
            report.gaps.append((first_base, committed - 1))
    return report


def deep_check(store: LakeStore, fmt: str, reports: dict[int, PartitionReport], markers: list[BatchMarker]) -> None:
    """Read `_partition, _offset` of every data file a settled batch names; count duplicate rows."""
    import gzip

    import pyarrow.parquet as pq

    settled = [m for m in markers if reports[m.partition].committed is not None and m.end < reports[m.partition].committed]
    paths = [f.path for m in settled for f in m.files if f.path not in reports[m.partition].missing_files]
    seen: dict[int, set[int]] = {}
    for path, data in store.read_many(paths).items():
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data), columns=["_partition", "_offset"])
            pairs = zip(table.column("_partition").to_pylist(), table.column("_offset").to_pylist())
        else:
            text = gzip.decompress(data) if path.endswith(".gz") else data
            pairs = ((row["_partition"], row["_offset"]) for row in map(json.loads, text.splitlines()))
        for partition, offset in pairs:
            offsets = seen.setdefault(partition, set())
            if offset in offsets:
                reports[partition].duplicate_rows += 1
            offsets.add(offset)


def kafka_positions(settings, partitions: list[int] | None) -> dict[int, tuple[int, int, int]]:
    """{partition: (committed, low, high)} from the group and the topic's watermarks."""
    from confluent_kafka import Consumer, TopicPartition

    from .kafka import consumer_config

    config = {k: v for k, v in consumer_config(settings).items() if k not in ("error_cb",)}
    consumer = Consumer(config)
    try:
        topic = consumer.list_topics(settings.topic, timeout=15).topics[settings.topic]
        numbers = sorted(topic.partitions) if partitions is None else partitions
        committed = consumer.committed([TopicPartition(settings.topic, p) for p in numbers], timeout=15)
        result = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic, tp.partition), timeout=15)
            result[tp.partition] = (tp.offset, low, high)
        return result
    finally:
        consumer.close()


def audit(settings, deep: bool = False, positions: dict[int, tuple[int, int, int]] | None = None) -> list[PartitionReport]:
    store = LakeStore.open(settings.output.url, settings.output.storage_options)
    markers = Ledger(store).all_markers(settings.topic)
    files = set(store.list_files())
    if positions is None:
        positions = kafka_positions(settings, None)
    partitions = sorted(set(positions) | {m.partition for m in markers})
    reports = {}
    for partition in partitions:
        committed, low, high = positions.get(partition, (None, None, None))
        report = check_chain(partition, [m for m in markers if m.partition == partition], files, committed)
        report.low, report.high = low, high
        reports[partition] = report
    if deep:
        deep_check(store, settings.output.format, reports, markers)
    return [reports[p] for p in partitions]


def command(args) -> int:
    try:
        settings = load_settings(args.config)
        reports = audit(settings, deep=args.deep)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except StorageError as error:
        print(f"ingest audit: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - Kafka unreachable etc.: one line, no traceback
        print(f"ingest audit: {type(error).__name__}: {error}. Fix: check kafka.bootstrap.servers in {args.config}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{**vars(r), "lag": r.lag} for r in reports], indent=1))
    else:
        print(render_table(settings.topic, reports))
    return 1 if any(r.problems for r in reports) else 0


def render_table(topic: str, reports: list[PartitionReport]) -> str:
    header = f"{'partition':>9} {'batches':>7} {'rows':>9} {'dead':>5} {'committed':>10} {'high':>10} {'lag':>8}  landed ranges / problems"
    lines = [f"topic {topic}", header]
    for r in reports:
        ranges = ", ".join(f"{a}..{b}" for a, b in r.ranges) or "-"
        problems = []
        problems += [f"GAP {a}..{b}" for a, b in r.gaps]
        problems += [f"OVERLAP {a}..{b}" for a, b in r.overlaps]
        problems += [f"MISSING {p}" for p in r.missing_files[:5]]
        if r.duplicate_rows:
            problems.append(f"DUPLICATE ROWS {r.duplicate_rows}")
        if r.in_flight:
            problems.append(f"({r.in_flight} batch(es) at or past the commit)")
        show = lambda v: "-" if v is None or v < 0 else str(v)  # noqa: E731
        lines.append(f"{r.partition:>9} {r.batches:>7} {r.rows:>9} {r.dead_letters:>5} {show(r.committed):>10} "
                     f"{show(r.high):>10} {show(r.lag):>8}  {ranges} {' '.join(problems)}".rstrip())
    total = sum(r.problems for r in reports)
    lines.append("OK: no gap, overlap or missing file" if not total else f"PROBLEMS: {total}")
    return "\n".join(lines)
