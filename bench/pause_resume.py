"""How soon messages come again after every partition was paused and is resumed: a resume alone
against a resume followed by lake-ingest's fetch restart.

    python bench/pause_resume.py            # 5 rounds of each way, alternated

One real Kafka broker (deploy/local/kafka_broker.py), a topic of 4 partitions with 100,000 messages of 200 B each.
One consumer (lake-ingest's librdkafka settings: ingest_core/source/kafka.py) reads some of them, then each round
pauses all 4 partitions, goes on calling consume() for 150 ms (as lake-ingest does while its batches publish),
resumes all 4 and times the first message after the resume. The two ways:

  resume         consumer.resume() alone: librdkafka's fetcher, which had nothing to fetch, is not woken
  restart        then restart_fetching() (ingest_core/source/kafka.py): a seek to each partition's position

Prints medians (lowest-highest), in milliseconds from the resume."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from ingest_core.settings import Settings  # noqa: E402
from ingest_core.source.kafka import consumer_config, restart_fetching  # noqa: E402

WAYS = ("resume", "restart")
PARTITIONS = 4
PAUSED_FOR = 0.15


def consume_some(consumer: Consumer, count: int) -> None:
    taken = 0
    while taken < count:
        taken += sum(1 for m in consumer.consume(5000, 1.0) if m.error() is None)


def after_resume(consumer: Consumer, topic: str, way: str) -> float:
    """ms from resuming every (paused) partition to the first message."""
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.pause(partitions)
    paused_at = time.perf_counter()
    while time.perf_counter() - paused_at < PAUSED_FOR:
        consumer.consume(5000, 0.01)
    began = time.perf_counter()
    consumer.resume(partitions)
    if way == "restart":
        restart_fetching(consumer, topic, list(range(PARTITIONS)))
    while not any(m.error() is None for m in consumer.consume(5000, 0.01)):
        pass
    return (time.perf_counter() - began) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {way: [] for way in WAYS}
    topic = "pause-resume"
    with common.preloaded_broker("lake-pause-resume-", topic, PARTITIONS, 100_000 * PARTITIONS, 200) as (
        bootstrap,
        workdir,
    ):
        settings = Settings.model_validate(
            {"topic": topic, "group_id": f"pause-resume-{uuid.uuid4().hex}",
             "kafka": {"bootstrap.servers": bootstrap}, "output": {"url": str(workdir / "lake")}})
        config = consumer_config(settings)
        config.pop("logger", None)
        consumer = Consumer(config)
        consumer.subscribe([topic])
        try:
            consume_some(consumer, 20_000)
            for _ in range(args.rounds):
                for way in WAYS:
                    results[way].append(after_resume(consumer, topic, way))
                    consume_some(consumer, 10_000)
        finally:
            consumer.close()
    print(f"Every one of {PARTITIONS} partitions paused for {PAUSED_FOR * 1000:.0f} ms, then resumed; {args.rounds} rounds "
          "of each way, alternated. Median (lowest-highest), ms from the resume to the first message.\n")
    print("| way | first message |")
    print("|---|---:|")
    for way in WAYS:
        times = results[way]
        print(f"| {way} | {statistics.median(times):.0f} ({min(times):.0f}-{max(times):.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
