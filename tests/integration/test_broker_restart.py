"""The broker goes away mid-run and comes back (a rolling upgrade of a one-broker cluster, a crash): a
consumer that published a batch while the broker was down cannot commit it, may lose its partitions when
the group is reloaded, and must still land every record exactly once, without being restarted itself.
Its own broker (stopped and started again on the same port and data dir), not the session's."""
from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from kafka_broker import LocalKafka

from ingest_core.sink.storage import LakeStore

from .group_view import GroupView
from .lake import create_topic, ingest, landed_rows, log_events, produce_events, wait_for, write_config

pytestmark = pytest.mark.slow

PARTITIONS = 4
ROUND = 2000  # records produced per round, round-robin over the partitions


def test_a_broker_restart_mid_run_lands_every_record_once_without_restarting_the_consumer(tmp_path, topic_name):
    broker = LocalKafka(tmp_path / "kafka").start()
    process = None
    try:
        create_topic(broker.bootstrap, topic_name, PARTITIONS)
        url = f"file://{tmp_path / 'lake'}"
        config = write_config(tmp_path, topic_name, broker.bootstrap, url, batch={"max_records": 100_000, "max_age": "3s"})
        group = GroupView(broker.bootstrap, f"ingest-{topic_name}", topic_name, PARTITIONS)
        process = ingest("run", str(config), "--log-format", "json")
        produce_events(broker.bootstrap, topic_name, ROUND, PARTITIONS)
        per_round = ROUND // PARTITIONS
        wait_for("the first round committed", lambda: group.committed() == dict.fromkeys(range(PARTITIONS), per_round),
                 timeout=60, every=0.3)

        produce_events(broker.bootstrap, topic_name, ROUND, PARTITIONS, start=ROUND)
        time.sleep(0.5)  # taken in and buffered (max_age 3 s): published while the broker is down
        broker.stop()
        time.sleep(12)  # past the 6 s session
        assert process.poll() is None, "the consumer must ride out the outage"
        broker.start()  # same data dir: same port, topics and committed offsets
        produce_events(broker.bootstrap, topic_name, ROUND, PARTITIONS, start=2 * ROUND)
        group = GroupView(broker.bootstrap, f"ingest-{topic_name}", topic_name, PARTITIONS)
        wait_for("every round committed after the restart",
                 lambda: group.committed() == dict.fromkeys(range(PARTITIONS), 3 * per_round), timeout=120, every=0.5)

        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err[-3000:]
        events = Counter(e.get("event") for e in log_events(err))
        # The path this test is for: the batch published during the outage could not be committed, and was
        # replayed from its marker (same names, create-only) once the partitions came back.
        assert events["commit_failed"] >= 1 and events["replay"] >= 1, events
        landed = landed_rows(LakeStore.open(url), "parquet")
        assert len(landed) == len(set(landed)), "a record landed twice"
        assert set(landed) == {(i % PARTITIONS, i // PARTITIONS) for i in range(3 * ROUND)}
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
        broker.stop()
