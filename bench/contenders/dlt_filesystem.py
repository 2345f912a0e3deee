"""dlt: a Kafka-reading resource into dlt's filesystem destination (local folder), Parquet.

The resource is written here in the shape of dlt's Kafka verified source (a confluent-kafka
consume(batch) loop yielding one list of dicts per batch, json.loads per message), because
that source is installed with `dlt init`, which fetches from GitHub (not reachable here).
Differences from it: the values are parsed into columns (the verified source keeps them as
one string), offsets are committed to the consumer group after each load (it keeps them in
dlt state), and max_table_nesting=0 keeps nested values in one table as JSON text instead of
child tables (less work for dlt, not more). Each pipeline.run() loads `batch_messages`
records: extract → normalize → load, then commit.
"""
import json
import os
import sys
import time

from bench_result import report


def main(spec: dict) -> int:
    # dlt reads its configuration from the environment; these must be set before import.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("NORMALIZE__DATA_WRITER__COMPRESSION", "zstd")
    os.environ.setdefault("DATA_WRITER__COMPRESSION", "zstd")
    import dlt
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": spec["group"],
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    assigned_at = []
    consumer.subscribe([spec["topic"]], on_assign=lambda _c, _p: assigned_at.append(time.time()))
    expect = spec["expect"]
    state = {"seen": 0, "idle_since": time.monotonic()}

    @dlt.resource(name="events", write_disposition="append", max_table_nesting=0)
    def messages(limit: int):
        taken = 0
        while taken < limit and state["seen"] < expect:
            polled = consumer.consume(5000, 0.5)
            if not polled:
                if time.monotonic() - state["idle_since"] > spec.get("give_up_s", 60):
                    return
                continue
            state["idle_since"] = time.monotonic()
            batch = []
            for message in polled:
                if message.error() is not None:
                    continue
                row = json.loads(message.value())
                key = message.key()
                row["_topic"] = message.topic()
                row["_partition"] = message.partition()
                row["_offset"] = message.offset()
                row["_timestamp"] = message.timestamp()[1]
                row["_key"] = key.decode() if key is not None else None
                batch.append(row)
            taken += len(batch)
            state["seen"] += len(batch)
            yield batch

    pipeline = dlt.pipeline(pipeline_name=f"bench_{spec['group'].replace('-', '_')}",
                            destination=dlt.destinations.filesystem(bucket_url=f"file://{spec['out']}"),
                            dataset_name="bench", pipelines_dir=spec["pipelines_dir"])
    loads = 0
    while state["seen"] < expect:
        before = state["seen"]
        pipeline.run(messages(spec["batch_messages"]), loader_file_format="parquet")
        consumer.commit(asynchronous=False)  # everything consumed so far is loaded
        loads += 1
        if state["seen"] == before:
            break
    code = report(assigned_at, state["seen"], expect, loads=loads)
    consumer.close()
    return code


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
