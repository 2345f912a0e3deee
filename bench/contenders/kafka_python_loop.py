"""A hand-written kafka-python consumer, as users write one: poll, json.loads each value,
add the Kafka metadata, pyarrow Table.from_pylist, write a zstd Parquet file, commit.

One file per batch of `batch_messages` (the same number of records lake-ingest cuts per
flush over all partitions), written to a temporary name and renamed, then commit().
kafka-python's defaults are kept except max_records per poll (5,000, as the others).
"""
import json
import os
import sys
import time
from pathlib import Path

from bench_result import report


def main(spec: dict) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    assigned_at = []

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            assigned_at.append(time.time())

        def on_partitions_revoked(self, revoked):
            pass

    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    consumer = KafkaConsumer(bootstrap_servers=spec["bootstrap"], group_id=spec["group"],
                             auto_offset_reset="earliest", enable_auto_commit=False)
    consumer.subscribe([spec["topic"]], listener=Listener())
    expect, seen, files = spec["expect"], 0, 0
    rows: list[dict] = []
    last_message = time.monotonic()

    def flush():
        nonlocal files, rows
        table = pa.Table.from_pylist(rows)
        temporary = out / f".part-{files:05d}.parquet"
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, out / f"part-{files:05d}.parquet")
        consumer.commit()  # the positions of everything polled, all of it now in files
        files += 1
        rows = []

    while seen < expect:
        polled = consumer.poll(timeout_ms=500, max_records=5000)
        if not polled:
            if time.monotonic() - last_message > spec.get("give_up_s", 60):
                break
            continue
        last_message = time.monotonic()
        for records in polled.values():
            for record in records:
                row = json.loads(record.value)
                row["_topic"] = record.topic
                row["_partition"] = record.partition
                row["_offset"] = record.offset
                row["_timestamp"] = record.timestamp
                row["_key"] = record.key.decode() if record.key is not None else None
                rows.append(row)
                seen += 1
        if len(rows) >= spec["batch_messages"]:
            flush()
    if rows:
        flush()
    code = report(assigned_at, seen, expect, files=files)
    consumer.close()
    return code


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
