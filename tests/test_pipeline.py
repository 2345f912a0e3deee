"""The loop against a fake consumer and a real local lake folder."""
from __future__ import annotations

import concurrent.futures
import threading
import time

import pyarrow.dataset as ds
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from fakes import Clock, FakeConsumer, PartitionEnd, json_messages

from ingest_core.batching.buffer import FlushPolicy
from ingest_core.flow import Pipeline
from ingest_core.retry import Backoff
from ingest_core.settings import Settings
from ingest_core.sink.allocator import FreedMemory
from ingest_core.sink.deadletter import DeadLetterFiles
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.ledger import Ledger
from ingest_core.sink.storage import LakeStore, StorageError

TOPIC = "orders"


class ImmediateExecutor(concurrent.futures.Executor):
    """Runs storage jobs at submit time, so unit tests are deterministic."""

    def submit(self, fn, *args, **kwargs):
        future = concurrent.futures.Future()
        run_into(future, fn, *args, **kwargs)
        return future


def run_into(future: concurrent.futures.Future, fn, *args, **kwargs) -> None:
    """Run a storage job and put its outcome in `future`, as a publisher thread would."""
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - handed to the pipeline like a thread would
        future.set_exception(error)


class FlakyStore(LakeStore):
    broken = False

    def publish(self, relative, data):
        if self.broken:
            raise StorageError("connection refused", permanent=False)
        return super().publish(relative, data)


def make(tmp_path, consumer, max_records=10, max_age=60.0, clock=None, fmt="parquet", executor=None,
         max_bytes=1 << 30):
    settings = Settings.model_validate({"topic": TOPIC, "output": {"url": f"file://{tmp_path}/lake", "format": fmt}})
    store = FlakyStore.open(settings.output.url)
    store.__class__ = FlakyStore
    pipeline = Pipeline(TOPIC, consumer, BatchEncoder(settings), store, Ledger(store),
                        DeadLetterFiles(LakeStore.open(f"file://{tmp_path}/lake/_dlq")),
                        FlushPolicy(max_records, max_bytes, max_age), executor=executor or ImmediateExecutor(),
                        clock=clock or Clock(), backoff=Backoff(0.1, 1.0))
    consumer.assign_all(pipeline)
    return pipeline, store


def landed(tmp_path) -> list[tuple[int, int]]:
    table = ds.dataset(f"{tmp_path}/lake", format="parquet", partitioning="hive",
                       exclude_invalid_files=False).to_table(columns=["_partition", "_offset"])
    return sorted(zip(table.column("_partition").to_pylist(), table.column("_offset").to_pylist(), strict=False))


def spin(pipeline, turns=5):
    for _ in range(turns):
        messages = pipeline.consumer.consume(1000, 0)
        pipeline.accept(messages, pipeline.clock())
        pipeline.turn(pipeline.clock())


def test_count_flush_publishes_then_commits_end_plus_one(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 25), 1: json_messages(TOPIC, 1, 5)})
    pipeline, _ = make(tmp_path, consumer, max_records=10)
    spin(pipeline)
    assert consumer.committed_offsets == {0: 20}
    assert landed(tmp_path) == [(0, i) for i in range(20)]
    assert pipeline.shutdown(timeout=1)
    assert consumer.committed_offsets == {0: 25, 1: 5}
    assert landed(tmp_path) == sorted([(0, i) for i in range(25)] + [(1, i) for i in range(5)])


def test_idle_partition_flushes_after_max_age(tmp_path):
    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3)})
    pipeline, _ = make(tmp_path, consumer, max_records=100, max_age=30, clock=clock)
    spin(pipeline)
    assert consumer.committed_offsets == {}
    clock.now += 31
    spin(pipeline, 1)
    assert consumer.committed_offsets == {0: 3}


def test_storage_outage_pauses_retries_and_never_commits_early(tmp_path):
    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10)})
    pipeline, store = make(tmp_path, consumer, max_records=10, clock=clock)
    store.broken = True
    spin(pipeline)
    assert consumer.committed_offsets == {} and consumer.paused == {0}
    assert pipeline.states[0].pending is not None and pipeline.stats.storage_retries >= 1
    clock.now += 5
    spin(pipeline)
    assert consumer.committed_offsets == {}
    store.broken = False
    clock.now += 5
    spin(pipeline)
    assert consumer.committed_offsets == {0: 10} and consumer.paused == set()
    assert landed(tmp_path) == [(0, i) for i in range(10)]


class BehindConsumer(FakeConsumer):
    """Reports a high watermark of `high` for every partition: messages wait past what was consumed."""
    high: int = 1000

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        return (0, self.high)


def test_resumed_after_every_partition_was_paused_fetching_restarts_where_each_stands(tmp_path):
    """With every partition paused librdkafka's fetcher sleeps up to a second and a resume does not
    wake it (bench/pause_resume.py); a seek to each resumed partition's position does."""
    clock = Clock()
    consumer = BehindConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10), 1: json_messages(TOPIC, 1, 10)})
    pipeline, store = make(tmp_path, consumer, max_records=10, clock=clock)
    store.broken = True
    spin(pipeline)
    assert consumer.paused == {0, 1} and consumer.seeks == []
    store.broken = False
    clock.now += 5
    spin(pipeline)
    assert consumer.paused == set() and sorted(consumer.seeks) == [(0, 10), (1, 10)]
    assert consumer.committed_offsets == {0: 10, 1: 10}


def test_resumed_after_every_partition_was_paused_a_caught_up_partition_is_not_sought(tmp_path):
    """After a seek librdkafka reports no position until the next message: a partition with nothing
    waiting keeps its position (and its lag series) instead."""
    clock = Clock()
    consumer = BehindConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10), 1: json_messages(TOPIC, 1, 10)})
    consumer.high = 10  # both read to the end
    pipeline, store = make(tmp_path, consumer, max_records=10, clock=clock)
    store.broken = True
    spin(pipeline)
    assert consumer.paused == {0, 1}
    store.broken = False
    clock.now += 5
    spin(pipeline)
    assert consumer.paused == set() and consumer.seeks == [] and consumer.committed_offsets == {0: 10, 1: 10}


def test_resumed_while_another_partition_was_fetched_nothing_is_restarted(tmp_path):
    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10), 1: []})
    pipeline, store = make(tmp_path, consumer, max_records=10, clock=clock)
    store.broken = True
    spin(pipeline)
    assert consumer.paused == {0}  # partition 1 holds nothing to publish: it is still fetched
    store.broken = False
    clock.now += 5
    spin(pipeline)
    assert consumer.paused == set() and consumer.seeks == [] and consumer.committed_offsets == {0: 10}


def test_partition_paused_when_taken_away_is_resumed_when_assigned_again(tmp_path):
    """librdkafka keeps a partition's pause across losing it and getting it back (the fake does
    too): a partition paused for a storage outage when the group took it away must be fetched
    again once it is assigned back, or it stalls for good while the member looks healthy."""
    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10)})
    pipeline, store = make(tmp_path, consumer, max_records=10, clock=clock)
    store.broken = True
    spin(pipeline)
    assert consumer.paused == {0} and consumer.committed_offsets == {}
    pipeline.on_lost(consumer, [TopicPartition(TOPIC, 0)])  # e.g. a session timeout while stalled
    store.broken = False
    consumer.assign_all(pipeline)  # the group gives it back: fetching restarts at the committed offset
    clock.now += 5
    spin(pipeline)
    assert consumer.paused == set() and consumer.committed_offsets == {0: 10}
    assert landed(tmp_path) == [(0, i) for i in range(10)]


def test_messages_fetched_from_before_the_committed_offset_are_not_landed_again(tmp_path):
    """librdkafka starts fetching from the offset committed when it looked; an earlier owner's
    commit can land after that. The messages before the committed offset are in the lake
    already: the first batch starts at the committed offset, as its marker says."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 12)}, committed_offsets={0: 5})
    pipeline, store = make(tmp_path, consumer, max_records=4)
    consumer.positions[0] = 0  # fetching from before the commit
    spin(pipeline)
    assert pipeline.shutdown(timeout=1)
    assert landed(tmp_path) == [(0, i) for i in range(5, 12)]
    assert consumer.committed_offsets == {0: 12}
    marker = Ledger(store).find(TOPIC, 0, 5)
    assert marker is not None and marker.files[0].first_offset == 5 and marker.end == 8


def test_crash_after_marker_and_partial_publish_is_replayed_exactly(tmp_path):
    messages = json_messages(TOPIC, 0, 12, ts=1_700_000_000_000)
    # Spread rows over two hour folders so one batch makes two files.
    for m in messages[6:]:
        m._timestamp += 3_600_000
    consumer = FakeConsumer(TOPIC, {0: messages})
    pipeline, store = make(tmp_path, consumer, max_records=12)
    spin(pipeline, 1)
    marker = Ledger(store).find(TOPIC, 0, 0)
    assert marker is not None and marker.end == 11 and len(marker.files) == 2
    # Simulate the crash: remove one file and the commit, as if we died mid-publish.
    store.fs.rm(store.full_path(marker.files[1].path))
    consumer.committed_offsets.clear()
    fresh = FakeConsumer(TOPIC, {0: messages})
    replay, _ = make(tmp_path, fresh, max_records=5)  # a different policy must not change the replayed batch
    spin(replay)
    assert fresh.committed_offsets[0] == 12
    assert landed(tmp_path) == [(0, i) for i in range(12)]


def test_a_marker_written_by_another_writer_fixes_the_boundaries(tmp_path):
    messages = json_messages(TOPIC, 0, 20)
    consumer = FakeConsumer(TOPIC, {0: messages}, committed_offsets={0: 0})
    pipeline, store = make(tmp_path, consumer, max_records=20)
    pipeline.turn(pipeline.clock())  # resolved: committed 0, no marker yet
    assert pipeline.states[0].resolved and pipeline.states[0].forced_end is None
    # Another member (e.g. a zombie) claims and publishes batch 0..6 first, then stalls before committing.
    zombie = FakeConsumer(TOPIC, {0: messages[:7]}, committed_offsets={0: 0}, fail_commits=True)
    zombie_pipeline, _ = make(tmp_path, zombie, max_records=7)
    spin(zombie_pipeline, 2)
    spin(pipeline)
    assert consumer.committed_offsets == {0: 7}
    assert pipeline.shutdown(timeout=1) and consumer.committed_offsets == {0: 20}
    markers = sorted((m.base, m.end) for m in Ledger(store).all_markers(TOPIC))
    assert markers == [(0, 6), (7, 19)]
    assert landed(tmp_path) == [(0, i) for i in range(20)]


def test_what_follows_another_writers_batch_is_still_flushed_by_age(tmp_path):
    """After following another writer's shorter batch, the messages past its end wait in the
    buffer: at the end of a topic nothing else will come, so only their age can flush them."""
    clock = Clock()
    messages = json_messages(TOPIC, 0, 12)
    consumer = FakeConsumer(TOPIC, {0: messages}, committed_offsets={0: 0})
    pipeline, _ = make(tmp_path, consumer, max_records=100, max_age=5, clock=clock)
    pipeline.turn(clock())  # resolved: committed 0, no marker yet
    zombie = FakeConsumer(TOPIC, {0: messages[:7]}, committed_offsets={0: 0}, fail_commits=True)
    zombie_pipeline, _ = make(tmp_path, zombie, max_records=7)
    spin(zombie_pipeline, 2)  # claims and publishes 0..6, never commits
    spin(pipeline)
    clock.now += 6
    spin(pipeline)  # due by age: cut 0..11, follows the claim 0..6
    assert consumer.committed_offsets == {0: 7} and list(pipeline.states[0].buffer.offsets) == list(range(7, 12))
    clock.now += 6
    spin(pipeline)  # no shutdown, no new message: the rest goes by age
    assert consumer.committed_offsets == {0: 12}
    assert landed(tmp_path) == [(0, i) for i in range(12)]


def test_failed_commit_is_repaired_by_the_next_owner(tmp_path):
    messages = json_messages(TOPIC, 0, 10)
    consumer = FakeConsumer(TOPIC, {0: messages}, fail_commits=True)
    pipeline, _ = make(tmp_path, consumer, max_records=10)
    spin(pipeline)
    assert consumer.committed_offsets == {}
    fresh = FakeConsumer(TOPIC, {0: messages})
    replay, _ = make(tmp_path, fresh, max_records=3)
    spin(replay)
    assert fresh.committed_offsets == {0: 10}
    assert landed(tmp_path) == [(0, i) for i in range(10)]


def test_poison_messages_go_to_dead_letters_before_commit(tmp_path):
    messages = json_messages(TOPIC, 0, 4)
    messages[1]._value = b"{not json"
    messages[2]._value = None
    consumer = FakeConsumer(TOPIC, {0: messages})
    pipeline, _ = make(tmp_path, consumer, max_records=4)
    spin(pipeline)
    assert consumer.committed_offsets == {0: 4}
    assert landed(tmp_path) == [(0, 0), (0, 3)]
    dlq = (tmp_path / "lake" / "_dlq" / "orders+0+00000000000000000000.ndjson").read_text().splitlines()
    assert len(dlq) == 2 and '"offset": 1' in dlq[0] and "invalid JSON" in dlq[0] and "tombstone" in dlq[1]


class BlockingStore(LakeStore):
    release = threading.Event()

    def publish(self, relative, data):
        self.release.wait(timeout=30)
        return super().publish(relative, data)


def spin_until(pipeline, condition, seconds: float) -> int:
    turns, deadline = 0, time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        spin(pipeline, 1)
        turns += 1
        time.sleep(0.01)
    return turns


def test_a_hanging_store_does_not_stop_the_loop_from_polling(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 25)})
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pipeline, store = make(tmp_path, consumer, max_records=10, executor=pool)
    store.__class__ = BlockingStore
    BlockingStore.release.clear()
    state = pipeline.states[0]
    spin_until(pipeline, lambda: state.job_kind == "publish", 10)
    # The publish hangs, yet every turn (consume + turn) returns at once.
    turns = spin_until(pipeline, lambda: False, 1.0)
    assert turns > 20
    assert state.job is not None and not state.job.done() and consumer.committed_offsets == {}
    # The next batch is full while the first is stuck: the partition is paused (bounded memory).
    assert len(state.buffer) == 15 and consumer.paused == {0}
    BlockingStore.release.set()
    spin_until(pipeline, lambda: consumer.committed_offsets == {0: 20}, 10)
    assert consumer.committed_offsets == {0: 20} and consumer.paused == set()
    assert landed(tmp_path) == [(0, i) for i in range(20)]
    pool.shutdown()


def test_schema_registry_outage_retries_the_same_batch_and_dead_letters_nothing(tmp_path):
    from ingest_core.source.decoded import DecodeUnavailable

    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10)})
    pipeline, _ = make(tmp_path, consumer, max_records=10, clock=clock)
    real_encode = pipeline.encoder.encode
    calls = []

    def flaky_encode(batch):
        calls.append((batch.base, batch.end))
        if len(calls) < 3:
            raise DecodeUnavailable("schema registry: connection refused")
        return real_encode(batch)

    pipeline.encoder.encode = flaky_encode
    spin(pipeline)
    assert consumer.committed_offsets == {} and consumer.paused == {0} and pipeline.stats.storage_retries == 1
    for _ in range(3):
        clock.now += 5
        spin(pipeline)
    assert calls == [(0, 9)] * 3  # the same batch each time
    assert consumer.committed_offsets == {0: 10} and consumer.paused == set()
    assert landed(tmp_path) == [(0, i) for i in range(10)]
    assert not (tmp_path / "lake" / "_dlq").exists()


def test_a_commit_refused_by_a_rebalance_is_retried_while_we_keep_the_partition(tmp_path):
    clock = Clock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10)}, fail_commits=True)
    pipeline, _ = make(tmp_path, consumer, max_records=10, clock=clock)
    spin(pipeline)
    assert consumer.committed_offsets == {} and pipeline.states[0].commit_due == 10
    consumer.fail_commits = False  # the rebalance is over and the partition is still ours
    clock.now += 2
    spin(pipeline, 1)  # no new message: only the retry can commit
    assert consumer.committed_offsets == {0: 10} and pipeline.states[0].commit_due is None



def test_no_more_batches_are_cut_than_there_are_publish_slots(tmp_path):
    """Four partitions due at once and two slots: two batches are cut, the other two wait
    uncut and, once full, paused; nothing is lost or landed twice when the store comes back."""
    consumer = FakeConsumer(TOPIC, {p: [] for p in range(4)}, committed_offsets={p: 0 for p in range(4)})
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pipeline, store = make(tmp_path, consumer, max_records=10, executor=pool)
    states = pipeline.states
    spin_until(pipeline, lambda: all(s.resolved for s in states.values()), 10)  # before the workers block
    store.__class__ = BlockingStore
    BlockingStore.release.clear()
    for p in range(4):
        consumer.log[p] = json_messages(TOPIC, p, 25)
    spin_until(pipeline, lambda: sum(s.cut is not None for s in states.values()) == 2, 10)
    spin_until(pipeline, lambda: False, 0.5)
    assert sum(s.cut is not None for s in states.values()) == 2
    waiting = [p for p, s in states.items() if s.cut is None]
    assert len(waiting) == 2 and all(states[p].due_since is not None for p in waiting)
    assert consumer.paused == set(states)  # all full: two wait for their publish, two for a slot
    BlockingStore.release.set()
    spin_until(pipeline, lambda: consumer.committed_offsets == {p: 20 for p in range(4)}, 10)
    assert consumer.committed_offsets == {p: 20 for p in range(4)}
    assert pipeline.shutdown(timeout=5)
    assert landed(tmp_path) == [(p, i) for p in range(4) for i in range(25)]
    pool.shutdown()


def test_a_freed_slot_goes_to_the_batch_that_waited_longest(tmp_path):
    consumer = FakeConsumer(TOPIC, {p: json_messages(TOPIC, p, 1) for p in range(3)})
    pipeline, _ = make(tmp_path, consumer)
    pipeline.publish_slots = 1
    first, second, third = (pipeline.states[p] for p in range(3))
    first.cut = object()  # holding the only slot
    assert not pipeline._slot_free(third, 10.0) and third.due_since == 10.0
    first.cut = None  # published: the slot is free, and the first partition is due again
    assert not pipeline._slot_free(first, 11.0) and not pipeline._slot_free(second, 12.0)
    assert pipeline._slot_free(third, 13.0)


def test_with_every_partition_paused_the_loop_waits_for_the_publish_not_for_consume(tmp_path):
    """consume() cannot return anything while all partitions are paused; waiting in it for
    poll_timeout would leave the publisher idle after its job ends."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3)})
    timeouts = []
    plain_consume = consumer.consume
    consumer.consume = lambda n=1, timeout=0: timeouts.append(timeout) or plain_consume(n, timeout)
    pipeline, _ = make(tmp_path, consumer)
    pipeline.poll_timeout = 30.0
    state = pipeline.states[0]
    job = concurrent.futures.Future()
    state.job, state.paused, consumer.paused = job, True, {0}
    threading.Timer(0.05, job.set_result, args=[None]).start()
    assert pipeline._poll() == [] and job.done() and timeouts == [0]
    state.paused = False  # its job not yet taken in: consume() waits only briefly
    pipeline._poll()
    assert timeouts == [0, pipeline.busy_poll_timeout] and pipeline.busy_poll_timeout <= 0.05
    state.job = None  # nothing in flight: consume() may wait its whole timeout
    pipeline._poll()
    assert timeouts == [0, pipeline.busy_poll_timeout, 30.0]


def test_while_a_publish_is_in_flight_consume_waits_briefly_so_its_end_frees_the_slot_soon(tmp_path):
    """consume() waits for a whole consume_batch or its timeout. With a storage job in flight
    and messages arriving slowly (other partitions paused), waiting poll_timeout would leave
    the job's publish slot idle after it ends, until consume() returns."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3), 1: []})
    timeouts = []
    plain_consume = consumer.consume
    consumer.consume = lambda n=1, timeout=0: timeouts.append(timeout) or plain_consume(n, timeout)
    pipeline, _ = make(tmp_path, consumer)
    pipeline.poll_timeout = 30.0
    job = concurrent.futures.Future()
    pipeline.states[1].job = job  # partition 1 publishing, partition 0 consuming
    pipeline._poll()
    job.set_result(None)
    assert timeouts == [pipeline.busy_poll_timeout]


def test_with_exit_at_end_consume_never_waits_its_whole_timeout(tmp_path):
    """consume() waits for a whole consume_batch or its timeout: a topic's last messages, and
    the report of its end, would wait all of poll_timeout before the last batch is cut. A
    member that owns no partition waits as usual."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3)})
    timeouts = []
    plain_consume = consumer.consume
    consumer.consume = lambda n=1, timeout=0: timeouts.append(timeout) or plain_consume(n, timeout)
    pipeline, _ = make(tmp_path, consumer)
    pipeline.poll_timeout = 30.0
    pipeline._poll()
    pipeline.exit_at_end = True
    pipeline._poll()
    owned, pipeline.states = pipeline.states, {}
    pipeline._poll()
    assert owned and timeouts == [30.0, pipeline.busy_poll_timeout, 30.0]


def test_with_exit_at_end_the_consume_that_brings_the_first_assignment_does_not_wait_its_whole_timeout(tmp_path):
    """The first assignment arrives inside a consume() call, which then waits for a whole consume_batch
    or its timeout: a small topic's messages would wait all of poll_timeout (seen: 0.5 s of a 1 s run)."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3)})
    timeouts = []
    plain_consume = consumer.consume
    consumer.consume = lambda n=1, timeout=0: timeouts.append(timeout) or plain_consume(n, timeout)
    pipeline, _ = make(tmp_path, consumer)
    pipeline.poll_timeout, pipeline.exit_at_end = 30.0, True
    pipeline.states.clear()
    pipeline.assigned_once = False
    pipeline._poll()
    pipeline.on_assign(consumer, [TopicPartition(TOPIC, 0)])
    pipeline._poll()
    assert timeouts == [pipeline.busy_poll_timeout, pipeline.busy_poll_timeout] and pipeline.assigned_once


def hundred_byte_messages(partition: int, count: int, start: int = 0) -> list:
    """JSON values of exactly 100 bytes and no key: 10 of them make 1,000 bytes."""
    from fakes import FakeMessage
    return [FakeMessage(TOPIC, partition, start + i, f'{{"id":{start + i:4d},"pad":"{"x" * 80}"}}'.encode())
            for i in range(count)]


def test_at_the_byte_budget_the_fullest_buffer_is_cut_early_and_then_the_loop_waits(tmp_path):
    """The messages held (buffered, or cut and not yet committed) are kept to the memory
    budget (here max_bytes x partitions): at it the fullest buffer is cut before it is due (flush reason
    "memory") while a publish slot is free; with none free, the loop waits for a publish
    instead of consuming, for at most memory_wait_limit at a stretch. Nothing is lost or
    landed twice."""
    assert len(hundred_byte_messages(0, 1)[0].value()) == 100
    consumer = FakeConsumer(TOPIC, {p: [] for p in range(3)}, committed_offsets={p: 0 for p in range(3)})
    pool = concurrent.futures.ThreadPoolExecutor(2)
    clock = Clock()
    pipeline, store = make(tmp_path, consumer, max_records=1000, max_bytes=1000, executor=pool, clock=clock)
    pipeline.poll_timeout, pipeline.memory_budget = 0.05, 3000
    states = pipeline.states
    spin_until(pipeline, lambda: all(s.resolved for s in states.values()), 10)  # before the workers block
    store.__class__ = BlockingStore
    BlockingStore.release.clear()
    consumer.log[0] = hundred_byte_messages(0, 10)  # due by bytes: cut, and its publish hangs
    spin_until(pipeline, lambda: states[0].cut is not None, 10)
    assert states[0].flush_reason == "bytes" and pipeline.held_bytes() == 1000
    # 1,000 in flight + 900 + 900 + 300 buffered reach the budget of 3 x 1,000, and no buffer is due.
    consumer.log[1], consumer.log[2] = hundred_byte_messages(1, 9), hundred_byte_messages(2, 9)
    consumer.log[0] += hundred_byte_messages(0, 3, start=10)
    spin_until(pipeline, lambda: states[1].cut is not None, 10)
    assert states[1].flush_reason == "memory" and len(states[1].cut) == 9
    assert len(states[2].buffer) == 9 and states[2].cut is None and len(states[0].buffer) == 3
    assert pipeline.held_bytes() == 3100
    # Both slots are taken and the budget is reached: wait for a publish, do not consume.
    consumer.log[2] += hundred_byte_messages(2, 5, start=9)
    calls = []
    plain_consume = consumer.consume
    consumer.consume = lambda n=1, timeout=0: calls.append(timeout) or plain_consume(n, timeout)
    pipeline._consumed_at = clock.now  # as if the loop had just consumed (spin() calls consume() itself)
    assert pipeline._poll() == [] and calls == [] and pipeline.waiting_for_memory
    # A store that stays slow must not keep us from consume() for long (max.poll.interval.ms);
    # consume() is called with every partition paused, so the budget still holds.
    clock.now += pipeline.memory_wait_limit
    messages = pipeline._poll()
    assert messages == [] and calls == [pipeline.busy_poll_timeout] and not pipeline.waiting_for_memory
    assert pipeline.holding_all and all(s.paused for s in states.values())
    BlockingStore.release.set()  # room again: partition 2 resumes, and its 14 messages are due by bytes
    spin_until(pipeline, lambda: consumer.committed_offsets == {0: 10, 1: 9, 2: 14}, 10)
    assert not pipeline.holding_all and not any(s.paused for s in states.values())
    assert pipeline.shutdown(timeout=5)
    assert consumer.committed_offsets == {0: 13, 1: 9, 2: 14}
    assert landed(tmp_path) == [(0, i) for i in range(13)] + [(1, i) for i in range(9)] + [(2, i) for i in range(14)]
    pool.shutdown()


class TickingClock:
    """Moves on a little every time it is read: pipeline.run's idle time passes by itself."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 0.01
        return self.now


def test_an_idle_exit_waits_until_every_partition_is_read_to_its_end(tmp_path):
    """--exit-when-idle on a loaded machine: the first fetch comes after the idle time. With
    the consumer reporting each partition's end (enable.partition.eof), the run waits for it
    and lands everything; without, it would stop having read nothing."""
    def slow_first_fetch(eof: bool) -> FakeConsumer:
        consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 5), 1: json_messages(TOPIC, 1, 3)},
                                partition_eof=eof)
        plain_consume, calls = consumer.consume, []
        consumer.consume = lambda n=1, timeout=0: calls.append(1) or ([] if len(calls) <= 200 else plain_consume(n))
        return consumer

    blind = slow_first_fetch(eof=False)
    pipeline, _ = make(tmp_path / "blind", blind, max_records=100, clock=TickingClock())
    assert pipeline.run(lambda: False, exit_when_idle=1.0) and blind.committed_offsets == {}  # the old way

    consumer = slow_first_fetch(eof=True)
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=TickingClock())
    pipeline.partition_eof = True
    assert pipeline.run(lambda: False, exit_when_idle=1.0)
    assert consumer.committed_offsets == {0: 5, 1: 3}
    assert landed(tmp_path) == sorted([(0, i) for i in range(5)] + [(1, i) for i in range(3)])


def test_an_idle_exit_publishes_the_last_batches_while_the_idle_time_runs_out(tmp_path):
    """--exit-when-idle with every partition read to its end: the last batches are cut and
    committed once half the idle time is gone, before it is over, and no turn waits in
    consume() longer than the idle time left."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 5), 1: json_messages(TOPIC, 1, 3)}, partition_eof=True)
    clock = TickingClock()
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = True
    committed_at: list[float] = []
    plain_commit, plain_consume, timeouts = consumer.commit, consumer.consume, []

    def commit(offsets, asynchronous=True):
        committed_at.append(clock.now)
        plain_commit(offsets, asynchronous)

    def consume(n=1, timeout=0):
        timeouts.append(timeout)
        return plain_consume(n, timeout)

    consumer.commit, consumer.consume = commit, consume
    started = clock.now
    assert pipeline.run(lambda: False, exit_when_idle=30.0)
    assert consumer.committed_offsets == {0: 5, 1: 3}
    assert committed_at and max(committed_at) - started < 20.0  # after half the 30 s of idle time, not all of it
    assert max(timeouts) <= pipeline.poll_timeout
    assert landed(tmp_path) == sorted([(0, i) for i in range(5)] + [(1, i) for i in range(3)])


def test_a_trickle_under_exit_when_idle_is_not_cut_into_small_files(tmp_path):
    """Messages that keep coming with gaps shorter than half the idle time, each leaving the
    partition at its end: one batch at the idle exit, not one per gap."""
    clock = TickingClock()
    messages = json_messages(TOPIC, 0, 20)
    consumer = FakeConsumer(TOPIC, {0: messages}, partition_eof=True)
    released = {"count": 0, "at": clock.now}

    def consume(n=1, timeout=0):
        if released["count"] < len(messages) and clock.now - released["at"] >= 0.2:
            released["count"] += 1
            released["at"] = clock.now
            message = messages[released["count"] - 1]
            return [message, PartitionEnd(TOPIC, 0, message.offset() + 1)]
        return []

    consumer.consume = consume
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = True
    assert pipeline.run(lambda: False, exit_when_idle=1.0)
    assert consumer.committed_offsets == {0: 20}
    files = [p for p in (tmp_path / "lake").rglob("*.parquet") if not p.name.startswith(".")]
    assert len(files) == 1, files


def test_an_idle_turn_waits_no_longer_than_the_idle_time_left(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: []}, partition_eof=True)
    pipeline, _ = make(tmp_path, consumer, clock=TickingClock())
    timeouts = []
    consumer.consume = lambda n=1, timeout=0: timeouts.append(timeout) or []
    assert pipeline.run(lambda: False, exit_when_idle=0.2)
    assert timeouts and max(timeouts) <= 0.2 + 1e-9


def test_exit_at_end_lands_every_partition_as_it_is_read_to_its_end_and_stops(tmp_path):
    """--exit-at-end: partition 0 is read to its end while partition 1 still has messages to
    hand over; 0's batch is cut and committed then, not at the end of the run, and the run
    stops by itself once 1 is read to its end too, far sooner than max_age (60 s)."""
    clock = TickingClock()
    log = {0: json_messages(TOPIC, 0, 5), 1: json_messages(TOPIC, 1, 40), 2: []}
    consumer = FakeConsumer(TOPIC, log, partition_eof=True)
    handed = {0: 0, 1: 0}
    plain_consume = consumer.consume

    def consume(n, timeout):  # all of partition 0 and its end first, then one message of 1 per call
        got = plain_consume(n, timeout)
        handed[1] += sum(1 for m in got if m.partition() == 1 and m.error() is None)
        return got

    consumer.consume = lambda n=1, timeout=0: consume(6 if consumer.positions[0] < 5 else 1, timeout)
    commits: list[tuple[dict, int]] = []
    plain_commit = consumer.commit
    consumer.commit = lambda offsets, asynchronous=True: (
        commits.append(({tp.partition: tp.offset for tp in offsets}, handed[1])), plain_commit(offsets, asynchronous))
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = pipeline.exit_at_end = True
    started = clock.now
    assert pipeline.run(lambda: False)
    assert clock.now - started < 10.0
    assert consumer.committed_offsets == {0: 5, 1: 40}
    first = commits[0]
    assert first[0] == {0: 5} and first[1] < 40  # partition 0 landed while partition 1 was still being read
    assert landed(tmp_path) == sorted([(0, i) for i in range(5)] + [(1, i) for i in range(40)])
    files = [p for p in (tmp_path / "lake").rglob("*.parquet") if not p.name.startswith(".")]
    assert len(files) == 2, files


class LaterExecutor(concurrent.futures.Executor):
    """Runs storage jobs when `run_pending` is called: a publisher thread that finishes between
    turns. Once `immediate` is set, it runs them at submit time, like ImmediateExecutor."""

    def __init__(self):
        self.pending: list = []
        self.immediate = False

    def submit(self, fn, *args, **kwargs):
        future = concurrent.futures.Future()
        self.pending.append((future, fn, args, kwargs))
        if self.immediate:
            self.run_pending()
        return future

    def run_pending(self):
        jobs, self.pending = self.pending, []
        for future, fn, args, kwargs in jobs:
            run_into(future, fn, *args, **kwargs)


def test_exit_at_end_cuts_a_partition_that_waited_for_a_publish_slot_before_it_stops(tmp_path):
    """One publish slot. Partition 1 is read to its end first and publishes; partition 0 is read
    to its end while that job runs, so it waits for the slot, and the slot comes free only after
    0 was looked at in that turn. Nothing is in flight then, yet 0 still holds its batch: the
    run cuts it ("end") on the next turn instead of stopping and leaving it to the shutdown."""
    executor = LaterExecutor()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3), 1: json_messages(TOPIC, 1, 4)})
    answers = [json_messages(TOPIC, 1, 4) + json_messages(TOPIC, 0, 3), [],  # both resolved (a job each)
               [PartitionEnd(TOPIC, 1, 4)], [PartitionEnd(TOPIC, 0, 3)]]

    def consume(n=1, timeout=0):
        executor.run_pending()
        answer = answers.pop(0) if answers else []
        executor.immediate = not answers  # from the last answer on (so the shutdown cannot wait on a job)
        return answer

    consumer.consume = consume
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=TickingClock(), executor=executor)
    pipeline.partition_eof = pipeline.exit_at_end = True
    pipeline.publish_slots = 1
    reasons: list[str] = []
    plain_cut = pipeline.observer.cut
    pipeline.observer.cut = lambda reason: reasons.append(reason) or plain_cut(reason)
    assert pipeline.run(lambda: False)
    assert reasons == ["end", "end"]
    assert consumer.committed_offsets == {0: 3, 1: 4}
    assert landed(tmp_path) == sorted([(0, i) for i in range(3)] + [(1, i) for i in range(4)])


def test_exit_at_end_does_not_stop_on_an_end_that_more_messages_followed(tmp_path):
    """An end reported before more messages of the same partition (produced meanwhile) is not
    its end: the run goes on until those are read to the end as well, and lands them in one
    batch. (The high watermark is not known here, as when a transaction's marker comes last:
    only the end report can say where the end is.)"""
    clock = TickingClock()
    messages = json_messages(TOPIC, 0, 6)
    consumer = FakeConsumer(TOPIC, {0: messages}, partition_eof=True)
    answers = [messages[:3] + [PartitionEnd(TOPIC, 0, 3)] + messages[3:], [], [], [PartitionEnd(TOPIC, 0, 6)]]
    consumer.consume = lambda n=1, timeout=0: answers.pop(0) if answers else []
    consumer.get_watermark_offsets = lambda partition, timeout=None, cached=False: (-1001, -1001)
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = pipeline.exit_at_end = True
    assert pipeline.run(lambda: False)
    assert not answers  # it waited for the second end
    assert consumer.committed_offsets == {0: 6}
    assert landed(tmp_path) == [(0, i) for i in range(6)]
    files = [p for p in (tmp_path / "lake").rglob("*.parquet") if not p.name.startswith(".")]
    assert len(files) == 1, files


def test_exit_at_end_stops_at_the_high_watermark_without_waiting_for_the_end_report(tmp_path):
    """The last message before the partition's high watermark (librdkafka's, cached from the fetch
    that brought it) is its end: the run lands, commits and stops without the end report, which
    a real broker sends only after holding the next fetch for fetch.wait.max.ms."""
    clock = TickingClock()
    messages = json_messages(TOPIC, 0, 6)
    consumer = FakeConsumer(TOPIC, {0: messages}, partition_eof=True)
    answers = [messages[:4], messages[4:], [], [], [PartitionEnd(TOPIC, 0, 6)]]
    consumer.consume = lambda n=1, timeout=0: answers.pop(0) if answers else []
    watermarks = {"high": 6}
    consumer.get_watermark_offsets = lambda partition, timeout=None, cached=False: (0, watermarks["high"])
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = pipeline.exit_at_end = True
    assert pipeline.run(lambda: False)
    assert len(answers) == 3  # stopped after the second lot, before the end report
    assert consumer.committed_offsets == {0: 6}
    assert landed(tmp_path) == [(0, i) for i in range(6)]


def test_a_partition_short_of_its_high_watermark_is_not_at_its_end(tmp_path):
    """Messages past the last one taken (fetched, or produced since) keep the partition from its
    end: here the watermark says 8 where 6 came, so the run waits for the end report."""
    clock = TickingClock()
    messages = json_messages(TOPIC, 0, 6)
    consumer = FakeConsumer(TOPIC, {0: messages}, partition_eof=True)
    answers = [messages, [], [], [PartitionEnd(TOPIC, 0, 6)]]
    consumer.consume = lambda n=1, timeout=0: answers.pop(0) if answers else []
    consumer.get_watermark_offsets = lambda partition, timeout=None, cached=False: (0, 8)
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = pipeline.exit_at_end = True
    assert pipeline.run(lambda: False)
    assert not answers  # it waited for the end report
    assert consumer.committed_offsets == {0: 6}


def test_exit_at_end_waits_for_storage_and_commits_nothing_it_could_not_land(tmp_path):
    """Read to its end while storage fails: the run does not stop on it, it retries until the
    lake answers, then lands, commits and stops."""
    clock = TickingClock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 4)}, partition_eof=True)
    pipeline, store = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = pipeline.exit_at_end = True
    plain_publish, attempts = store.publish, []

    def publish(relative, data):
        attempts.append(relative)
        if len(attempts) <= 5:
            raise StorageError("connection refused", permanent=False)
        return plain_publish(relative, data)

    store.publish = publish
    assert pipeline.run(lambda: False)
    assert len(attempts) > 5 and pipeline.stats.storage_retries >= 5
    assert consumer.committed_offsets == {0: 4}
    assert landed(tmp_path) == [(0, i) for i in range(4)]


def test_exit_at_end_does_not_stop_while_a_commit_refused_by_a_rebalance_is_owed(tmp_path):
    """The last batch lands while the group rebalances, and Kafka refuses its commit twice: the run
    goes on serving the group and retrying, and stops only once the offset is committed."""
    clock = TickingClock()
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 4)}, partition_eof=True)
    plain_commit, refusals = consumer.commit, []

    def commit(offsets, asynchronous=True):
        if len(refusals) < 2:
            refusals.append(offsets)
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        return plain_commit(offsets, asynchronous)

    consumer.commit = commit
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=clock)
    pipeline.partition_eof = pipeline.exit_at_end = True
    assert pipeline.run(lambda: False)
    assert len(refusals) == 2 and consumer.committed_offsets == {0: 4}
    assert landed(tmp_path) == [(0, i) for i in range(4)]


def test_a_shutdown_whose_commit_kafka_refuses_reports_it_was_not_clean(tmp_path):
    """Landed, but every commit refused: the run says so (the next owner replays from the marker)."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 4)}, fail_commits=True)
    pipeline, _ = make(tmp_path, consumer, max_records=100, clock=TickingClock())
    turns = iter(range(3))
    assert not pipeline.run(lambda: next(turns, None) is None)
    assert consumer.committed_offsets == {}
    assert landed(tmp_path) == [(0, i) for i in range(4)]


def test_a_partition_is_at_its_end_only_if_its_end_came_after_its_last_message(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: [], 1: [], 2: []})
    pipeline, _ = make(tmp_path, consumer, max_records=100)
    m0, m1 = json_messages(TOPIC, 0, 2), json_messages(TOPIC, 1, 2)
    pipeline.accept([m0[0], PartitionEnd(TOPIC, 0, 1), m0[1], m1[0], m1[1], PartitionEnd(TOPIC, 1, 2),
                     PartitionEnd(TOPIC, 2, 0)], 0.0)
    assert [pipeline.states[p].at_end for p in range(3)] == [False, True, True]
    pipeline.accept([json_messages(TOPIC, 2, 1)[0]], 0.0)  # new messages: no longer at its end
    assert [pipeline.states[p].at_end for p in range(3)] == [False, True, False]
    assert pipeline.states[0].buffer.nbytes and len(pipeline.states[0].buffer.offsets) == 2


class InterleavingConsumer(FakeConsumer):
    """Hands over messages one partition after the other, like a fetch over many partitions,
    and reports each partition's end once it is reached (enable.partition.eof)."""

    def consume(self, num_messages=1, timeout=0):
        out: list = []
        while len(out) < num_messages:
            turn = []
            for p, messages in self.log.items():
                if p in self.paused:
                    continue
                if self.positions[p] >= len(messages):
                    if self.reported_end.get(p) != len(messages):
                        turn.append(PartitionEnd(self.topic, p, len(messages)))
                        self.reported_end[p] = len(messages)
                    continue
                turn.append(messages[self.positions[p]])
                self.positions[p] += 1
                if len(out) + len(turn) >= num_messages:
                    break
            if not turn:
                break
            out += turn
        return out


class SlowLocalStore(LakeStore):
    def publish(self, relative, data):
        time.sleep(0.005)
        return super().publish(relative, data)


def test_the_memory_budget_bounds_what_is_held_whatever_the_partition_count(tmp_path):
    """16 partitions whose full batches (1,000 bytes each) would need 16,000 bytes, under a
    budget of 2,500: the messages held never pass the budget by more than one consume() call,
    the fullest buffers are cut early for memory, and every message lands once."""
    partitions, per_partition, consume_batch, budget = 16, 30, 20, 2_500
    consumer = InterleavingConsumer(TOPIC, {p: hundred_byte_messages(p, per_partition) for p in range(partitions)})
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pipeline, store = make(tmp_path, consumer, max_records=1000, max_bytes=1000, executor=pool,
                           clock=time.monotonic)
    store.__class__ = SlowLocalStore
    pipeline.memory_budget, pipeline.consume_batch, pipeline.poll_timeout = budget, consume_batch, 0.01
    cuts: list[str] = []
    pipeline.observer.cut = cuts.append
    held: list[int] = []

    def should_stop() -> bool:
        held.append(pipeline.held_bytes())
        return False

    assert pipeline.budget_bytes() == budget
    assert pipeline.run(should_stop, exit_when_idle=0.5)
    pool.shutdown()
    assert max(held) <= budget + consume_batch * 100, max(held)
    assert max(held) >= 0.8 * budget  # the budget mattered
    assert cuts.count("memory") >= 10, cuts
    assert consumer.committed_offsets == {p: per_partition for p in range(partitions)}
    assert landed(tmp_path) == [(p, i) for p in range(partitions) for i in range(per_partition)]


def test_at_the_budget_with_storage_failing_every_partition_is_paused(tmp_path):
    """Storage failing for one partition's batch must not let the others grow past the budget:
    consume() is still called (to stay in the group) but with every partition paused."""
    consumer = InterleavingConsumer(TOPIC, {p: hundred_byte_messages(p, 30) for p in range(4)})
    pipeline, store = make(tmp_path, consumer, max_records=1000, max_bytes=1000)
    pipeline.memory_budget = 1_500
    store.broken = True
    for _ in range(20):
        pipeline.accept(pipeline._poll(), pipeline.clock())
        pipeline.turn(pipeline.clock())
    assert pipeline.storage_failing and pipeline.holding_all
    assert all(s.paused for s in pipeline.states.values())
    assert pipeline.held_bytes() <= 1_500 + pipeline.consume_batch * 100
    store.broken = False
    pipeline.clock.now += 60  # past every retry
    for _ in range(40):
        pipeline.accept(pipeline._poll(), pipeline.clock())
        pipeline.turn(pipeline.clock())
        pipeline.clock.now += 2
    assert pipeline.shutdown(timeout=5)
    assert consumer.committed_offsets == {p: 30 for p in range(4)}
    assert landed(tmp_path) == [(p, i) for p in range(4) for i in range(30)]


def run_backlog(tmp_path, partitions: int, per_partition: int, budget: int):
    """A backlog of 100-byte messages over `partitions`, full batches of 1,000 bytes, slow storage and
    a memory budget: run until idle; the consumer, the cut reasons, the bytes held and the focus per turn."""
    consumer = InterleavingConsumer(TOPIC, {p: hundred_byte_messages(p, per_partition) for p in range(partitions)})
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pipeline, store = make(tmp_path, consumer, max_records=1000, max_bytes=1000, executor=pool,
                           clock=time.monotonic)
    store.__class__ = SlowLocalStore
    pipeline.memory_budget, pipeline.consume_batch, pipeline.poll_timeout = budget, 10, 0.01
    cuts: list[str] = []
    pipeline.observer.cut = cuts.append
    held, focused = [], []

    def should_stop() -> bool:
        held.append(pipeline.held_bytes())
        focused.append(pipeline.focus)
        return False

    assert pipeline.run(should_stop, exit_when_idle=0.5)
    pool.shutdown()
    return consumer, cuts, held, focused


def test_under_memory_pressure_the_fullest_buffers_fill_to_full_batches(tmp_path):
    """A backlog over 12 partitions whose full batches (1,000 bytes) need 12,000 bytes, under a
    budget of 3,000: instead of every buffer growing to 250 bytes and being cut early, the
    fullest go on filling while the others wait paused (the memory focus), so almost every
    batch is cut full by bytes; every partition gets its turn and everything lands once."""
    partitions, per_partition = 12, 40
    consumer, cuts, held, focused = run_backlog(tmp_path, partitions, per_partition, 3_000)
    assert max(held) <= 3_000 + 10 * 100
    assert any(f for f in focused if f is not None and len(f) < partitions)  # the focus was used
    # Without the focus this shape gives 3 cuts by bytes of 92 (82 for memory); with it, 36 of 53.
    assert cuts.count("bytes") >= 0.6 * len(cuts), cuts
    assert consumer.committed_offsets == {p: per_partition for p in range(partitions)}
    assert landed(tmp_path) == [(p, i) for p in range(partitions) for i in range(per_partition)]


def test_when_the_budget_holds_a_full_batch_per_partition_nothing_is_paused_for_focus(tmp_path):
    """3 partitions whose full batches (1,000 bytes) fit in the budget of 5,000 with two more
    being published: every buffer can fill up, so the focus never pauses one (a pause makes
    librdkafka drop what it prefetched for the partition and fetch it again)."""
    partitions, per_partition = 3, 60
    consumer, cuts, held, focused = run_backlog(tmp_path, partitions, per_partition, 5_000)
    assert max(held) > 0.5 * 5_000  # past where the focus starts when the budget is short
    assert set(focused) == {None}
    assert "memory" not in cuts and cuts.count("bytes") >= 0.8 * len(cuts), cuts
    assert landed(tmp_path) == [(p, i) for p in range(partitions) for i in range(per_partition)]


def test_a_caught_up_buffer_is_cut_for_partitions_waiting_for_room(tmp_path):
    """Under the memory focus, a partition read to its end cannot grow, so its buffer is cut
    early (reason memory) while a partition with a backlog waits paused for room; when no
    partition waits, caught-up buffers are left to fill up as usual."""
    consumer = FakeConsumer(TOPIC, {0: hundred_byte_messages(0, 5), 1: hundred_byte_messages(1, 40)},
                            committed_offsets={0: 0, 1: 0}, partition_eof=True)
    pipeline, _ = make(tmp_path, consumer, max_records=1000, max_bytes=1000)
    pipeline.memory_budget = 1_000
    pipeline.accept(consumer.consume(7, 0), pipeline.clock())  # 5 of partition 0 and its end, 1 of partition 1
    pipeline.turn(pipeline.clock())
    states = pipeline.states
    assert states[0].at_end and not states[1].at_end and pipeline.held_bytes() == 600
    pipeline.focus = frozenset({0})  # as if partition 1 were waiting for room
    cuts: list[str] = []
    pipeline.observer.cut = cuts.append
    pipeline.turn(pipeline.clock())
    assert cuts == ["memory"] and consumer.committed_offsets[0] == 5
    # Nobody waits: a caught-up buffer is not cut early.
    pipeline.accept(consumer.consume(1, 0), pipeline.clock())
    pipeline.focus = None
    consumer.log[0] += hundred_byte_messages(0, 2, start=5)
    pipeline.accept(consumer.consume(2, 0), pipeline.clock())
    pipeline.turn(pipeline.clock())
    assert cuts == ["memory"]


def test_buffers_take_the_maps_of_landed_batches_and_count_what_those_hold_beyond_their_values(tmp_path):
    """Ten batches over two partitions: the buffers reuse the maps of committed batches (a few
    maps in all), and the bytes held include what a reused map holds beyond the values in it."""
    consumer = InterleavingConsumer(TOPIC, {p: hundred_byte_messages(p, 50) for p in range(2)})
    pipeline, _ = make(tmp_path, consumer, max_records=10)
    spin(pipeline, turns=30)
    assert consumer.committed_offsets == {0: 50, 1: 50}
    assert landed(tmp_path) == [(p, i) for p in range(2) for i in range(50)]
    assert 1 <= len(pipeline.maps) <= 4
    consumer.log[0] = hundred_byte_messages(0, 51)
    messages = consumer.consume(1000, 0)
    pipeline.accept(messages, pipeline.clock())  # one message into a reused map
    assert pipeline.maps.slack_bytes() > 0
    assert pipeline.held_bytes() == pipeline.states[0].buffer.nbytes + pipeline.maps.slack_bytes()


def test_maps_are_not_reused_while_the_budget_cannot_hold_a_full_batch_per_partition(tmp_path):
    consumer = InterleavingConsumer(TOPIC, {p: hundred_byte_messages(p, 50) for p in range(4)})
    pipeline, _ = make(tmp_path, consumer, max_records=10, max_bytes=1000)
    pipeline.memory_budget = 5_000  # full batches need 1,000 x (4 partitions + 2 slots)
    spin(pipeline, turns=30)
    assert consumer.committed_offsets == {p: 50 for p in range(4)}
    assert not pipeline.maps.reuse and pipeline.maps.idle_bytes() == 0
    pipeline.memory_budget = 6_000
    pipeline.turn(pipeline.clock())
    assert pipeline.maps.reuse


def test_at_the_budget_the_slack_of_a_reused_map_is_given_back_not_cut_for(tmp_path):
    """A batch of 3,000 bytes leaves its map idle with 3,000 bytes written; the next buffer takes
    it for one message, so the bytes held (100 of messages and 2,900 of slack) reach the budget
    of 3,000. Cutting that one message early would free nothing: as much slack as takes the bytes
    held under the budget is given back instead, and nothing is cut for memory."""
    consumer = InterleavingConsumer(TOPIC, {0: hundred_byte_messages(0, 30)})
    pipeline, _ = make(tmp_path, consumer, max_records=1000, max_bytes=1000)
    pipeline.memory_budget = 3_000  # a full batch for the partition and both publish slots
    cuts: list[str] = []
    pipeline.observer.cut = cuts.append
    spin(pipeline, turns=3)
    assert cuts == ["bytes"] and consumer.committed_offsets == {0: 30}
    consumer.log[0] += hundred_byte_messages(0, 1, start=30)
    pipeline.accept(consumer.consume(1000, 0), pipeline.clock())  # one message into the reused map
    assert pipeline.maps.reuse and pipeline.held_bytes() == 3_000
    pipeline.turn(pipeline.clock())
    assert cuts == ["bytes"]
    assert pipeline.held_bytes() == 2_999 and pipeline.maps.slack_bytes() == 2_899


def test_the_publishers_share_one_freed_memory_and_the_loop_settles_it(tmp_path):
    """Every batch of a pipeline is encoded and stored inside the pipeline's one FreedMemory (a
    publisher of its own per batch would never count the others), and the loop's turn releases
    what the batches freed once they have been idle for the interval."""
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 30)})
    pipeline, _ = make(tmp_path, consumer, max_records=10)
    released: list[float] = []
    pipeline.freed = FreedMemory(every=1.0, release=lambda: released.append(pipeline.clock()), clock=pipeline.clock)
    spin(pipeline, turns=5)
    assert consumer.committed_offsets == {0: 30}
    assert released == []  # three batches, all within the first interval
    pipeline.clock.now += 1.0
    pipeline.turn(pipeline.clock())
    pipeline.turn(pipeline.clock())
    assert released == [1001.0]
