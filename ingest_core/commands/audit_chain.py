"""The audit's pure part: the findings of one partition from its batch markers, the lake's
file listing, the group's committed offset and the topic's low watermark.

A partition's markers form a chain: each batch starts where the one before ended
(base = previous end + 1). Offsets below the commit that no batch covers are either a
hole in the chain (a finding), or lie before the first batch or after the last one: those
are findings when the topic still holds a record there (`holds` asks it), and "retention"
findings when they are below the low watermark (deleted from the topic, never in the lake).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ingest_core.sink.ledger import BatchMarker

# (partition, first, last) -> the offset of the first record the topic holds in [first, last], or None.
# An audit that cannot ask the topic passes `assume_records`: every range is taken as holding records.
HoldsRecords = Callable[[int, int, int], int | None]


def assume_records(partition: int, first: int, last: int) -> int | None:
    return first


# What each kind means is in docs/audit.md; every finding is a reason to exit 1.
GAP = "gap"  # a hole in the chain of batches: a marker is missing
BEFORE_FIRST = "before_first"  # the topic holds records before the first batch, and the commit is past them
AFTER_LAST = "after_last"  # the commit is past the last batch, and the topic holds records there
INSIDE_BATCH = "inside_batch"  # a batch's files start after its base, and the topic holds records there
RETENTION = "retention"  # offsets the topic no longer holds (retention) and the lake never had
OVERLAP = "overlap"  # two batches cover one offset
MISSING_FILE = "missing_file"  # a committed batch names a file the lake does not have
UNACCOUNTED_FILE = "unaccounted_file"  # a data file no marker names
UNREADABLE_MARKER = "unreadable_marker"  # a marker that is not a batch marker's JSON
UNREADABLE_FILE = "unreadable_file"  # --deep: a data file that cannot be read as its name says
ROW_COUNT = "row_count"  # --deep: a file's rows differ from its marker's count
ROW_OUTSIDE_BATCH = "row_outside_batch"  # --deep: rows whose partition/offset lie outside the file's marked range
DUPLICATE_ROW = "duplicate_row"  # --deep: a (partition, offset) found more than once in the lake

KINDS = (
    GAP,
    BEFORE_FIRST,
    AFTER_LAST,
    INSIDE_BATCH,
    RETENTION,
    OVERLAP,
    MISSING_FILE,
    UNACCOUNTED_FILE,
    UNREADABLE_MARKER,
    UNREADABLE_FILE,
    ROW_COUNT,
    ROW_OUTSIDE_BATCH,
    DUPLICATE_ROW,
)


@dataclass(frozen=True)
class Finding:
    kind: str
    partition: int | None = None
    first: int | None = None  # offset range, inclusive, when the finding is about offsets
    last: int | None = None
    path: str | None = None  # lake-relative path, when the finding is about a file
    count: int | None = None  # rows, when the finding counts rows
    detail: str = ""

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "partition": self.partition,
            "first": self.first,
            "last": self.last,
            "path": self.path,
            "count": self.count,
            "detail": self.detail,
        }

    def text(self) -> str:
        where = []
        if self.partition is not None:
            where.append(f"partition {self.partition}")
        if self.first is not None:
            where.append(f"offsets {self.first}..{self.last}")
        if self.path is not None:
            where.append(self.path)
        if self.count is not None:
            where.append(f"{self.count} row(s)")
        return f"{self.kind.upper()} {', '.join(where)}" + (f": {self.detail}" if self.detail else "")


@dataclass
class PartitionReport:
    partition: int
    batches: int = 0
    in_flight: int = 0  # batches at or past the committed offset (published or not yet): not findings
    ranges: list[tuple[int, int]] = field(default_factory=list)  # merged [first, last] ranges of committed batches
    rows: int = 0  # rows the committed batches' markers count
    dead_letters: int = 0
    committed: int | None = None
    low: int | None = None
    high: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        if self.high is None:
            return None
        start = self.committed if self.committed is not None and self.committed >= 0 else self.low
        return None if start is None else max(0, self.high - start)

    @property
    def problems(self) -> int:
        return len(self.findings)

    def as_json(self) -> dict:
        return {
            "partition": self.partition,
            "batches": self.batches,
            "in_flight": self.in_flight,
            "ranges": [list(r) for r in self.ranges],
            "rows": self.rows,
            "dead_letters": self.dead_letters,
            "committed": _offset(self.committed),
            "low": _offset(self.low),
            "high": _offset(self.high),
            "lag": self.lag,
            "findings": len(self.findings),
        }


def _offset(value: int | None) -> int | None:
    """Kafka's 'no offset' (-1001) as null."""
    return value if value is not None and value >= 0 else None


def check_chain(
    partition: int,
    markers: list[BatchMarker],
    files: set[str],
    committed: int | None,
    low: int | None = None,
    holds: HoldsRecords = assume_records,
) -> PartitionReport:
    """The report of one partition. `files`: the lake's file listing (relative paths)."""
    report = PartitionReport(partition, committed=committed, low=low)
    commit = _offset(committed)
    low = _offset(low)
    markers = sorted(markers, key=lambda m: (m.base, m.end))
    report.batches = len(markers)
    findings = report.findings

    def not_landed(first: int, last: int, kind: str, detail: str) -> None:
        """[first, last] is below the commit and in no file: split it at the low watermark."""
        if low is not None and first < low:
            findings.append(
                Finding(
                    RETENTION,
                    partition,
                    first,
                    min(last, low - 1),
                    detail=(
                        f"{detail}; the topic no longer holds these offsets (low watermark {low}): deleted by retention "
                        "before they landed, unless no record ever had them (compaction, transaction markers)"
                    ),
                )
            )
            first = low
        if first <= last:
            found = holds(partition, first, last)
            if found is not None and found <= last:
                findings.append(
                    Finding(kind, partition, found, last, detail=f"{detail}; the topic holds these records")
                )

    reach = None  # the highest end of the batches so far
    for marker in markers:
        settled = commit is not None and marker.end < commit
        if not settled:
            report.in_flight += 1
        if reach is not None:
            if marker.base > reach + 1:
                findings.append(
                    Finding(
                        GAP,
                        partition,
                        reach + 1,
                        marker.base - 1,
                        detail="no batch covers these offsets (a marker is missing)",
                    )
                )
            elif marker.base <= reach:
                findings.append(
                    Finding(
                        OVERLAP,
                        partition,
                        marker.base,
                        min(reach, marker.end),
                        detail="two batches cover these offsets",
                    )
                )
        if settled:
            for f in marker.files:
                if f.path not in files:
                    findings.append(
                        Finding(
                            MISSING_FILE,
                            partition,
                            f.first_offset,
                            f.last_offset,
                            path=f.path,
                            count=f.rows,
                            detail=f"committed batch {marker.base}..{marker.end} names it",
                        )
                    )
            report.rows += sum(f.rows for f in marker.files)
            report.dead_letters += marker.dead_letters
            if report.ranges and report.ranges[-1][1] + 1 >= marker.base:
                report.ranges[-1] = (report.ranges[-1][0], max(report.ranges[-1][1], marker.end))
            else:
                report.ranges.append((marker.base, marker.end))
            first_row = _first_row_when_every_record_landed(marker)
            if first_row is not None and first_row > marker.base:
                # The batch follows the commit at `base`, but its first record is later: what lay
                # between was skipped (the commit fell below the low watermark, say).
                not_landed(
                    marker.base, first_row - 1, INSIDE_BATCH, f"batch {marker.base}..{marker.end} starts at {first_row}"
                )
        reach = marker.end if reach is None else max(reach, marker.end)

    if commit is None:
        return report
    if not markers:
        if commit > 0:
            not_landed(0, commit - 1, BEFORE_FIRST, f"committed up to {commit}, but no batch marker exists")
        return report
    first_base = markers[0].base
    if first_base > 0 and commit >= first_base:
        not_landed(0, first_base - 1, BEFORE_FIRST, f"before the first batch (at {first_base})")
    landed_to = max((m.end for m in markers if m.end < commit), default=None)
    if landed_to is None:
        if commit > first_base:
            findings.append(
                Finding(
                    AFTER_LAST,
                    partition,
                    first_base,
                    commit - 1,
                    detail=f"committed at {commit}, inside batch {first_base}..{markers[0].end}",
                )
            )
    elif commit > landed_to + 1:
        not_landed(landed_to + 1, commit - 1, AFTER_LAST, f"committed at {commit}, past the last batch")
    return report


def _first_row_when_every_record_landed(marker: BatchMarker) -> int | None:
    """The first offset in the batch's files when every record of the batch is in them (no dead
    letter, nothing skipped), else None: only then does a later first row mean a skipped record."""
    if not marker.files or marker.dead_letters or sum(f.rows for f in marker.files) != marker.records:
        return None
    return min(f.first_offset for f in marker.files)
