"""Chaos: three consumers of one group on a 6-partition topic under steady traffic, killed
(SIGKILL), stalled past their session (SIGSTOP, zombies), stopped (SIGTERM) and crashing by
themselves between marker, files and commit (INGEST_FAULTS); restarted every time.

At the end the lake must hold every produced (partition, offset) exactly once, as read by
pyarrow, by `ingest audit --deep` and by Spark's file stream source.

CI runs a reduced form. The full form of the issue (200,000 messages, >= 20 kills,
>= 10 membership changes): CHAOS_FULL=1 pytest tests/chaos -s
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ingest_core.audit import audit
from ingest_core.autoloader import spark_reader
from ingest_core.config import load_settings
from ingest_core.storage import LakeStore
from integration.spark import run_available_now, spark_session
from integration.lake import REPO, committed_offsets, create_topic, expected_rows, landed_rows, produce_events, write_config

pytestmark = pytest.mark.slow

FULL = os.environ.get("CHAOS_FULL") == "1"
MESSAGES = 200_000 if FULL else 24_000
RATE = 2_000 if FULL else 1_000  # messages per second, steady
MIN_KILLS = 20 if FULL else 5
MIN_MEMBERSHIP_CHANGES = 10 if FULL else 4
PARTITIONS = 6
CONSUMERS = 3
FAULTS = "after_marker:0.01,between_files:0.01,after_files:0.01,before_commit:0.01,after_commit:0.005"


class Member:
    """One `ingest run` process slot: restarted whenever it dies."""

    def __init__(self, index: int, config: Path, log_dir: Path):
        self.index = index
        self.config = config
        self.log_path = log_dir / f"member-{index}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest_core", "run", str(self.config), "--log-format", "json"],
            cwd=REPO, stdout=log, stderr=log, env={**os.environ, "INGEST_FAULTS": FAULTS},
        )
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def events(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut by SIGKILL
        return out


def test_exactly_once_under_kills_zombies_rebalances_and_injected_crashes(kafka, topic_name, tmp_path):
    rng = random.Random(20261123)
    create_topic(kafka.bootstrap, topic_name, partitions=PARTITIONS)
    lake = LakeStore.open(f"file://{tmp_path / 'lake'}")
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url,
                          batch={"max_records": 300, "max_age": "2s"},
                          kafka={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    producer = threading.Thread(target=produce_events, args=(kafka.bootstrap, topic_name, MESSAGES),
                                kwargs={"partitions": PARTITIONS, "rate": RATE})
    members = [Member(i, config, tmp_path) for i in range(CONSUMERS)]
    try:
        run_chaos(rng, kafka, topic_name, config, lake, producer, members, tmp_path)
    finally:  # a failed assertion must not leave members running
        for member in members:
            if member.alive():
                member.process.kill()
                member.process.wait()


def run_chaos(rng, kafka, topic_name, config, lake, producer, members, tmp_path):
    for member in members:
        member.start()
    producer.start()

    actions = Counter()
    while producer.is_alive():
        time.sleep(rng.uniform(1.0, 3.0))
        for member in members:  # injected faults kill members by themselves: restart them
            if not member.alive():
                actions["self-crash restarts"] += 1
                member.start()
        victim = rng.choice(members)
        roll = rng.random()
        if roll < 0.6:
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            actions["SIGKILL"] += 1
            time.sleep(rng.uniform(0, 2))
            victim.start()
        elif roll < 0.8:
            victim.process.send_signal(signal.SIGSTOP)  # stalled past session.timeout.ms: a zombie
            actions["SIGSTOP (zombie)"] += 1
            time.sleep(8)
            victim.process.send_signal(signal.SIGCONT)
        else:
            victim.process.send_signal(signal.SIGTERM)
            victim.process.wait(timeout=60)
            actions["SIGTERM"] += 1
            victim.start()
    producer.join()

    # Calm: no more chaos (faults stay on); wait until every partition is committed to its end.
    group = f"ingest-{topic_name}"
    per_partition = Counter(p for p, _ in expected_rows(MESSAGES, PARTITIONS))
    deadline = time.monotonic() + 180
    while committed_offsets(kafka.bootstrap, group, topic_name, PARTITIONS) != dict(per_partition):
        assert time.monotonic() < deadline, "the group did not catch up after the chaos"
        for member in members:
            if not member.alive():
                actions["self-crash restarts"] += 1
                member.start()
        time.sleep(1)
    for member in members:
        member.process.send_signal(signal.SIGTERM)
    for member in members:
        member.process.wait(timeout=90)

    landed = landed_rows(lake, "parquet")
    duplicates = len(landed) - len(set(landed))
    expected = expected_rows(MESSAGES, PARTITIONS)
    missing = len(set(expected) - set(landed))
    reports = audit(load_settings(config), deep=True)
    # Spark's file stream source, through the reader `ingest autoloader` prints.
    reader = spark_reader(load_settings(config))
    spark_run = run_available_now(reader.open(spark_session()), tmp_path / "spark-checkpoint", reader.path)
    spark_pairs = spark_run.pairs

    events = [e for m in members for e in m.events()]
    names = Counter(e.get("event") for e in events)
    reasons = Counter(e.get("reason") for e in events if e.get("event") == "flush")
    membership_changes = names["assigned"] + names["revoked"] + names["lost"]
    kills = actions["SIGKILL"] + actions["self-crash restarts"]
    print(f"\nchaos ({'full' if FULL else 'reduced'}): {MESSAGES} records produced at {RATE}/s into {PARTITIONS} partitions")
    print(f"  actions: {dict(actions)}; process starts: {sum(m.starts for m in members)}")
    print(f"  kills (SIGKILL + injected crashes): {kills}; membership changes (assign/revoke/lost events): "
          f"{membership_changes}; replays: {names['replay']}; adopted markers: {names['adopt_marker']}; "
          f"failed commits: {names['commit_failed']}")
    print(f"  flushes by reason: {dict(reasons)}")
    print(f"  lake rows: {len(landed)}, duplicates: {duplicates}, missing: {missing}, "
          f"audit problems: {sum(r.problems for r in reports)}")
    print(f"  Spark file stream: {sum(spark_pairs.values())} rows, {len(spark_pairs)} distinct, "
          f"read twice: {sum(1 for n in spark_pairs.values() if n > 1)}")

    assert duplicates == 0 and missing == 0 and sorted(set(landed)) == expected
    assert sum(r.problems for r in reports) == 0
    assert sorted(spark_pairs) == expected and max(spark_pairs.values()) == 1
    assert kills >= MIN_KILLS and membership_changes >= MIN_MEMBERSHIP_CHANGES
    assert reasons["records"] > 0 and reasons["age"] > 0
