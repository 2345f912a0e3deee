"""The newcomer's demo: a real local Kafka, a few thousand events, `ingest run`, the lake shown.

Run from the repository root: `python deploy/local/demo.py` (deploy/local/demo.sh installs first).
It starts Apache Kafka (KRaft, 127.0.0.1) from jars cached under ~/.cache, creates the
topic of consumers/example.yaml, produces realistic order events spread over three hours,
runs `ingest run consumers/example.yaml` until the topic is drained, prints the landed
files with row counts and a few rows, and stops the broker.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_broker import LocalKafka  # noqa: E402  (deploy/local/kafka_broker.py)

TOPIC = "example"
EVENTS = 5000
LAKE = REPO / "lake" / TOPIC


def produce(bootstrap: str) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    for i in range(EVENTS):
        customer = f"cust-{rng.randrange(500):04d}"
        event = {
            "order_id": f"ord-{i:07d}",
            "customer_id": customer,
            "status": rng.choice(["created", "paid", "shipped", "delivered", "cancelled"]),
            "amount": round(rng.uniform(5, 500), 2),
            "currency": rng.choice(["EUR", "USD", "GBP"]),
            "items": [{"sku": f"sku-{rng.randrange(200):03d}", "qty": rng.randrange(1, 4)} for _ in range(rng.randrange(1, 4))],
            "shipping": {"country": rng.choice(["DE", "FR", "NL", "US", "GB"]), "express": rng.random() < 0.2},
        }
        timestamp = now_ms - rng.randrange(3 * 3600 * 1000)  # spread over three hours of folders
        producer.produce(TOPIC, json.dumps(event).encode(), key=customer.encode(), timestamp=timestamp)
        if i % 1000 == 999:
            producer.poll(0)
    producer.flush(30)
    print(f"produced {EVENTS} order events to topic {TOPIC!r} (3 partitions)")


def show_lake() -> None:
    import pyarrow.parquet as pq

    files = sorted(p for p in LAKE.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.relative_to(LAKE).parts))
    total = 0
    print(f"\nlanded files under {LAKE.relative_to(REPO)}/:")
    for path in files:
        rows = pq.ParquetFile(path).metadata.num_rows
        total += rows
        print(f"  {str(path.relative_to(LAKE)):75s} {rows:6d} rows")
    print(f"  {len(files)} files, {total} rows (produced {EVENTS})")
    if files:
        table = pq.read_table(files[0]).slice(0, 3)
        print(f"\nfirst rows of {files[0].relative_to(LAKE)}:")
        for row in table.to_pylist():
            print("  " + json.dumps(row, default=str))
    if total != EVENTS:
        raise SystemExit(f"expected {EVENTS} rows in the lake, found {total}")


def main() -> int:
    if LAKE.exists():
        shutil.rmtree(LAKE)  # the demo's broker is new each time, so its old lake would not match
    with tempfile.TemporaryDirectory(prefix="lake-ingest-kafka-") as data_dir:
        print("starting Apache Kafka (first run downloads its jars from Maven Central, ~1 min) ...")
        with LocalKafka(data_dir) as broker:
            print(f"Kafka is up at {broker.bootstrap}")
            produce(broker.bootstrap)
            print("running: ingest run consumers/example.yaml --exit-at-end")
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "LAKE_ROOT": "file://./lake"}
            result = subprocess.run(
                [sys.executable, "-m", "ingest_core", "run", "consumers/example.yaml", "--exit-at-end",
                 "--log-format", "text"],
                cwd=REPO, env=env,
            )
            if result.returncode != 0:
                print(f"ingest run exited with {result.returncode}", file=sys.stderr)
                return result.returncode
        show_lake()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
