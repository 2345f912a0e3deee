"""`python -m ingest_core audit CONFIG --json` on real lakes landed by `ingest run` from the real
broker, then damaged the way an incident (or an operator) damages them: each damage must be
found, by kind and path, with exit 1; a clean lake exits 0; an audit that cannot run exits 2.

One lake is landed per module; each test audits its own copy of it (same topic, same group)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from ingest_core.sink.ledger import MARKER_ROOT
from ingest_core.sink.storage import LakeStore

from .lake import REPO, create_topic, data_files, produce_events, run_until_idle, write_config

pytestmark = pytest.mark.slow

MESSAGES = 3000
PARTITIONS = 3


def audit_cli(config: Path, *flags: str) -> tuple[int, dict | None, str]:
    done = subprocess.run([sys.executable, "-m", "ingest_core", "audit", str(config), "--json", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    # A Kafka client left open aborts in librdkafka's destructor at exit (SIGABRT, -6) and says so.
    assert done.returncode in (0, 1, 2), (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "Assertion" not in done.stderr, done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def kinds(report: dict) -> list[tuple[str, int | None, str | None]]:
    return sorted((f["kind"], f["partition"], f["path"]) for f in report["findings"])


def set_compression(config: Path, codec: str) -> None:
    text = config.read_text()
    config.write_text(text.replace("  format: ", f"  compression: {codec}\n  format: ", 1))


@pytest.fixture(scope="module")
def landed(kafka, tmp_path_factory):
    """A parquet lake of MESSAGES records over PARTITIONS partitions, 200 rows a batch."""
    folder = tmp_path_factory.mktemp("landed")
    topic = f"audit-{folder.name}"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    produce_events(kafka.bootstrap, topic, MESSAGES, PARTITIONS)
    config = write_config(folder, topic, kafka.bootstrap, f"file://{folder / 'lake'}", batch={"max_records": 200})
    done = run_until_idle(config, idle="2s")
    assert done.returncode == 0, done.stderr[-3000:]
    return {"topic": topic, "lake": folder / "lake", "bootstrap": kafka.bootstrap}


@pytest.fixture
def copy(landed, tmp_path):
    """(config, lake folder): a copy of the landed lake, audited with the same topic and group."""
    lake = tmp_path / "lake"
    shutil.copytree(landed["lake"], lake)
    config = write_config(tmp_path, landed["topic"], landed["bootstrap"], f"file://{lake}")
    return config, lake


def files_of(lake: Path, partition: int) -> list[Path]:
    return sorted((lake / p for p in data_files(LakeStore.open(f"file://{lake}")) if f"+{partition}+" in p),
                  key=lambda p: p.name)


def markers_of(lake: Path, topic: str, partition: int) -> list[Path]:
    return sorted((lake / MARKER_ROOT / topic / str(partition)).glob("*.json"))


def test_a_clean_lake_exits_0_and_deep_reads_every_row(copy):
    config, _ = copy
    code, report, err = audit_cli(config, "--deep")
    assert code == 0 and report["ok"] and report["findings"] == [], report
    assert report["rows_read"] == MESSAGES and sum(p["rows"] for p in report["partitions"]) == MESSAGES
    assert all(p["lag"] == 0 and p["in_flight"] == 0 for p in report["partitions"])
    assert f"{report['data_files']}/{report['data_files']} files, {MESSAGES} rows read" in err  # progress on stderr


def test_a_deleted_file_is_missing(copy):
    config, lake = copy
    victim = files_of(lake, 1)[2]
    victim.unlink()
    code, report, _ = audit_cli(config)
    assert code == 1 and kinds(report) == [("missing_file", 1, str(victim.relative_to(lake)))]


def test_a_file_copied_under_a_new_name_is_unaccounted_and_its_rows_duplicates(copy):
    config, lake = copy
    original = files_of(lake, 2)[0]
    stray = original.with_name("copy-" + original.name)
    shutil.copy(original, stray)
    code, report, _ = audit_cli(config)
    assert code == 1 and kinds(report) == [("unaccounted_file", None, str(stray.relative_to(lake)))]
    code, report, _ = audit_cli(config, "--deep")
    assert code == 1 and kinds(report) == [("duplicate_row", 2, None), ("unaccounted_file", None, str(stray.relative_to(lake)))]
    duplicate = [f for f in report["findings"] if f["kind"] == "duplicate_row"][0]
    assert duplicate["count"] == 200


def test_a_truncated_file_is_unreadable_with_its_path(copy):
    config, lake = copy
    victim = files_of(lake, 0)[1]
    victim.write_bytes(victim.read_bytes()[:300])
    code, report, _ = audit_cli(config, "--deep")
    assert code == 1 and kinds(report) == [("unreadable_file", 0, str(victim.relative_to(lake)))]


def test_a_deleted_marker_in_the_middle_is_a_gap(copy, landed):
    config, lake = copy
    markers_of(lake, landed["topic"], 0)[2].unlink()
    code, report, _ = audit_cli(config)
    found = kinds(report)
    assert code == 1 and [k for k in found if k[0] != "unaccounted_file"] == [("gap", 0, None)]
    gap = [f for f in report["findings"] if f["kind"] == "gap"][0]
    assert (gap["first"], gap["last"]) == (400, 599)
    assert [k[2] for k in found if k[0] == "unaccounted_file"] == [str(files_of(lake, 0)[2].relative_to(lake))]


def test_a_deleted_first_marker_is_a_hole_before_the_first_batch(copy, landed):
    config, lake = copy
    markers_of(lake, landed["topic"], 1)[0].unlink()
    code, report, _ = audit_cli(config)
    holes = [(f["kind"], f["partition"], f["first"], f["last"]) for f in report["findings"] if f["kind"] != "unaccounted_file"]
    assert code == 1 and holes == [("before_first", 1, 0, 199)]


def test_a_deleted_last_marker_is_a_hole_after_the_last_batch(copy, landed):
    config, lake = copy
    markers_of(lake, landed["topic"], 2)[-1].unlink()
    code, report, _ = audit_cli(config)
    holes = [(f["kind"], f["partition"], f["first"], f["last"]) for f in report["findings"] if f["kind"] != "unaccounted_file"]
    assert code == 1 and holes == [("after_last", 2, 800, 999)]


def test_a_group_committed_past_a_lake_that_holds_nothing_is_a_hole(copy):
    config, lake = copy
    shutil.rmtree(lake)
    lake.mkdir()
    code, report, _ = audit_cli(config)
    holes = sorted((f["kind"], f["partition"], f["first"], f["last"]) for f in report["findings"])
    assert code == 1 and holes == [("before_first", p, 0, 999) for p in range(PARTITIONS)]


def test_records_deleted_by_retention_before_they_landed_are_reported(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, PARTITIONS)
    produce_events(kafka.bootstrap, topic_name, 600, PARTITIONS)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.delete_records([TopicPartition(topic_name, 0, 50)]).values():
        future.result(timeout=30)  # what retention does: the low watermark of partition 0 moves to 50
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{tmp_path / 'lake'}")
    assert run_until_idle(config, idle="2s").returncode == 0
    code, report, _ = audit_cli(config, "--deep")
    assert code == 1
    assert [(f["kind"], f["partition"], f["first"], f["last"]) for f in report["findings"]] == [("retention", 0, 0, 49)]


@pytest.mark.parametrize("fmt,codec", [("ndjson", "zstd"), ("ndjson", "gzip"), ("ndjson", "none"),
                                       ("parquet", "snappy"), ("parquet", "none")])
def test_deep_reads_a_real_lake_of_each_format_and_compression(kafka, topic_name, tmp_path, fmt, codec):
    create_topic(kafka.bootstrap, topic_name, PARTITIONS)
    produce_events(kafka.bootstrap, topic_name, 900, PARTITIONS)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{tmp_path / 'lake'}", fmt=fmt)
    set_compression(config, codec)
    assert run_until_idle(config, idle="2s").returncode == 0
    code, report, err = audit_cli(config, "--deep")
    assert code == 0 and report["rows_read"] == 900, (report, err[-2000:])


def test_an_unreachable_broker_exits_2_naming_the_key(tmp_path, topic_name):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, topic_name, f"127.0.0.1:{port}", f"file://{tmp_path / 'lake'}")
    code, report, err = audit_cli(config)
    assert code == 2 and report is None
    assert "kafka.bootstrap.servers" in err and str(config) in err


def test_a_broken_config_exits_2(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("topic: x\noutput: {url: file:///tmp/x, format: parquet, compression: lz4}\n")
    code, report, err = audit_cli(config)
    assert code == 2 and "compression" in err


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_an_object_store_lake_is_audited_and_a_stray_copy_found(kafka, topic_name, tmp_path, request, kind):
    from .conftest import make_lake

    lake = make_lake(kind, request, tmp_path)
    create_topic(kafka.bootstrap, topic_name, PARTITIONS)
    produce_events(kafka.bootstrap, topic_name, 900, PARTITIONS)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, storage_options=lake.storage_options)
    assert run_until_idle(config, idle="2s").returncode == 0
    code, report, err = audit_cli(config, "--deep")
    assert code == 0 and report["rows_read"] == 900, (report, err[-2000:])
    store = lake.store
    original = data_files(store)[0]
    stray = original.rsplit("/", 1)[0] + "/stray.parquet"
    assert store.publish(stray, store.read(original))
    code, report, _ = audit_cli(config, "--deep")
    assert code == 1 and [(f["kind"], f["path"]) for f in report["findings"]] == [
        ("unaccounted_file", stray), ("duplicate_row", None)]


def test_records_deleted_by_retention_while_the_group_was_away_are_reported(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, PARTITIONS)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{tmp_path / 'lake'}")
    produce_events(kafka.bootstrap, topic_name, 300, PARTITIONS)
    assert run_until_idle(config, idle="2s").returncode == 0  # committed 100 on each partition
    produce_events(kafka.bootstrap, topic_name, 300, PARTITIONS, start=300)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.delete_records([TopicPartition(topic_name, 0, 150)]).values():
        future.result(timeout=30)  # retention, while no member ran: partition 0 now starts at 150
    assert run_until_idle(config, idle="2s").returncode == 0  # resumes at 100, finds 150 first
    code, report, _ = audit_cli(config, "--deep")
    assert code == 1
    assert [(f["kind"], f["partition"], f["first"], f["last"]) for f in report["findings"]] == [
        ("retention", 0, 100, 149)]
