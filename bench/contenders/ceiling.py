"""The ceiling: a bare confluent-kafka consume() loop that touches each value (len()) and
writes nothing; it commits once at the end. What no consumer written in Python on this
client can beat on this machine and broker.

It runs with lake-ingest's librdkafka settings (ingest_core/kafka.py), but keeps a 16 MiB
prefetch where lake-ingest now has 8 MiB (see main): the faster of the two for this loop, so the
ceiling is never lowered by lake-ingest's own choice; `ceiling-defaults`
(spec "librdkafka_defaults") runs it with librdkafka's own prefetch limits, to show what
lake-ingest's bounded prefetch costs. `ceiling-keep` (spec "keep_values") keeps each value
in a list per partition until a batch's worth has arrived (`batch_messages` / partitions, what
lake-ingest cuts), then drops the list: the least any consumer that batches must do.
`ceiling-parse` (spec "parse_values") also hands each such batch to a pool of two threads
that parse it with pyarrow.json (nothing is written; the end is when the last parse is done):
the least any consumer must do that checks every value is JSON before it lands, which both
lake-ingest formats do (NDJSON to dead-letter what is not JSON, Parquet to build its columns).
`ceiling-fast-start` (spec "fast_start") starts as lake-ingest does: every broker connected at
start (enable.sparse.connections=false) and, in the assignment callback, partitions without a
committed offset given auto.offset.reset's position at once (ingest_core/source/assign.py),
where librdkafka waits 100 ms before it resets them (bench/startup.py).
"""
import concurrent.futures
import json
import sys
import time

import pyarrow as pa
import pyarrow.json as pa_json

from confluent_kafka import Consumer
from bench_result import report


def main(spec: dict) -> int:
    config = {"bootstrap.servers": spec["bootstrap"], "group.id": spec["group"],
              "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "partition.assignment.strategy": "cooperative-sticky"}
    if not spec.get("librdkafka_defaults"):  # the `ceiling-defaults` contender leaves prefetch at librdkafka's defaults
        # 16 MiB, not lake-ingest's 8 MiB: with 8 MiB this loop, which does nothing else,
        # reads 10-15 % slower, while lake-ingest, bound by its own CPU, does not; the ceiling
        # stays the faster of the two.
        # fetch.wait.max.ms as lake-ingest's: it can only help a loop that never pauses a
        # partition (the broker holds a fetch only while its partitions have nothing).
        config.update({"queued.max.messages.kbytes": 16384, "fetch.max.bytes": 16777216,
                       "fetch.queue.backoff.ms": 10, "fetch.wait.max.ms": 100})
    if spec.get("fast_start"):
        config["enable.sparse.connections"] = False
    consumer = Consumer(config)
    assigned_at = []

    def note(_consumer, _partitions) -> None:
        assigned_at.append(time.time())

    if spec.get("fast_start"):  # lake-ingest's own callback (on PYTHONPATH for the ceilings, as for lake-ingest)
        from ingest_core.source.assign import StartPositions

        consumer.subscribe([spec["topic"]], on_assign=StartPositions.from_config(config, then=note))
    else:
        consumer.subscribe([spec["topic"]], on_assign=note)
    expect, seen, value_bytes = spec["expect"], 0, 0
    parse = spec.get("parse_values", False)
    keep = spec.get("keep_values", False) or parse
    # Two threads: pyarrow.json parses with the GIL released, so they run beside the consume loop.
    parsers = concurrent.futures.ThreadPoolExecutor(2) if parse else None
    parses: list[concurrent.futures.Future] = []
    per_batch = max(1, spec.get("batch_messages", 1) // max(1, spec.get("partitions", 1)))
    kept: dict[int, list[bytes]] = {}
    last_message = time.monotonic()
    while seen < expect:
        messages = consumer.consume(spec.get("consume_batch", 5000), 0.5)
        if not messages:
            if time.monotonic() - last_message > spec.get("give_up_s", 60):
                break
            continue
        last_message = time.monotonic()
        for message in messages:
            if message.error() is None:
                value = message.value()
                value_bytes += len(value)
                seen += 1
                if keep:
                    values = kept.setdefault(message.partition(), [])
                    values.append(value)
                    if len(values) >= per_batch:
                        kept[message.partition()] = []
                        if parse:
                            parses.append(parsers.submit(parse_json, values))
    if parse:
        parses.extend(parsers.submit(parse_json, values) for values in kept.values() if values)
        rows = sum(future.result() for future in parses)
        parsers.shutdown()
        if rows != seen:
            print(f"parsed {rows} rows of {seen} values", file=sys.stderr)
            return 1
    consumer.commit(asynchronous=False)  # positions of everything consumed
    code = report(assigned_at, seen, expect, value_bytes=value_bytes)
    consumer.close()
    return code


def parse_json(values: list[bytes]) -> int:
    """One batch's values parsed as lake-ingest's decoder reads them (1 MiB blocks, pyarrow's threads)."""
    table = pa_json.read_json(pa.BufferReader(b"\n".join(values)),
                              read_options=pa_json.ReadOptions(block_size=1 << 20))
    return table.num_rows


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
