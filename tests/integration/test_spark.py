"""Spark's Structured Streaming file source reads what the real `ingest run` landed.

The reader is `ingest autoloader`'s open-source snippet itself (`spark_reader(...).open(spark)`
runs the printed code). Stores: local disk, S3 on the moto server read through s3a, and ADLS Gen2
(Blob API) on Azurite read through abfs (hadoop-aws and hadoop-azure from Maven Central,
deploy/local/spark_jars.py), not through a local copy.
"""
from __future__ import annotations

import gzip
import io
import json
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from ingest_core.commands.autoloader import spark_reader
from ingest_core.config import load_settings
from ingest_core.sink.ledger import Ledger

from .conftest import make_lake
from .lake import create_topic, data_files, ingest, run_until_idle, write_config
from .spark import run_available_now, spark_session, use_azure_account_key, use_s3_credentials

pytestmark = pytest.mark.slow

PAYLOAD = ("order_id BIGINT, customer STRING, amount DOUBLE, currency STRING, "
           "items ARRAY<STRUCT<sku: STRING, qty: BIGINT>>, channel STRING")
START_MS = int(datetime(2026, 11, 22, 22, 30, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000


@pytest.fixture(scope="session")
def spark():
    return spark_session()


def produce(bootstrap: str, topic: str, count: int, start: int, first_ms: int, span_ms: int,
            bad_every: int = 0, channel: str | None = None, rate: float | None = None) -> dict[tuple[int, int], int]:
    """`count` order events round-robin over 3 partitions, record timestamps spread evenly over
    `span_ms` (so batches cross hour and day folders); every `bad_every`-th value is not JSON
    (a dead letter); paced at `rate` messages/s if given. Returns {(partition, offset): timestamp_ms} of the good ones."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    good: dict[tuple[int, int], int] = {}
    errors: list = []
    began = time.monotonic()

    def delivered(err, msg, bad: bool):
        if err is not None:
            errors.append(err)
        elif not bad:
            good[(msg.partition(), msg.offset())] = msg.timestamp()[1]

    for i in range(start, start + count):
        bad = bool(bad_every) and i % bad_every == bad_every - 1
        event = {"order_id": i, "customer": f"c{i % 97}", "amount": round(i * 1.25, 2) + 0.5, "currency": "EUR",
                 "items": [{"sku": f"sku-{i % 13}", "qty": 1 + i % 3}]}
        if channel:
            event["channel"] = channel
        producer.produce(topic, b"{not json" if bad else json.dumps(event).encode(), key=f"c{i % 97}".encode(),
                         partition=i % 3, timestamp=first_ms + (i - start) * span_ms // count,
                         on_delivery=lambda err, msg, bad=bad: delivered(err, msg, bad))
        if i % 100 == 0:
            producer.poll(0)
            if rate:
                time.sleep(max(0.0, began + (i - start) / rate - time.monotonic()))
    assert producer.flush(30) == 0 and not errors, errors
    return good


def readable_lake(spark, kafka, topic: str, store: str, request, tmp_path):
    """A new lake on `store` with Spark given its credentials, and a new 3-partition topic."""
    lake = make_lake(store, request, tmp_path)
    if store == "s3":
        use_s3_credentials(spark, lake.server.ACCESS_KEY, lake.server.SECRET_KEY)
    if store == "azure":
        use_azure_account_key(spark, lake.server.ACCOUNT_NAME, lake.server.ACCOUNT_KEY)
    create_topic(kafka.bootstrap, topic, partitions=3)
    return lake


def rows_per_file(store, fmt: str) -> Counter:
    """relative path -> rows in that data file, read with pyarrow / gzip, not Spark."""
    counts = Counter()
    for path in data_files(store):
        data = store.read(path)
        if fmt == "parquet":
            counts[path] = pq.read_metadata(io.BytesIO(data)).num_rows
        else:
            counts[path] = len((gzip.decompress(data) if path.endswith(".gz") else data).splitlines())
    return counts


def plant_decoys(store, fmt: str) -> list[str]:
    """Copies of a real data file under names a reader must skip: the local publisher's temp name,
    a hidden name with the data extension, and one under `_ingest/`. Read, they would duplicate rows."""
    original = data_files(store)[0]
    folder, name = original.rsplit("/", 1)
    data = store.read(original)
    decoys = [f"{folder}/.{name}.0123456789abcdef.tmp", f"{folder}/.{name}", f"_ingest/decoy/{folder}/{name}"]
    for decoy in decoys:
        store.fs.makedirs(store.full_path(decoy).rsplit("/", 1)[0], exist_ok=True)  # a no-op on object stores
        store.fs.pipe_file(store.full_path(decoy), data)
    return decoys


def check_run(run, expected: dict[tuple[int, int], int], file_rows: Counter, topic: str) -> None:
    """Every expected offset read exactly once, nothing else; each file read whole; columns right."""
    pairs = run.pairs
    assert [p for p, n in pairs.items() if n > 1] == [], "offsets read twice"
    assert set(pairs) == set(expected), (len(pairs), len(expected))
    assert {f: n for f, n in run.files.items() if file_rows[f] != n} == {}, "files read partially"
    for name in run.files:
        assert not any(part.startswith(("_", ".")) for part in name.split("/")), f"read internal file {name}"
    for row in run.rows:
        stamp = expected[(row["_partition"], row["_offset"])]
        when = datetime.fromtimestamp(stamp / 1000, UTC)
        assert int(row["_timestamp"].replace(tzinfo=UTC).timestamp() * 1000) == stamp
        assert str(row["dt"]) == when.strftime("%Y-%m-%d") and int(row["hour"]) == when.hour, row
        assert row["_topic"] == topic and row["_key"] == f"c{row['order_id'] % 97}"


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
@pytest.mark.parametrize("store", ["local", "s3", "azure"])
def test_file_stream_reads_each_new_file_once_with_explicit_and_inferred_schema(
        spark, kafka, topic_name, tmp_path, request, fmt, store):
    lake = readable_lake(spark, kafka, topic_name, store, request, tmp_path)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, fmt=fmt, batch={"max_records": 400},
                          storage_options=lake.storage_options)
    settings = load_settings(config)
    explicit = spark_reader(settings, PAYLOAD)
    assert explicit.path.startswith({"local": "file:///", "s3": "s3a://", "azure": "abfs://"}[store])

    # Round 1: 2,400 messages over 3 hours across midnight, every 400th one a dead letter.
    first = produce(kafka.bootstrap, topic_name, 2400, 0, START_MS, 3 * HOUR_MS, bad_every=400)
    assert run_until_idle(config).returncode == 0
    listed = lake.store.list_files()
    assert any(p.startswith("_dlq/") for p in listed) and any(p.startswith("_ingest/") for p in listed)
    decoys = plant_decoys(lake.store, fmt)
    files_1 = rows_per_file(lake.store, fmt)
    assert {p.split("/")[0] for p in files_1} == {"dt=2026-11-22", "dt=2026-11-23"}

    run_1 = run_available_now(explicit.open(spark), tmp_path / "checkpoint", explicit.path)
    check_run(run_1, first, files_1, topic_name)
    assert set(run_1.files) == set(files_1)
    assert not set(decoys) & set(run_1.files)

    # Round 2: 1,200 later messages with a new field; the same checkpoint reads only the new files.
    second = produce(kafka.bootstrap, topic_name, 1200, 2400, START_MS + 3 * HOUR_MS, HOUR_MS, channel="web")
    round_2 = run_until_idle(config)
    assert round_2.returncode == 0, round_2.stderr[-4000:]
    files_2 = rows_per_file(lake.store, fmt)
    new_files = set(files_2) - set(files_1)
    assert new_files and set(files_1) <= set(files_2), round_2.stderr[-6000:]

    run_2 = run_available_now(explicit.open(spark), tmp_path / "checkpoint", explicit.path)
    check_run(run_2, second, files_2, topic_name)
    assert set(run_2.files) == new_files
    assert {r["channel"] for r in run_2.rows} == {"web"}

    # Inferred schema, new checkpoint: everything once, partition types and the new column discovered.
    inferred = spark_reader(settings)
    assert inferred.schema is None
    run_all = run_available_now(inferred.open(spark), tmp_path / "checkpoint-inferred", inferred.path)
    check_run(run_all, {**first, **second}, files_2, topic_name)
    types = {f.name: f.dataType.simpleString() for f in run_all.schema.fields}
    assert (types["dt"], types["hour"], types["_timestamp"], types["_offset"]) == ("date", "int", "timestamp", "bigint")
    assert types["_partition"] == ("int" if fmt == "parquet" else "bigint")  # JSON numbers infer as BIGINT
    assert types["channel"] == "string"
    channels = Counter(r["channel"] for r in run_all.rows)
    assert channels == {None: len(first), "web": len(second)}
    print(f"\n{store}/{fmt}: {len(files_2)} files; run 1 {run_1.seconds:.1f}s, run 2 {run_2.seconds:.1f}s, "
          f"inferred {run_all.seconds:.1f}s")


def torn_batches(store, topic: str) -> list:
    """Batch markers some of whose files are not published: a crash in the middle of publishing."""
    present = set(store.list_files())
    return [m for m in Ledger(store).all_markers(topic) if not all(f.path in present for f in m.files)]


@pytest.mark.parametrize("store,fmt", [("local", "parquet"), ("s3", "ndjson")])
def test_crash_mid_publish_spark_reads_nothing_partially_or_twice(
        spark, kafka, topic_name, tmp_path, request, store, fmt):
    lake = readable_lake(spark, kafka, topic_name, store, request, tmp_path)
    produced = produce(kafka.bootstrap, topic_name, 2400, 0, START_MS, 3 * HOUR_MS)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, lake.url, fmt=fmt, batch={"max_records": 300},
                          storage_options=lake.storage_options)
    reader = spark_reader(load_settings(config), PAYLOAD)
    checkpoint = tmp_path / "checkpoint"
    runs = []

    # 1. Killed (SIGKILL, by the fault injector) after the first file of a multi-file batch is published.
    crashed = ingest("run", str(config), "--log-format", "json", env={"INGEST_FAULTS": "between_files:1"})
    crashed.communicate(timeout=120)
    assert crashed.returncode == -signal.SIGKILL
    torn = torn_batches(lake.store, topic_name)  # one per publisher thread caught mid-batch
    assert torn, "the crash should have left a batch half published"
    published_at_crash = set(data_files(lake.store))
    runs.append(run_available_now(reader.open(spark), checkpoint, reader.path))

    # 2. Restarted: once the replay has completed the torn batches (after the killed member's session
    # ends), more messages arrive, and the process is SIGKILLed mid-run.
    torn_files = {f.path for m in torn for f in m.files}
    killed = ingest("run", str(config), "--log-format", "json")
    deadline = time.monotonic() + 60
    while not torn_files <= set(data_files(lake.store)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert torn_files <= set(data_files(lake.store)), "the replay completed the batches"
    more: dict = {}
    producer = threading.Thread(target=lambda: more.update(
        produce(kafka.bootstrap, topic_name, 1500, 2400, START_MS + 3 * HOUR_MS, HOUR_MS, rate=300)))
    producer.start()
    replayed = len(data_files(lake.store))
    deadline = time.monotonic() + 30
    while len(data_files(lake.store)) < replayed + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    runs.append(run_available_now(reader.open(spark), checkpoint, reader.path))
    producer.join()
    produced.update(more)

    # 3. Restarted until the topic is drained. Idle time counts only once the partitions are ours (after the
    # killed member's 6 s session ends) and each has been read to its end.
    assert run_until_idle(config, idle="10s").returncode == 0
    runs.append(run_available_now(reader.open(spark), checkpoint, reader.path))

    assert all(run.pairs for run in runs), [len(run.rows) for run in runs]  # each run read something new
    file_rows = rows_per_file(lake.store, fmt)
    read = Counter()
    for run in runs:
        assert {f: n for f, n in run.files.items() if file_rows[f] != n} == {}, "a file was read partially"
        read.update(run.pairs)
    assert sum(sum(r.files.values()) for r in runs) == sum(file_rows.values())
    assert sum(len(r.files) for r in runs) == len(file_rows), "a file was read in two runs"
    assert [p for p, n in read.items() if n > 1] == [] and set(read) == set(produced)
    # Spark read the half-published batches' files that were there, and the rest after the replay.
    assert set(runs[0].files) == published_at_crash
    missing = {f.path for m in torn for f in m.files} - published_at_crash
    assert missing and not missing & set(runs[0].files)
