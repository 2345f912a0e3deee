"""The audit's logic without servers: the chain of markers, reading rows back from every
format and compression, and the lake-level checks on a lake built in a temporary folder."""
from __future__ import annotations

import gzip
import json
import types

import pyarrow as pa
import pytest

from ingest_core.commands.audit import audit, is_data_path, render_table
from ingest_core.commands.audit_chain import (
    AFTER_LAST,
    BEFORE_FIRST,
    DUPLICATE_ROW,
    GAP,
    INSIDE_BATCH,
    MISSING_FILE,
    OVERLAP,
    RETENTION,
    ROW_COUNT,
    ROW_OUTSIDE_BATCH,
    UNACCOUNTED_FILE,
    UNREADABLE_FILE,
    UNREADABLE_MARKER,
    check_chain,
)
from ingest_core.commands.audit_rows import UnreadableFile, read_rows
from ingest_core.settings import COMPRESSIONS
from ingest_core.sink.formats import Rows, data_bytes, encoder_for
from ingest_core.sink.ledger import BatchMarker, MarkedFile, marker_path


def marker(base, end, partition=0, files=None, dead_letters=0, records=None):
    files = files if files is not None else [MarkedFile(f"f{base}.parquet", end - base + 1, base, end)]
    return BatchMarker("t", partition, base, end, records if records is not None else end - base + 1,
                       dead_letters, tuple(files))


def kinds(report):
    return [(f.kind, f.first, f.last) for f in report.findings]


def no_records(partition, first, last):
    return None


# --- the chain -------------------------------------------------------------------------------

def test_a_clean_chain_reports_one_range_and_no_finding():
    markers = [marker(0, 9), marker(10, 19), marker(20, 24)]
    report = check_chain(0, markers, {"f0.parquet", "f10.parquet", "f20.parquet"}, committed=25, low=0)
    assert report.ranges == [(0, 24)] and report.rows == 25 and report.findings == [] and report.in_flight == 0


def test_hole_between_batches_is_a_gap_and_overlap_is_reported():
    report = check_chain(0, [marker(0, 9), marker(15, 19), marker(18, 30)],
                         {"f0.parquet", "f15.parquet", "f18.parquet"}, committed=31, low=0)
    assert kinds(report) == [(GAP, 10, 14), (OVERLAP, 18, 19)]


def test_committed_beyond_the_last_batch_is_a_hole_when_the_topic_holds_records_there():
    report = check_chain(0, [marker(0, 9)], {"f0.parquet"}, committed=20, low=0)
    assert kinds(report) == [(AFTER_LAST, 10, 19)]
    # No record there (transaction markers, compaction): offsets are not contiguous, nothing lost.
    assert check_chain(0, [marker(0, 9)], {"f0.parquet"}, committed=20, low=0, holds=no_records).findings == []


def test_records_before_the_first_batch_are_a_hole_when_the_commit_is_past_them():
    report = check_chain(0, [marker(100, 109, files=[MarkedFile("a", 10, 100, 109)])], {"a"}, committed=110, low=0,
                         holds=lambda p, a, b: 40)
    assert kinds(report) == [(BEFORE_FIRST, 40, 99)]


def test_a_partition_committed_with_no_marker_at_all_is_a_hole():
    report = check_chain(0, [], set(), committed=50, low=0)
    assert kinds(report) == [(BEFORE_FIRST, 0, 49)]


def test_offsets_below_the_low_watermark_that_never_landed_are_retention():
    # The group started after retention had deleted 0..99: the lake begins at the low watermark.
    report = check_chain(0, [marker(100, 109, files=[MarkedFile("a", 10, 100, 109)])], {"a"}, committed=110, low=100)
    assert kinds(report) == [(RETENTION, 0, 99)]
    # A lake that landed everything before retention deleted it from the topic is clean.
    assert check_chain(0, [marker(0, 9)], {"f0.parquet"}, committed=10, low=10).findings == []


def test_a_batch_whose_records_start_after_its_base_lost_them_to_retention():
    # Committed 10, the topic's records 10..49 deleted while the group was away: the next batch
    # follows the commit (base 10) but its first record is 50.
    report = check_chain(0, [marker(0, 9), marker(10, 59, files=[MarkedFile("b", 10, 50, 59)], records=10)],
                         {"f0.parquet", "b"}, committed=60, low=50)
    assert kinds(report) == [(RETENTION, 10, 49)]
    # Still in the topic: the records were skipped.
    report = check_chain(0, [marker(0, 9), marker(10, 59, files=[MarkedFile("b", 10, 50, 59)], records=10)],
                         {"f0.parquet", "b"}, committed=60, low=0)
    assert kinds(report) == [(INSIDE_BATCH, 10, 49)]
    # Dead letters explain a late first row: not a finding.
    late = marker(10, 59, files=[MarkedFile("b", 10, 50, 59)], records=50, dead_letters=40)
    assert check_chain(0, [marker(0, 9), late], {"f0.parquet", "b"}, committed=60, low=0).findings == []


def test_a_committed_batch_without_its_file_is_missing_but_one_in_flight_is_not():
    report = check_chain(0, [marker(0, 9), marker(10, 19)], set(), committed=10, low=0)
    assert [(f.kind, f.path) for f in report.findings] == [(MISSING_FILE, "f0.parquet")] and report.in_flight == 1


def test_no_commit_means_everything_is_in_flight_and_nothing_is_judged():
    report = check_chain(0, [marker(5, 9)], set(), committed=-1001, low=0)
    assert report.findings == [] and report.in_flight == 1


# --- reading rows back ------------------------------------------------------------------------

def encoded_file(fmt: str, codec: str, offsets: list[int], partition: int = 3) -> tuple[str, bytes]:
    n = len(offsets)
    metadata = pa.table({
        "_topic": pa.array(["t"] * n), "_partition": pa.array([partition] * n, pa.int32()),
        "_offset": pa.array(offsets, pa.int64()),
        "_timestamp": pa.array([1_700_000_000_000_000 + 1000 * i for i in range(n)], pa.timestamp("us", tz="UTC")),
        "_key": pa.array([f"k{i}" for i in range(n)]),
    })
    payload = pa.table({"order_id": pa.array(range(n), pa.int64()), "note": pa.array(["é ü"] * n)})
    encoder = encoder_for(fmt, codec)
    data = data_bytes(encoder.encode(Rows(payload, metadata, None)))
    return f"dt=x/t+{partition}+{offsets[0]:020d}{encoder.extension}", data


@pytest.mark.parametrize("fmt,codec", [(f, c) for f, codecs in COMPRESSIONS.items() for c in codecs])
def test_every_format_and_compression_is_read_back(fmt, codec):
    path, data = encoded_file(fmt, codec, list(range(100, 3100)))
    rows = read_rows(path, data)
    assert rows.rows == 3000
    assert rows.offsets.to_pylist() == list(range(100, 3100)) and set(rows.partitions.to_pylist()) == {3}


@pytest.mark.parametrize("fmt,codec", [(f, c) for f, codecs in COMPRESSIONS.items() for c in codecs])
def test_a_truncated_file_of_every_format_is_unreadable_not_a_crash(fmt, codec):
    path, data = encoded_file(fmt, codec, list(range(3000)))
    with pytest.raises(UnreadableFile):
        read_rows(path, data[: len(data) * 2 // 3 + 1])


@pytest.mark.parametrize("name,data", [
    ("a.parquet", b'{"_partition":0,"_offset":1}\n'),  # another format under a Parquet name
    ("a.ndjson", b"PAR1\x00\x01\xff\xfe garbage"),  # binary under an NDJSON name
    ("a.ndjson.gz", b'{"_partition":0}\n'),  # not gzip
    ("a.ndjson.zst", gzip.compress(b'{"_partition":0}\n')),  # gzip, not zstd
    ("a.csv", b"x,y\n"),  # a name this lake never writes
])
def test_a_file_not_in_the_format_its_name_says_is_unreadable(name, data):
    with pytest.raises(UnreadableFile):
        read_rows(name, data)


# --- the lake ---------------------------------------------------------------------------------

def test_hidden_and_internal_names_are_not_data_like_spark_says():
    assert is_data_path("dt=1/t+0+1.parquet") and is_data_path("_partition=3/x.parquet")
    assert not is_data_path("_ingest/batches/t/0/1.json") and not is_data_path("dt=1/.t+0+1.parquet.tmp")


def local_lake(tmp_path, fmt="parquet", codec="zstd"):
    """A lake of two batches per partition (0 and 1), 10 rows each, as `ingest run` lands it."""
    root = tmp_path / "lake"
    for partition in (0, 1):
        for base in (0, 10):
            path, data = encoded_file(fmt, codec, list(range(base, base + 10)), partition)
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
            m = BatchMarker("t", partition, base, base + 9, 10, 0, (MarkedFile(path, 10, base, base + 9),))
            (root / marker_path("t", partition, base)).parent.mkdir(parents=True, exist_ok=True)
            (root / marker_path("t", partition, base)).write_bytes(m.to_json())
    settings = types.SimpleNamespace(topic="t", output=types.SimpleNamespace(url=f"file://{root}", storage_options={}))
    return root, settings


POSITIONS = {0: (20, 0, 20), 1: (20, 0, 20)}


def found(report):
    return sorted((f.kind, f.partition, f.path and f.path.rsplit("/", 1)[-1]) for f in report.all_findings)


@pytest.mark.parametrize("fmt,codec", [(f, c) for f, codecs in COMPRESSIONS.items() for c in codecs])
def test_a_clean_lake_of_every_format_and_compression_passes_deep(tmp_path, fmt, codec):
    _, settings = local_lake(tmp_path, fmt, codec)
    report = audit(settings, deep=True, positions=POSITIONS)
    assert report.all_findings == [] and report.rows_read == 40 and report.exit_code == 0


def test_a_copied_file_is_unaccounted_and_its_rows_are_duplicates(tmp_path):
    root, settings = local_lake(tmp_path)
    original = next(root.glob("dt=x/t+1+*10.parquet"))
    (original.parent / "copy.parquet").write_bytes(original.read_bytes())
    assert found(audit(settings, positions=POSITIONS)) == [(UNACCOUNTED_FILE, None, "copy.parquet")]
    report = audit(settings, deep=True, positions=POSITIONS)
    assert found(report) == [(DUPLICATE_ROW, 1, None), (UNACCOUNTED_FILE, None, "copy.parquet")]
    duplicate = [f for f in report.all_findings if f.kind == DUPLICATE_ROW][0]
    assert (duplicate.first, duplicate.last, duplicate.count) == (10, 19, 10) and report.exit_code == 1


def test_a_truncated_file_is_an_unreadable_finding_with_its_path(tmp_path):
    root, settings = local_lake(tmp_path, "ndjson", "zstd")
    victim = next(root.glob("dt=x/t+0+*0.ndjson.zst"))
    victim.write_bytes(victim.read_bytes()[:20])
    report = audit(settings, deep=True, positions=POSITIONS)
    assert found(report) == [(UNREADABLE_FILE, 0, victim.name)] and report.exit_code == 1


def test_rows_against_the_marker_count_and_range(tmp_path):
    root, settings = local_lake(tmp_path, "ndjson", "none")
    victim = next(root.glob("dt=x/t+0+*10.ndjson"))
    lines = victim.read_bytes().splitlines(keepends=True)
    victim.write_bytes(b"".join(lines[:5]))  # cut at a line end: readable, five rows short
    other = next(root.glob("dt=x/t+1+*00.ndjson"))
    other.write_bytes(other.read_bytes().replace(b'"_offset":3,', b'"_offset":33,'))
    assert found(audit(settings, deep=True, positions=POSITIONS)) == [
        (ROW_COUNT, 0, victim.name), (ROW_OUTSIDE_BATCH, 1, other.name)]


def test_a_marker_that_is_not_json_is_a_finding_and_its_files_unaccounted(tmp_path):
    root, settings = local_lake(tmp_path)
    (root / marker_path("t", 0, 10)).write_bytes(b'{"topic": "t", "partit')
    report = audit(settings, positions=POSITIONS)
    assert found(report) == [(AFTER_LAST, 0, None), (UNACCOUNTED_FILE, None, "t+0+00000000000000000010.parquet"),
                             (UNREADABLE_MARKER, None, "00000000000000000010.json")]


def test_table_lists_findings_and_json_is_serialisable(tmp_path):
    root, settings = local_lake(tmp_path)
    (root / marker_path("t", 1, 0)).unlink()
    report = audit(settings, positions=POSITIONS)
    text = render_table(report)
    assert "BEFORE_FIRST partition 1, offsets 0..9" in text and "PROBLEMS: 2" in text
    body = json.loads(json.dumps(report.as_json()))
    assert body["ok"] is False and body["exit_code"] == 1 and {f["kind"] for f in body["findings"]} == {
        BEFORE_FIRST, UNACCOUNTED_FILE}
