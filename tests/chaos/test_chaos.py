"""Chaos: consumers of one group under steady traffic with poison messages mixed in, killed
(SIGKILL) by the test, stalled past their session (SIGSTOP, zombies), stopped (SIGTERM), kept
away long enough for their partitions to move, and crashing by themselves between marker,
files and commit (INGEST_FAULTS); restarted every time. Run three times: dynamic membership
(cooperative-sticky), static membership (`group.instance.id`, which takes range), and the consumer
group protocol of KIP-848 (`group.protocol: consumer`: the broker assigns, with the 6 s session the
local broker gives such groups).

The test counts what it did itself: SIGKILLs sent to live `ingest run` processes, and
rebalances as the broker shows them (the partition -> member map of the group changed, sampled
from describe_consumer_groups). At the end the lake must hold every produced record that is
not poison exactly once (pyarrow), every poison message exactly in the dead letters,
`ingest audit --deep --json` must exit 0, and Spark's file stream source, run once half way and
once at the end on one checkpoint, must read every record once.

CI form: 200,000 records over 12 partitions, >= 20 SIGKILLs, >= 10 rebalances.
The full form (the benchmark machine): CHAOS_FULL=1 pytest tests/chaos -s
"""
from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer
from integration.group_view import GroupView
from integration.lake import REPO, create_topic, landed_rows, write_config
from integration.spark import spark_session

from ingest_core.commands.autoloader import spark_reader
from ingest_core.config import load_settings
from ingest_core.sink.storage import LakeStore

pytestmark = pytest.mark.slow

FULL = os.environ.get("CHAOS_FULL") == "1"
MESSAGES = 1_000_000 if FULL else 200_000
PARTITIONS = 24 if FULL else 12
RATE = 5_000 if FULL else 2_500  # messages per second, steady
MIN_KILLS = 40 if FULL else 20
MIN_REBALANCES = 20 if FULL else 10
CONSUMERS = 3
POISON_EVERY = 997  # message i is poison (not JSON) when i % POISON_EVERY == 7
SESSION_MS = 6000
FAULTS = "after_marker:0.01,between_files:0.01,after_files:0.01,before_commit:0.01,after_commit:0.005"


def is_poison(i: int) -> bool:
    return i % POISON_EVERY == 7


def produce(bootstrap: str, topic: str, halfway: threading.Event) -> None:
    """MESSAGES records round-robin over PARTITIONS at RATE/s: record i is offset i // PARTITIONS of
    partition i % PARTITIONS (one idempotent producer keeps that order)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    began = time.monotonic()
    for i in range(MESSAGES):
        value = b'{"order_id": ' + str(i).encode() + b', "broken' if is_poison(i) else json.dumps(
            {"order_id": i, "customer": f"c{i % 97}", "amount": round(i * 1.25, 2), "currency": "EUR",
             "items": [{"sku": f"sku-{i % 13}", "qty": 1 + i % 3}]}).encode()
        while True:
            try:
                producer.produce(topic, value, key=f"c{i % 97}".encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 500 == 499:
            producer.poll(0)
            ahead = (i + 1) / RATE - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        if i == MESSAGES // 2:
            halfway.set()
    assert producer.flush(60) == 0


def expected_landed() -> set[tuple[int, int]]:
    return {(i % PARTITIONS, i // PARTITIONS) for i in range(MESSAGES) if not is_poison(i)}


def expected_poison() -> set[tuple[int, int]]:
    return {(i % PARTITIONS, i // PARTITIONS) for i in range(MESSAGES) if is_poison(i)}


class Member:
    """One `ingest run` process slot, with its own config (its own group.instance.id when static)."""

    def __init__(self, index: int, config: Path, log_dir: Path):
        self.index = index
        self.config = config
        self.log_path = log_dir / f"member-{index}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ingest_core", "run", str(self.config), "--log-format", "json"],
                cwd=REPO, stdout=log, stderr=log, env={**os.environ, "INGEST_FAULTS": FAULTS},
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> bool:
        """SIGKILL; True if it was alive (a real kill of a running process)."""
        if not self.alive():
            return False
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return True


class RebalanceCounter(threading.Thread):
    """Samples the group's partition -> member map from the broker; counts the times it changed."""

    def __init__(self, view: GroupView):
        super().__init__(daemon=True)
        self.view = view
        self.changes = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        last = None
        while not self.stopping.is_set():
            try:
                owners = self.view.owners()
            except Exception:  # noqa: BLE001 - the coordinator busy mid-rebalance: sample again
                owners = None
            if owners and owners != last:
                if last is not None:
                    self.changes += 1
                last = owners
            self.stopping.wait(0.3)


class SparkReads(threading.Thread):
    """Spark's file stream source over the lake, run (availableNow) on one checkpoint whenever asked."""

    def __init__(self, config: Path, checkpoint: Path):
        super().__init__(daemon=True)
        self.reader = spark_reader(load_settings(config))
        self.checkpoint = checkpoint
        self.pairs: Counter = Counter()
        self.runs = 0

    def run(self) -> None:
        self.read_new_files()

    def read_new_files(self) -> None:
        pairs = self.pairs

        def collect(batch, _batch_id: int) -> None:
            pairs.update((int(r[0]), int(r[1])) for r in batch.select("_partition", "_offset").collect())

        query = (self.reader.open(spark_session()).writeStream.foreachBatch(collect)
                 .option("checkpointLocation", str(self.checkpoint)).trigger(availableNow=True).start())
        try:
            assert query.awaitTermination(600), "the availableNow query did not finish in 600 s"
        finally:
            if query.isActive:
                query.stop()
        self.runs += 1


def stuck_report(group: GroupView, ends: dict[int, int], members: list[Member], lines: int = 25) -> str:
    """Why the group did not catch up: the partitions short of their end, who owns them (the broker's
    view), the last lines each member logged about its partitions, and each live member's thread
    stacks (SIGUSR1)."""
    before = {}
    for member in members:
        if member.alive():
            before[member.index] = len(member.log_path.read_text(errors="replace"))
            member.process.send_signal(signal.SIGUSR1)  # `ingest run` writes every thread's stack to its log
    time.sleep(1)
    committed = group.committed()
    short = {p: (committed.get(p), end) for p, end in ends.items() if committed.get(p) != end}
    report = [f"the group did not catch up: partitions (committed, end) {short}; owners {group.owners()}"]
    for member in members:
        text = member.log_path.read_text(errors="replace") if member.log_path.exists() else ""
        wanted = [line for line in text.splitlines()
                  if any(f'"event": "{e}"' in line for e in ("assigned", "revoked", "lost", "replay", "storage_retry",
                                                              "commit_failed", "drain_gave_up", "adopt_marker"))
                  or '"level": "error"' in line]
        report.append(f"--- member {member.index} (alive: {member.alive()}, starts: {member.starts}):")
        report.extend(line[:400] for line in wanted[-lines:])
        stacks = [line for line in text[before.get(member.index, len(text)):].splitlines() if not line.startswith("{")]
        report.extend(stacks[-120:])
    return "\n".join(report)


def dead_letters(lake_root: Path) -> Counter:
    found: Counter = Counter()
    for path in (lake_root / "_dlq").rglob("*.ndjson"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            found[(row["partition"], row["offset"])] += 1
            assert base64.b64decode(row["value_base64"]).endswith(b'"broken')
    return found


@pytest.mark.parametrize("membership", ["dynamic", "static", "consumer-protocol"])
def test_exactly_once_under_kills_zombies_rebalances_and_poison(kafka, topic_name, tmp_path, membership):
    rng = random.Random(20261206)
    create_topic(kafka.bootstrap, topic_name, partitions=PARTITIONS)
    lake_root = tmp_path / "lake"
    members = []
    for i in range(CONSUMERS):
        folder = tmp_path / f"member-{i}"
        folder.mkdir()
        kafka_props = {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500}
        if membership == "static":
            kafka_props["group.instance.id"] = f"{topic_name}-member-{i}"
        elif membership == "consumer-protocol":  # KIP-848: the broker assigns, and keeps the 6 s session itself
            kafka_props = {"group.protocol": "consumer"}
        config = write_config(folder, topic_name, kafka.bootstrap, f"file://{lake_root}",
                              batch={"max_records": 2000, "max_age": "2s"}, kafka=kafka_props,
                              extra=f"dead_letter: {{url: 'file://{lake_root}/_dlq'}}\n")
        members.append(Member(i, config, tmp_path))
    try:
        run_chaos(rng, kafka, topic_name, members, lake_root, tmp_path, membership)
    finally:  # a failed assertion must not leave members running (or stopped)
        for member in members:
            if member.alive():
                member.process.send_signal(signal.SIGCONT)
                member.kill()


def run_chaos(rng, kafka, topic_name, members, lake_root, tmp_path, membership):
    group = GroupView(kafka.bootstrap, f"ingest-{topic_name}", topic_name, PARTITIONS)
    rebalances = RebalanceCounter(group)
    halfway = threading.Event()
    producer = threading.Thread(target=produce, args=(kafka.bootstrap, topic_name, halfway), daemon=True)
    spark = SparkReads(members[0].config, tmp_path / "spark-checkpoint")
    for member in members:
        member.start()
    rebalances.start()
    producer.start()

    actions = Counter()
    began = time.monotonic()
    while producer.is_alive() or actions["SIGKILL"] < MIN_KILLS or rebalances.changes < MIN_REBALANCES:
        assert time.monotonic() - began < 900, f"chaos did not reach its counts: {dict(actions)}, " \
                                               f"rebalances {rebalances.changes}"
        if halfway.is_set() and spark.ident is None:
            spark.start()  # the first incremental read, while the chaos goes on
        time.sleep(rng.uniform(0.8, 2.0))
        for member in members:  # injected faults end members by themselves: restart them
            if not member.alive():
                actions["self-crash restarts"] += 1
                member.start()
        victim = rng.choice(members)
        roll = rng.random()
        if roll < 0.6:
            if victim.kill():
                actions["SIGKILL"] += 1
            time.sleep(rng.uniform(0, 1.0))
            victim.start()
        elif roll < 0.75:
            # Away longer than its session: its partitions move to the others, and back when it returns.
            if victim.kill():
                actions["SIGKILL"] += 1
            actions["away past the session"] += 1
            time.sleep(SESSION_MS / 1000 + 2)
            victim.start()
        elif roll < 0.85:
            victim.process.send_signal(signal.SIGSTOP)  # stalled past session.timeout.ms: a zombie
            actions["SIGSTOP (zombie)"] += 1
            time.sleep(SESSION_MS / 1000 + 2)
            victim.process.send_signal(signal.SIGCONT)
        else:
            victim.process.send_signal(signal.SIGTERM)
            victim.process.wait(timeout=90)
            actions["SIGTERM"] += 1
            victim.start()
    producer.join()

    # Calm: no more chaos (faults stay on); wait until the broker shows every partition committed to its end.
    everything = Counter(p for p, _ in expected_landed() | expected_poison())
    deadline = time.monotonic() + 300
    while group.committed() != dict(everything):
        assert time.monotonic() < deadline, stuck_report(group, dict(everything), members)
        for member in members:
            if not member.alive():
                actions["self-crash restarts"] += 1
                member.start()
        time.sleep(1)
    rebalances.stopping.set()
    for member in members:
        member.process.send_signal(signal.SIGTERM)
    for member in members:
        member.process.wait(timeout=90)

    landed = landed_rows(LakeStore.open(f"file://{lake_root}"), "parquet")
    duplicates = len(landed) - len(set(landed))
    missing = expected_landed() - set(landed)
    poison = dead_letters(lake_root)
    audit = subprocess.run([sys.executable, "-m", "ingest_core", "audit", str(members[0].config), "--deep", "--json"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    report = json.loads(audit.stdout) if audit.stdout.strip() else {}
    if spark.ident:
        spark.join()
    mid_run_rows = sum(spark.pairs.values())
    spark.read_new_files()  # the second incremental read, on the same checkpoint

    print(f"\nchaos ({'full' if FULL else 'CI'} form, {membership} membership): {MESSAGES} records at {RATE}/s "
          f"into {PARTITIONS} partitions, {len(expected_poison())} poison")
    print(f"  actions: {dict(actions)}; process starts: {sum(m.starts for m in members)}; "
          f"rebalances seen on the broker: {rebalances.changes}")
    print(f"  lake rows: {len(landed)}, duplicates: {duplicates}, missing: {len(missing)}; dead letters: "
          f"{sum(poison.values())} ({len(poison)} distinct)")
    print(f"  audit --deep: exit {audit.returncode}, rows read {report.get('rows_read')}, findings "
          f"{len(report.get('findings', []))}")
    print(f"  Spark file stream: {mid_run_rows} rows half way, {sum(spark.pairs.values())} in all, "
          f"{len(spark.pairs)} distinct, read twice: {sum(1 for n in spark.pairs.values() if n > 1)}")

    assert duplicates == 0 and not missing and set(landed) == expected_landed()
    assert set(poison) == expected_poison()
    assert audit.returncode == 0 and report["findings"] == [] and report["rows_read"] == len(expected_landed()), \
        audit.stderr[-3000:]
    # The first read started half way through the production; the second, on the same checkpoint,
    # read only what it had not seen (on a slow machine the first may already have seen everything).
    assert mid_run_rows > 0 and spark.runs == 2
    assert set(spark.pairs) == expected_landed() and max(spark.pairs.values()) == 1
    assert actions["SIGKILL"] >= MIN_KILLS and rebalances.changes >= MIN_REBALANCES
