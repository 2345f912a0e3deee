"""Quix Streams' file sink on local disk (LocalFileSink), JSON Lines or Parquet (zstd).

Quix flushes a sink on its checkpoint; `commit_every` is set to the number of records
lake-ingest cuts per flush over all partitions and `commit_interval` high enough never to
fire first, so both write batches of comparable size. `run(count=N, collect=False)`
stops after N messages and then commits its last checkpoint (sink flushed, then offsets).
"""
import json
import os
import sys
import time

from bench_result import report


def main(spec: dict) -> int:
    from quixstreams import Application
    from quixstreams.sinks.community.file.formats import JSONFormat, ParquetFormat
    from quixstreams.sinks.community.file.local import LocalFileSink

    app = Application(broker_address=spec["bootstrap"], consumer_group=spec["group"],
                      auto_offset_reset="earliest", commit_every=spec["batch_messages"],
                      commit_interval=3600.0, loglevel="WARNING", auto_create_topics=False,
                      consumer_extra_config=spec.get("librdkafka") or None)
    fmt = ParquetFormat(compression="zstd") if spec["format"] == "parquet" else JSONFormat()
    # FileSink accepts only [a-zA-Z0-9 ._/] in its directory (no '-'): write below the working directory.
    os.chdir(spec["out"])
    sink = LocalFileSink(directory="", format=fmt)
    topic = app.topic(spec["topic"], value_deserializer="json")
    sdf = app.dataframe(topic)
    sdf.sink(sink)

    assigned_at = []
    on_assign = app._on_assign  # no public hook for the assignment time; wrap the callback run() passes

    def recording_on_assign(consumer, partitions):
        assigned_at.append(time.time())
        return on_assign(consumer, partitions)

    app._on_assign = recording_on_assign
    app.run(count=spec["expect"], collect=False)  # returns after its last checkpoint is committed
    return report(assigned_at, spec["expect"], spec["expect"])


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
