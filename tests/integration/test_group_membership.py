"""Static membership (`group.instance.id`, as the rendered pods run): a member killed just as it is
told to give partitions up, then restarted under the same instance id (a container restarted in
its pod), must leave no partition without an owner. The broker is the judge: the group's
assignment (describe_consumer_groups) and its committed offsets; the lake must hold every record
once.

With cooperative-sticky this fails: the partitions withheld for the newcomer wait for a second
round that the dead member would have started, and the restarted member is handed its old
assignment without a rebalance (source/kafka.py, _STATIC_STRATEGY)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest_core.sink.storage import LakeStore

from .group_view import GroupView
from .lake import REPO, create_topic, landed_rows, produce_events, run_to_completion, wait_for, write_config

pytestmark = pytest.mark.slow

PARTITIONS = 12
MESSAGES = 1200  # per round of production; 100 a partition


def start(config: Path, log: Path, faults: str = "") -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "ingest_core", "run", str(config), "--log-format", "json"],
                                cwd=REPO, stdout=out, stderr=out, env={**os.environ, "INGEST_FAULTS": faults})


def test_a_static_member_killed_while_giving_partitions_up_leaves_none_unowned(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, PARTITIONS)
    url = f"file://{tmp_path / 'lake'}"
    configs = {}
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        configs[name] = write_config(folder, topic_name, kafka.bootstrap, url, batch={"max_age": "1s"},
                                     kafka={"group.instance.id": f"{topic_name}-{name}"})
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, PARTITIONS)
    logs = {name: tmp_path / f"{name}.log" for name in configs}
    produce_events(kafka.bootstrap, topic_name, MESSAGES, PARTITIONS)
    first = {p: MESSAGES // PARTITIONS for p in range(PARTITIONS)}
    processes = {"a": start(configs["a"], logs["a"], faults="on_revoke:1")}
    try:
        wait_for("a to land and commit every partition", lambda: group.committed() == first, timeout=60, every=0.3)
        processes["b"] = start(configs["b"], logs["b"])
        # b's join makes the group take partitions from a: a dies as it is told to give them up.
        assert processes["a"].wait(timeout=60) == -signal.SIGKILL, logs["a"].read_text()[-3000:]
        processes["a"] = start(configs["a"], logs["a"])  # the same instance id, as a restarted container
        produce_events(kafka.bootstrap, topic_name, MESSAGES, PARTITIONS, start=MESSAGES)
        everything = {p: 2 * MESSAGES // PARTITIONS for p in range(PARTITIONS)}
        wait_for("every partition to be owned and committed to its end",
                 lambda: sorted(group.owners()) == list(range(PARTITIONS)) and group.committed() == everything,
                 timeout=90, every=0.5)
        owners = group.owners()
        assert set(owners.values()) == {f"{topic_name}-a", f"{topic_name}-b"}, owners
        for name in ("a", "b"):
            processes[name].send_signal(signal.SIGTERM)
        for name in ("a", "b"):
            assert processes[name].wait(timeout=60) == 0, logs[name].read_text()[-3000:]
        landed = landed_rows(LakeStore.open(url), "parquet")
        assert len(landed) == len(set(landed)) == 2 * MESSAGES
        assert set(landed) == {(i % PARTITIONS, i // PARTITIONS) for i in range(2 * MESSAGES)}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_consumer_group_protocol_lands_every_record_with_the_shipped_defaults(kafka, topic_name, tmp_path):
    """`kafka.group.protocol: consumer` (KIP-848, Kafka 4.0 or later), static member included: the broker
    assigns, and lake-ingest sets none of the properties librdkafka refuses under that protocol."""
    create_topic(kafka.bootstrap, topic_name, 4)
    produce_events(kafka.bootstrap, topic_name, 400, 4)
    url = f"file://{tmp_path / 'lake'}"
    config = tmp_path / "orders.yaml"
    config.write_text(f"topic: {topic_name}\n"
                      f"kafka: {{bootstrap.servers: '{kafka.bootstrap}', group.protocol: consumer, "
                      f"group.instance.id: {topic_name}-a}}\n"
                      f"output: {{url: '{url}', format: parquet}}\n"
                      "http: {port: 0}\n")
    result = run_to_completion(config, "--exit-at-end", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    landed = landed_rows(LakeStore.open(url), "parquet")
    assert sorted(landed) == sorted((i % 4, i // 4) for i in range(400))
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, 4)
    assert group.committed() == {p: 100 for p in range(4)}
