"""One memory budget per pod, against a real broker: `ingest run` with the shipped defaults on
a wide topic whose backlog is bigger than the budget stays under the pod's limit, as the OS
counts it (the child's peak RSS from wait4), and lands and commits every record once.
`ingest validate` asks the same broker for the partition count and warns about files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from ingest_core.sink.storage import LakeStore

from .lake import REPO, committed_offsets, create_topic, landed_rows

pytestmark = pytest.mark.slow

PARTITIONS = 24
MESSAGES = 600_000  # x 1 KiB: 600 MB, half again the 400 MiB of messages the shipped budget holds
POD_LIMIT_MIB = 1024  # consumers/defaults.yaml: deploy.resources.memory 1Gi
MiB = 1024 * 1024


def produce_kib_values(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 4 * MiB,
                         "queue.buffering.max.kbytes": 1024 * 1024, "compression.type": "none"})
    pad = "x" * 990
    for i in range(count):
        value = f'{{"id":{i:10d},"pad":"{pad}"}}'.encode()
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def shipped_defaults_config(folder, topic: str, bootstrap: str) -> str:
    """Only topic, group and output; everything else from consumers/defaults.yaml as shipped."""
    path = folder / f"{topic}.yaml"
    path.write_text(f"extends: {REPO / 'consumers' / 'defaults.yaml'}\n"
                    f"topic: {topic}\ngroup_id: ingest-{topic}\n"
                    f"output: {{url: 'file://{folder / 'lake'}'}}\n"
                    "http: {port: 0}\n")
    return str(path)


def run_measured(config: str, bootstrap: str, timeout: float = 600) -> tuple[int, float, str]:
    """`ingest run` as a child: (exit code, peak RSS in MiB from wait4, stderr). An upper bound: on
    Linux a child started by vfork + exec also carries the test runner's own peak in ru_maxrss."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    with open(f"{config}.log", "w+") as log:
        process = subprocess.Popen([sys.executable, "-m", "ingest_core", "run", config, "--exit-when-idle", "3s",
                                    "--log-format", "json"], cwd=REPO, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        return process.returncode, usage.ru_maxrss / 1024, log.read()


def test_a_wide_topic_with_the_shipped_defaults_stays_within_the_pod(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, partitions=PARTITIONS)
    produce_kib_values(kafka.bootstrap, topic_name, MESSAGES, PARTITIONS)
    config = shipped_defaults_config(tmp_path, topic_name, kafka.bootstrap)

    code, peak_rss_mib, log = run_measured(config, kafka.bootstrap)

    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert code == 0, log[-3000:]
    budget = next(e for e in events if e.get("event") == "memory_budget")
    assert budget["limit"] == POD_LIMIT_MIB * MiB // 2  # half of the pod, the default share
    reasons = Counter(e["reason"] for e in events if e.get("event") == "flush")
    print(f"peak RSS {peak_rss_mib:.0f} MiB of {POD_LIMIT_MIB}; batches by reason {dict(reasons)}")
    assert peak_rss_mib <= 0.8 * POD_LIMIT_MIB, f"peak RSS {peak_rss_mib:.0f} MiB"
    rows = landed_rows(LakeStore.open(f"file://{tmp_path / 'lake'}"), "parquet")
    assert len(rows) == MESSAGES and len(set(rows)) == MESSAGES  # every record, once
    per_partition = MESSAGES // PARTITIONS
    assert rows == sorted((p, o) for p in range(PARTITIONS) for o in range(per_partition))
    assert committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name, PARTITIONS) == {
        p: per_partition for p in range(PARTITIONS)}


def test_validate_asks_the_broker_for_the_partitions_per_replica(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, partitions=48)
    config = tmp_path / "wide.yaml"
    config.write_text(f"extends: {REPO / 'consumers' / 'defaults.yaml'}\ntopic: {topic_name}\n"
                      f"output: {{url: 'file://{tmp_path / 'lake'}'}}\ndeploy: {{replicas: 2}}\n")
    result = subprocess.run([sys.executable, "-m", "ingest_core", "validate", str(config)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap})
    assert result.returncode == 0, result.stderr
    assert f"up to 24 partitions (48 of topic {topic_name} on {kafka.bootstrap} over 2 replica(s))" in result.stderr
    assert "raise deploy.replicas to 8" in result.stderr  # 6 full batches per replica: 48 / 6
