"""`ingest audit CONFIG`: does the lake hold every record of the topic exactly once?

Reads the batch markers and the file listing of the lake, the group's committed offsets and
the topic's watermarks, and reports per partition the landed offset ranges, the lag and the
findings (audit_chain.py): holes between batches, before the first and after the last batch,
offsets deleted by retention before they landed, overlaps, files a committed batch names
that are missing, data files no marker names. `--deep` also reads every row of every data
file (audit_rows.py): unreadable files, rows per file against the marker, rows outside their
batch, and any (partition, offset) found twice anywhere in the lake.

Exit 0 clean, 1 findings, 2 the audit cannot run (config, storage or broker). docs/audit.md
describes the findings and the `--json` report.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.commands.audit_chain import (
    DUPLICATE_ROW,
    ROW_COUNT,
    ROW_OUTSIDE_BATCH,
    UNACCOUNTED_FILE,
    UNREADABLE_FILE,
    UNREADABLE_MARKER,
    Finding,
    HoldsRecords,
    PartitionReport,
    assume_records,
    check_chain,
)
from ingest_core.commands.audit_rows import UnreadableFile, read_rows
from ingest_core.config import ConfigError, load_settings
from ingest_core.sink.ledger import MARKER_ROOT, BatchMarker, MarkedFile
from ingest_core.sink.storage import LakeStore, StorageError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_CANNOT_RUN = 0, 1, 2
READ_AT_ONCE = 16  # files fetched together (concurrent GETs on object stores)
PROGRESS_EVERY = 2.0  # seconds between --deep progress lines on stderr


def add_arguments(parser) -> None:
    parser.add_argument("config", type=Path)
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also read every row of every data file: unreadable files, row counts, duplicates",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (schema: docs/audit.md)")


@dataclass
class AuditReport:
    topic: str
    deep: bool
    partitions: list[PartitionReport]
    findings: list[Finding] = field(default_factory=list)  # not tied to one partition's chain (files, rows)
    data_files: int = 0
    marker_files: int = 0
    rows_read: int | None = None  # --deep: rows read from the data files

    @property
    def all_findings(self) -> list[Finding]:
        return [f for p in self.partitions for f in p.findings] + self.findings

    @property
    def exit_code(self) -> int:
        return EXIT_FINDINGS if self.all_findings else EXIT_CLEAN

    def as_json(self) -> dict:
        return {
            "topic": self.topic,
            "deep": self.deep,
            "ok": not self.all_findings,
            "exit_code": self.exit_code,
            "data_files": self.data_files,
            "marker_files": self.marker_files,
            "rows_read": self.rows_read,
            "partitions": [p.as_json() for p in self.partitions],
            "findings": [f.as_json() for f in self.all_findings],
        }


def is_data_path(path: str) -> bool:
    """What Spark's file source reads: no part starting with `.`, nor with `_` unless it holds `=`."""
    return not any(part.startswith(".") or (part.startswith("_") and "=" not in part) for part in path.split("/"))


def load_markers(store: LakeStore, topic: str, paths: list[str]) -> tuple[list[BatchMarker], list[Finding]]:
    """The markers at `paths` (under _ingest/batches/{topic}/); one that cannot be parsed is a finding."""
    markers, findings = [], []
    for start in range(0, len(paths), 1024):
        for path, data in _read_chunk(store, paths[start : start + 1024]):
            try:
                body = json.loads(data)
                body["files"] = tuple(MarkedFile(**f) for f in body["files"])
                marker = BatchMarker(**body)
                if marker.topic != topic:
                    raise ValueError(f"it is a marker of topic {marker.topic!r}")
                markers.append(marker)
            except (ValueError, TypeError, KeyError) as error:
                findings.append(Finding(UNREADABLE_MARKER, path=path, detail=f"{type(error).__name__}: {error}"[:300]))
    return markers, findings


def _read_chunk(store: LakeStore, paths: list[str]):
    if store.is_local:  # plain reads: fsspec's per-file overhead is most of the time on local disk
        for path in paths:
            with open(store.full_path(path), "rb") as handle:
                yield path, handle.read()
    else:
        yield from store.read_many(paths).items()


def audit(
    settings,
    deep: bool = False,
    positions: dict[int, tuple[int, int, int]] | None = None,
    holds: HoldsRecords = assume_records,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """The audit of the lake against `positions` ({partition: (committed, low, high)}, from the topic)."""
    store = LakeStore.open(settings.output.url, settings.output.storage_options)
    listing = store.list_files()
    marker_prefix = f"{MARKER_ROOT}/{settings.topic}/"
    marker_paths = [p for p in listing if p.startswith(marker_prefix) and p.endswith(".json")]
    data_paths = [p for p in listing if is_data_path(p)]
    markers, findings = load_markers(store, settings.topic, marker_paths)
    by_partition: dict[int, list[BatchMarker]] = {}
    for marker in markers:
        by_partition.setdefault(marker.partition, []).append(marker)
    positions = positions or {}
    files = set(data_paths)
    reports = []
    for partition in sorted(set(positions) | set(by_partition)):
        committed, low, high = positions.get(partition, (None, None, None))
        report = check_chain(partition, by_partition.get(partition, []), files, committed, low, holds)
        report.high = high
        reports.append(report)
    named = {f.path: (m.partition, f) for m in markers for f in m.files}
    findings += [
        Finding(UNACCOUNTED_FILE, path=p, detail="no batch marker names this file")
        for p in data_paths
        if p not in named
    ]
    result = AuditReport(settings.topic, deep, reports, findings, len(data_paths), len(marker_paths))
    if deep:
        result.rows_read = deep_check(store, data_paths, named, result.findings, progress)
    return result


def deep_check(
    store: LakeStore,
    paths: list[str],
    named: dict[str, tuple[int, MarkedFile]],
    findings: list[Finding],
    progress: Callable[[str], None] | None = None,
) -> int:
    """Read every row of every file in `paths`, one chunk of files at a time; append findings; return rows read."""
    offsets_by_partition: dict[int, list[pa.Array]] = {}
    rows_read = 0
    last_report = time.monotonic()
    for start in range(0, len(paths), READ_AT_ONCE):
        chunk = paths[start : start + READ_AT_ONCE]
        for path, data in _read_chunk(store, chunk):
            try:
                rows = read_rows(path, data)
            except UnreadableFile as error:
                findings.append(
                    Finding(UNREADABLE_FILE, named[path][0] if path in named else None, path=path, detail=str(error))
                )
                continue
            rows_read += rows.rows
            check_file_rows(path, rows, named.get(path), findings)
            if rows.partitions is not None:
                for partition in pc.unique(rows.partitions).to_pylist():
                    mask = pc.equal(rows.partitions, partition)
                    offsets_by_partition.setdefault(partition, []).append(pc.filter(rows.offsets, mask))
        if progress is not None and (
            time.monotonic() - last_report > PROGRESS_EVERY or start + READ_AT_ONCE >= len(paths)
        ):
            last_report = time.monotonic()
            progress(f"audit --deep: {min(start + READ_AT_ONCE, len(paths))}/{len(paths)} files, {rows_read} rows read")
    for partition in sorted(offsets_by_partition):
        counts = pc.value_counts(pa.chunked_array(offsets_by_partition[partition], pa.int64()))
        twice = counts.filter(pc.greater(counts.field("counts"), 1))
        if len(twice):
            offsets = twice.field("values")
            extra = pc.sum(pc.subtract(twice.field("counts"), 1)).as_py()
            findings.append(
                Finding(
                    DUPLICATE_ROW,
                    partition,
                    pc.min(offsets).as_py(),
                    pc.max(offsets).as_py(),
                    count=extra,
                    detail=f"{len(twice)} offset(s) found more than once, "
                    f"{extra} extra row(s); e.g. {sorted(offsets.to_pylist())[:5]}",
                )
            )
    return rows_read


def check_file_rows(path: str, rows, marked: tuple[int, MarkedFile] | None, findings: list[Finding]) -> None:
    """A file's rows against the marker that names it: its row count and the offset range it says."""
    if marked is None:
        return
    partition, entry = marked
    if rows.rows != entry.rows:
        findings.append(
            Finding(
                ROW_COUNT,
                partition,
                entry.first_offset,
                entry.last_offset,
                path=path,
                count=rows.rows,
                detail=f"the marker says {entry.rows} row(s), the file has {rows.rows}",
            )
        )
    if rows.partitions is None:
        return  # metadata: false: only the row count can be checked
    outside = pc.or_(
        pc.not_equal(rows.partitions, partition),
        pc.or_(pc.less(rows.offsets, entry.first_offset), pc.greater(rows.offsets, entry.last_offset)),
    )
    count = pc.sum(pc.cast(outside, pa.int64())).as_py() or 0
    if count:
        findings.append(
            Finding(
                ROW_OUTSIDE_BATCH,
                partition,
                entry.first_offset,
                entry.last_offset,
                path=path,
                count=count,
                detail="rows whose partition or offset lie outside the file's marked range",
            )
        )


def audit_against_topic(
    settings, config_path, deep: bool = False, progress: Callable[[str], None] | None = None
) -> AuditReport:
    """The audit with the group's commits and the topic's watermarks read from the broker."""
    from ingest_core.commands.audit_topic import TopicView

    with TopicView(settings, config_path) as view:
        return audit(settings, deep, view.positions(), view.first_record, progress)


def command(args) -> int:
    from ingest_core.commands.audit_topic import TopicUnavailable

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        report = audit_against_topic(
            settings, args.config, args.deep, progress=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except TopicUnavailable as error:
        print(f"ingest audit: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except StorageError as error:
        print(f"ingest audit: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except Exception as error:  # noqa: BLE001 - e.g. a librdkafka property it refuses: one line, no traceback
        print(
            f"ingest audit: {type(error).__name__}: {error}. Fix: check the kafka and output sections of {args.config}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    if args.json:
        print(json.dumps(report.as_json(), indent=1))
    else:
        print(render_table(report))
    return report.exit_code


def render_table(report: AuditReport) -> str:
    header = f"{'partition':>9} {'batches':>7} {'rows':>9} {'dead':>5} {'committed':>10} {'high':>10} {'lag':>8}  landed ranges"
    lines = [
        f"topic {report.topic}: {report.data_files} data file(s), {report.marker_files} marker(s)"
        + (f", {report.rows_read} row(s) read" if report.rows_read is not None else ""),
        header,
    ]

    def show(v: int | None) -> str:
        return "-" if v is None or v < 0 else str(v)

    for r in report.partitions:
        ranges = ", ".join(f"{a}..{b}" for a, b in r.ranges) or "-"
        flight = f" ({r.in_flight} batch(es) at or past the commit)" if r.in_flight else ""
        lines.append(
            f"{r.partition:>9} {r.batches:>7} {r.rows:>9} {r.dead_letters:>5} {show(r.committed):>10} "
            f"{show(r.high):>10} {show(r.lag):>8}  {ranges}{flight}"
        )
    found = report.all_findings
    shown = found[:50]
    lines += [f"  {f.text()}" for f in shown]
    if len(found) > len(shown):
        lines.append(f"  ... and {len(found) - len(shown)} more (--json lists them all)")
    lines.append(
        "OK: every committed offset is in the lake once, every file is accounted for"
        if not found
        else f"PROBLEMS: {len(found)}"
    )
    return "\n".join(lines)
