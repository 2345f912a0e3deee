"""How soon a new consumer group gets its first message: librdkafka's defaults against lake-ingest's start-up.

    python bench/startup.py            # 5 rounds of each way, alternated

One real Kafka broker (deploy/local/kafka_broker.py), a topic of 4 partitions with 1,000 messages each. Each round
starts a bare confluent-kafka consumer in a new group (auto.offset.reset earliest, cooperative-sticky) in this
process, and times, from just before the consumer is made: the assignment callback, and the first message. The
two ways:

  librdkafka     the callback assigns the partitions as given: librdkafka looks the committed offsets up and,
                 with none, resets after its fixed 100 ms wait; sparse connections (librdkafka's default)
  lake-ingest    StartPositions (ingest_core/source/assign.py) gives the reset position at once, and
                 enable.sparse.connections=false (ingest_core/source/kafka.py)

Prints medians (lowest-highest) of each way, in milliseconds."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from ingest_core.source.assign import StartPositions  # noqa: E402

WAYS = ("librdkafka", "lake-ingest")


def first_message(bootstrap: str, topic: str, way: str) -> tuple[float, float]:
    """(ms to the assignment callback, ms to the first message) of one new group."""
    config = {"bootstrap.servers": bootstrap, "group.id": f"startup-{uuid.uuid4().hex}",
              "auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky",
              "enable.auto.commit": False}
    if way == "lake-ingest":
        config["enable.sparse.connections"] = False
    began = time.perf_counter()
    consumer = Consumer(config)
    assigned: list[float] = []

    def note(_consumer, _partitions) -> None:
        assigned.append(time.perf_counter())

    def plain(consumer, partitions) -> None:
        note(consumer, partitions)
        consumer.incremental_assign(partitions)

    on_assign = StartPositions.from_config(config, then=note) if way == "lake-ingest" else plain
    consumer.subscribe([topic], on_assign=on_assign)
    try:
        while True:
            messages = [m for m in consumer.consume(100, 0.01) if m.error() is None]
            if messages:
                return (assigned[0] - began) * 1000, (time.perf_counter() - began) * 1000
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    topic = "startup"
    with common.preloaded_broker("lake-startup-", topic, 4, 4000, 200) as (bootstrap, _workdir):
        first_message(bootstrap, topic, "librdkafka")  # warms the broker, not counted
        for _ in range(args.rounds):
            for way in WAYS:
                results[way].append(first_message(bootstrap, topic, way))
    print(f"New consumer group, 4 partitions, {args.rounds} rounds of each way, alternated. Median (lowest-highest), ms "
          "from making the consumer.\n")
    print("| way | assignment | first message |")
    print("|---|---:|---:|")
    for way in WAYS:
        assigned = [r[0] for r in results[way]]
        first = [r[1] for r in results[way]]
        print(f"| {way} | {statistics.median(assigned):.0f} ({min(assigned):.0f}-{max(assigned):.0f}) "
              f"| {statistics.median(first):.0f} ({min(first):.0f}-{max(first):.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
