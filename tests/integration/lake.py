"""Helpers for integration tests: consumer YAML, producing, running `ingest`, reading the lake."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ingest_core.sink.storage import LakeStore

REPO = Path(__file__).resolve().parents[2]


def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=30)  # keep `admin` referenced until the futures resolve


def produce_events(bootstrap: str, topic: str, count: int, partitions: int = 3, start: int = 0,
                   rate: float | None = None, ts_ms: int | None = None) -> None:
    """`count` realistic order events, round-robin over partitions; optionally paced at `rate`/s."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    began = time.monotonic()
    for i in range(start, start + count):
        event = {"order_id": i, "customer": f"c{i % 97}", "amount": round(i * 1.25, 2), "currency": "EUR",
                 "items": [{"sku": f"sku-{i % 13}", "qty": 1 + i % 3}]}
        producer.produce(topic, json.dumps(event).encode(), key=f"c{i % 97}".encode(), partition=i % partitions,
                         timestamp=ts_ms or 0)
        if rate and (i - start) % 100 == 99:
            producer.poll(0)
            ahead = (i - start + 1) / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(30) == 0


def write_config(folder: Path, topic: str, bootstrap: str, lake_url: str, fmt: str = "parquet",
                 group: str | None = None, batch: dict | None = None, extra: str = "",
                 storage_options: dict | None = None, kafka: dict | None = None) -> Path:
    batch = {"max_records": 2000, "max_bytes": "16MiB", "max_age": "2s", **(batch or {})}
    path = folder / f"{topic}.yaml"
    # A 6 s session, 0.5 s heartbeats; the consumer protocol (KIP-848) takes them from the broker (kafka_broker.py).
    session = {} if (kafka or {}).get("group.protocol") == "consumer" else {"session.timeout.ms": 6000,
                                                                             "heartbeat.interval.ms": 500}
    path.write_text(
        f"topic: {topic}\n"
        f"group_id: {group or 'ingest-' + topic}\n"
        f"kafka: {json.dumps({'bootstrap.servers': bootstrap, **session, **(kafka or {})})}\n"
        f"output:\n  url: {lake_url}\n  format: {fmt}\n  storage_options: {json.dumps(storage_options or {})}\n"
        f"batch: {json.dumps(batch)}\n"
        f"http: {{port: 0}}\n" + extra
    )
    return path


def ingest(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ingest_core", *args], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def run_to_completion(config: Path, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`ingest run CONFIG FLAGS --log-format json` until it exits by itself."""
    process = ingest("run", str(config), *flags, "--log-format", "json")
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run_until_idle(config: Path, idle: str = "3s", timeout: float = 120) -> subprocess.CompletedProcess:
    return run_to_completion(config, "--exit-when-idle", idle, timeout=timeout)


def log_events(stderr: str) -> list[dict]:
    """The JSON log lines of an `ingest run --log-format json`, in order."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_for(what: str, check, timeout: float = 60, every: float = 0.2):
    """Poll `check` until it returns something true, and return that; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


def data_files(store: LakeStore) -> list[str]:
    """Relative paths of the lake's data files: hidden and internal names (`_`, `.`) skipped, as Spark does."""
    return [p for p in store.list_files() if not any(part.startswith(("_", ".")) for part in p.split("/"))]


def landed_rows(store: LakeStore, fmt: str) -> list[tuple[int, int]]:
    """(_partition, _offset) of every row in the lake's data files, sorted."""
    rows: list[tuple[int, int]] = []
    for path in data_files(store):
        data = store.read(path)
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data), columns=["_partition", "_offset"])
            rows.extend(zip(table.column("_partition").to_pylist(), table.column("_offset").to_pylist(), strict=False))
        else:
            text = gzip.decompress(data) if path.endswith(".gz") else data
            rows.extend((r["_partition"], r["_offset"]) for r in map(json.loads, text.splitlines()))
    return sorted(rows)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = 3) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return {tp.partition: tp.offset for tp in result}
    finally:
        consumer.close()


def expected_rows(count: int, partitions: int = 3) -> list[tuple[int, int]]:
    """Round-robin production: partition p holds count // partitions (+1) messages from offset 0."""
    return sorted((p, o) for p in range(partitions) for o in range(len(range(p, count, partitions))))
