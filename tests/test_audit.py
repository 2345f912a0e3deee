from ingest_core.audit import check_chain, render_table
from ingest_core.ledger import BatchMarker, MarkedFile


def marker(base, end, partition=0, files=None):
    files = files if files is not None else [MarkedFile(f"f{base}.parquet", end - base + 1, base, end)]
    return BatchMarker("t", partition, base, end, end - base + 1, 0, tuple(files))


def test_a_clean_chain_reports_one_range_and_no_problem():
    markers = [marker(0, 9), marker(10, 19), marker(20, 24)]
    report = check_chain(0, markers, {"f0.parquet", "f10.parquet", "f20.parquet"}, committed=25)
    assert report.ranges == [(0, 24)] and report.rows == 25 and report.problems == 0 and report.in_flight == 0


def test_hole_in_the_chain_is_a_gap_and_overlap_is_reported():
    report = check_chain(0, [marker(0, 9), marker(15, 19), marker(18, 30)],
                         {"f0.parquet", "f15.parquet", "f18.parquet"}, committed=31)
    assert report.gaps == [(10, 14)] and report.overlaps == [(18, 19)]


def test_committed_beyond_what_landed_is_a_gap():
    report = check_chain(0, [marker(0, 9)], {"f0.parquet"}, committed=20)
    assert report.gaps == [(10, 19)]


def test_a_committed_batch_without_its_file_is_missing_but_one_in_flight_is_not():
    report = check_chain(0, [marker(0, 9), marker(10, 19)], set(), committed=10)
    assert report.missing_files == ["f0.parquet"] and report.in_flight == 1 and report.problems == 1


def test_table_names_problems():
    report = check_chain(0, [marker(0, 9)], set(), committed=10)
    text = render_table("t", [report])
    assert "MISSING f0.parquet" in text and "PROBLEMS: 1" in text
