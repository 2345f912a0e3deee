"""Failure paths against real servers: a shutdown that outlives its timeout while storage is down,
and a revoke while storage is down. What is left is read from the broker (committed offsets) and
the lake, then a later run must land everything exactly once."""
from __future__ import annotations

import json
import queue
import signal
import threading
import time

import pytest
from object_stores import MotoS3Server

from ingest_core.sink.storage import LakeStore

from .conftest import Lake
from .group_view import GroupView
from .lake import (
    create_topic,
    data_files,
    expected_rows,
    ingest,
    landed_rows,
    log_events,
    produce_events,
    run_to_completion,
    run_until_idle,
    wait_for,
    write_config,
)
from .test_fleet import free_port, metrics

pytestmark = pytest.mark.slow

EXIT_UNCLEAN = 3  # ingest run: stopped, but storage still failed (documented in the README's exit codes)


def with_port(config):
    port = free_port()
    config.write_text(config.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    return port


def consumed(port: int) -> float:
    return sum(v for (n, _), v in metrics(port).items() if n == "ingest_consumed_messages_total")


@pytest.fixture
def s3_lake():
    server = MotoS3Server(refusable=True).start()
    try:
        server.create_bucket("paths")
        yield Lake("s3", "s3://paths/lake", server.storage_options, server)
    finally:
        server.stop()


def test_shutdown_past_its_timeout_while_storage_is_down_exits_3_and_leaves_it_uncommitted(kafka, topic_name, tmp_path,
                                                                                          s3_lake):
    create_topic(kafka.bootstrap, topic_name, 3)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, s3_lake.url, storage_options=s3_lake.storage_options,
                          batch={"max_records": 100_000, "max_age": "1s"})
    port = with_port(config)
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 3)
    process = ingest("run", str(config), "--log-format", "json", "--shutdown-timeout", "3s")
    try:
        produce_events(kafka.bootstrap, topic_name, 300)
        wait_for("the first batches to be committed", lambda: group.committed() == {0: 100, 1: 100, 2: 100})
        with s3_lake.server.outage("refuse"):
            produce_events(kafka.bootstrap, topic_name, 300, start=300)
            wait_for("the new records to be buffered", lambda: consumed(port) >= 600)
            asked = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
            took = time.monotonic() - asked
        assert process.returncode == EXIT_UNCLEAN, err[-3000:]
        assert took < 3 + 12, f"the shutdown took {took:.1f} s with a 3 s timeout"
        names = [e.get("event") for e in log_events(err)]
        assert "drain_gave_up" in names and "Traceback" not in err
        # What is left: the records after the outage began are neither committed nor in the lake.
        assert group.committed() == {0: 100, 1: 100, 2: 100}
        assert landed_rows(s3_lake.store, "parquet") == expected_rows(300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The next run lands them, once.
    done = run_until_idle(config, idle="2s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert landed_rows(s3_lake.store, "parquet") == expected_rows(600)
    assert group.committed() == {0: 200, 1: 200, 2: 200}


def test_revoke_while_storage_is_down_commits_nothing_and_the_new_owner_lands_it_once(kafka, topic_name, tmp_path,
                                                                                      s3_lake):
    create_topic(kafka.bootstrap, topic_name, 4)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    configs = [write_config(d, topic_name, kafka.bootstrap, s3_lake.url, storage_options=s3_lake.storage_options,
                            batch={"max_records": 100_000, "max_age": "1s"}) for d in (first_dir, second_dir)]
    ports = [with_port(c) for c in configs]
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 4)
    first = ingest("run", str(configs[0]), "--log-format", "json")
    second = None
    try:
        produce_events(kafka.bootstrap, topic_name, 400, partitions=4)
        wait_for("the first batches to be committed", lambda: group.committed() == {p: 100 for p in range(4)})
        # A second member joins while storage is up (start-up checks the store is writable), then
        # stalls past its session: the first member owns every partition again.
        second = ingest("run", str(configs[1]), "--log-format", "json")
        wait_for("the two members to share the partitions",
                 lambda: len(members := group.members()) == 2 and all(parts for _, parts in members), timeout=90)
        second.send_signal(signal.SIGSTOP)
        wait_for("the first member to own every partition again",
                 lambda: [parts for _, parts in group.members()] == [(0, 1, 2, 3)], timeout=60)
        with s3_lake.server.outage("refuse"):
            produce_events(kafka.bootstrap, topic_name, 400, partitions=4, start=400)
            wait_for("the new records to be buffered", lambda: consumed(ports[0]) >= 800)
            second.send_signal(signal.SIGCONT)  # it rejoins: the first member must give partitions back, mid-outage
            wait_for("the second member to own partitions again",
                     lambda: len(members := group.members()) == 2 and all(parts for _, parts in members), timeout=90)
            assert group.committed() == {p: 100 for p in range(4)}, "a commit while storage was down"
            assert first.poll() is None and second.poll() is None
        wait_for("everything to be committed after the outage",
                 lambda: group.committed() == {p: 200 for p in range(4)}, timeout=120, every=0.5)
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
        errors = [process.communicate(timeout=60)[1] for process in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
        assert "revoked" in [e.get("event") for e in log_events(errors[0])]
        assert landed_rows(s3_lake.store, "parquet") == expected_rows(800, partitions=4)
        assert not [p for p in data_files(s3_lake.store) if not s3_lake.store.read(p)]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()


def test_a_run_started_while_storage_is_down_waits_for_it_then_lands_everything_once(kafka, topic_name, tmp_path,
                                                                                      s3_lake):
    """A pod restarted during a storage outage must not crash-loop: `ingest run` retries its start-up
    write check with backoff, consumes nothing meanwhile, and lands everything once the store is back."""
    create_topic(kafka.bootstrap, topic_name, 2)
    produce_events(kafka.bootstrap, topic_name, 300, partitions=2)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, s3_lake.url, storage_options=s3_lake.storage_options,
                          batch={"max_age": "1s"})
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 2)
    with s3_lake.server.outage("refuse"):
        process = ingest("run", str(config), "--exit-when-idle", "3s", "--log-format", "json")
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
        reader.start()
        seen: list[dict] = []

        def retried_twice() -> bool:
            while not lines.empty():
                line = lines.get()
                if line.startswith("{"):
                    seen.append(json.loads(line))
            return sum(1 for e in seen if e.get("event") == "storage_retry_at_start") >= 2

        wait_for("two retries of the start-up check", retried_twice, timeout=60)
        assert process.poll() is None, "ingest run gave up while the store was down"
        assert group.committed() == {0: -1001, 1: -1001} and not group.members()  # nothing consumed yet
    process.wait(timeout=120)
    reader.join(timeout=30)  # it ends at the end of stderr
    rest = [lines.get() for _ in range(lines.qsize())]
    assert process.returncode == 0, "".join(rest)[-3000:]
    assert "storage_recovered" in "".join(rest)
    assert group.committed() == {0: 150, 1: 150}
    assert landed_rows(s3_lake.store, "parquet") == expected_rows(300, partitions=2)


def test_an_unreachable_broker_at_start_is_named_with_its_key_as_soon_as_it_is_seen(tmp_path, topic_name):
    """Waits for the report itself (not a fixed time), then stops the member cleanly."""
    port = free_port()  # nothing listens there
    config = write_config(tmp_path, topic_name, f"127.0.0.1:{port}", f"file://{tmp_path / 'lake'}")
    process = ingest("run", str(config), "--log-format", "json")
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
        deadline = time.monotonic() + 60
        reported, seen = None, []
        while reported is None:
            assert time.monotonic() < deadline and process.poll() is None, seen[-20:]
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith("{") and json.loads(line).get("event") == "broker_unreachable":
                reported = json.loads(line)["message"]
        assert f"127.0.0.1:{port}" in reported and "kafka.bootstrap.servers" in reported and str(config) in reported
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert process.returncode == 0 and "Traceback" not in "".join(seen + rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("flags", [("--exit-at-end",), ("--exit-when-idle", "3s")])
def test_a_run_that_stops_by_itself_exits_1_naming_a_topic_that_does_not_exist(kafka, tmp_path, topic_name, flags):
    """It would otherwise wait for the topic forever (a backfill Job that never ends)."""
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{tmp_path / 'lake'}")  # topic not created
    result = run_to_completion(config, *flags, timeout=60)
    assert result.returncode == 1, result.stderr[-3000:]
    [message] = [e["message"] for e in log_events(result.stderr) if e.get("event") == "topic_unusable"]
    assert message == f"{config}: topic: {topic_name} does not exist. Fix: correct `topic:`, or create the topic first"
    assert "Traceback" not in result.stderr


def test_a_running_consumer_waits_for_a_missing_topic_saying_what_to_do_then_lands_it(kafka, tmp_path, topic_name):
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{tmp_path / 'lake'}")
    process = ingest("run", str(config), "--log-format", "json")
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
        deadline, warning = time.monotonic() + 60, None
        while warning is None:
            assert time.monotonic() < deadline and process.poll() is None
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("{") and json.loads(line).get("event") == "consume_error":
                warning = json.loads(line)["message"]
        assert topic_name in warning and "Fix: create the topic, or correct `topic:`" in warning
        create_topic(kafka.bootstrap, topic_name, 2)
        produce_events(kafka.bootstrap, topic_name, 200, 2)
        group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 2)
        wait_for("the topic to be landed once it exists", lambda: group.committed() == {0: 100, 1: 100}, timeout=120,
                 every=0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_damaged_marker_stops_the_run_with_exit_2_and_its_fix_lands_the_batch_once(kafka, tmp_path, topic_name):
    """A marker damaged outside lake-ingest (markers are written whole) of a batch published but not committed."""
    create_topic(kafka.bootstrap, topic_name, 1)
    produce_events(kafka.bootstrap, topic_name, 300, 1)
    root = tmp_path / "lake"
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{root}", batch={"max_records": 100},
                          kafka={"session.timeout.ms": 6000})
    # Killed once the first batch's files are in, before its commit.
    crashed = ingest("run", str(config), "--exit-at-end", "--log-format", "json", env={"INGEST_FAULTS": "after_files:1"})
    crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    [marker] = list(root.glob("_ingest/batches/*/0/*.json"))
    marker.write_bytes(marker.read_bytes()[:40])

    stopped = run_to_completion(config, "--exit-at-end", timeout=60)
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    [message] = [e["message"] for e in log_events(stopped.stderr) if e.get("event") == "fatal"]
    assert str(marker.relative_to(root)) in message and "Fix: restore the marker from a backup" in message
    assert "Traceback" not in stopped.stderr

    base = marker.stem  # the fix: the marker and partition 0's data files from its offset
    marker.unlink()
    for data_file in root.glob(f"dt=*/hour=*/{topic_name}+0+{base}.*"):
        data_file.unlink()
    assert run_to_completion(config, "--exit-at-end", timeout=60).returncode == 0
    landed = landed_rows(LakeStore.open(f"file://{root}"), "parquet")
    assert sorted(landed) == [(0, offset) for offset in range(300)]
