"""Spark on the reader side of tests: one SparkSession per test process, and file-stream
queries run to completion with `trigger(availableNow=True)` into a `foreachBatch` sink
(the memory sink cannot resume from a checkpoint, and resuming is the point).

pyspark 4.x from PyPI runs on the machine's Java 17. The session carries the s3a and abfs
jars of deploy/local/spark_jars.py (fetched from Maven Central on first use), so it reads
`s3a://` lakes on the moto server and `abfs://` lakes on Azurite as well as local ones.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

_session = None


def spark_session():
    """The test process's SparkSession (local[2], UTC, s3a and abfs on the classpath), started on first use."""
    global _session
    if _session is None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # pyspark otherwise resolves the host name
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession
        from spark_jars import ensure_jars  # deploy/local is on sys.path (tests/conftest.py)

        jars = ensure_jars()
        _session = (
            SparkSession.builder.master("local[2]").appName("lake-ingest-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.jars", ",".join(str(j) for j in jars))
            .config("spark.driver.memory", "1g")
            .getOrCreate()
        )
        _session.sparkContext.setLogLevel("ERROR")
        atexit.register(_session.stop)
    return _session


def use_s3_credentials(spark, access_key: str, secret_key: str) -> None:
    """Credentials for s3a, set on the session as a deployment would (spark-defaults, instance role):
    the reader's own options never carry secrets. Short retries so a broken setup fails fast."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider")
    conf.set("fs.s3a.access.key", access_key)
    conf.set("fs.s3a.secret.key", secret_key)
    conf.set("fs.s3a.attempts.maximum", "2")
    conf.set("fs.s3a.retry.limit", "2")


def use_azure_account_key(spark, account: str, key: str) -> None:
    """The storage account's key for abfs, set on the session as a deployment would (spark-defaults,
    a cluster's secret scope): the reader's own options never carry it. Short retries so a broken
    setup fails fast."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set(f"fs.azure.account.key.{account}.dfs.core.windows.net", key)
    conf.set("fs.azure.io.retry.max.retries", "2")


@dataclass
class StreamRun:
    """What one availableNow run of a file-stream query read."""

    rows: list[dict]  # every row, plus `_file`: the relative path of the data file it came from
    batches: int
    schema: object  # the query's pyspark StructType
    seconds: float
    files: Counter = field(default_factory=Counter)  # relative path -> rows read from it

    @property
    def pairs(self) -> Counter:
        """(_partition, _offset) -> how many times it was read."""
        return Counter((int(r["_partition"]), int(r["_offset"])) for r in self.rows)


def run_available_now(df, checkpoint: Path, root: str, timeout: float = 300) -> StreamRun:
    """Run `df` (a file-stream DataFrame over the lake at `root`) with trigger(availableNow=True) on
    `checkpoint` until it has read every file it had not seen, and return what it read."""
    from pyspark.sql import functions as F

    rows: list[dict] = []
    batches: list[int] = []

    def collect(batch, batch_id: int) -> None:
        batches.append(batch_id)
        rows.extend(r.asDict(recursive=True) for r in batch.collect())

    began = time.monotonic()
    query = (df.select("*", F.col("_metadata.file_path").alias("_file"))
             .writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(checkpoint))
             .trigger(availableNow=True).start())
    try:
        finished = query.awaitTermination(timeout)
    finally:
        if query.isActive:
            query.stop()
    assert finished, f"the availableNow query did not finish within {timeout} s"
    prefix = root.rstrip("/") + "/"
    for row in rows:
        path = unquote(row["_file"])
        # Spark normalises file:///x to file:/x; compare paths, not spellings.
        path, base = path.replace("file:///", "file:/"), prefix.replace("file:///", "file:/")
        assert path.startswith(base), f"{path} is outside the lake {base}"
        row["_file"] = path[len(base):]
    run = StreamRun(rows, len(batches), df.schema, time.monotonic() - began)
    run.files = Counter(r["_file"] for r in rows)
    return run
