"""The consumer loop: consume → decode → batch → encode → publish → commit, per partition.

The main thread owns the consumer and all state. Each turn it takes what `consume()`
returns into per-partition buffers, then advances every partition: resolve a newly
assigned partition (committed offset, and any batch marker a crash left behind), cut
a due batch, encode it, hand its storage work (marker → data files → dead letters) to
the publisher threads, and commit `end + 1` once that work is done.

Why threads: storage calls can block for as long as an outage lasts; doing them off
the main thread keeps `consume()` being called, so the member stays in its group past
`max.poll.interval.ms`. A partition has at most one storage job in flight, so its
batches stay in order; over all partitions at most `publish_slots` batches are cut and
not yet committed (a due batch waits in its buffer, which is paused once full).

Memory: the message bytes held, buffered or cut and not yet committed, are kept within
one budget per process (`memory_budget`, from memory.limit: see budget.py), and never
above batch.max_bytes x assigned partitions. At the budget the fullest buffer is cut early
(flush reason "memory") when a publish slot is free; otherwise the loop waits for a batch
to be published instead of consuming more; and when it must call consume() anyway (storage
failing, or publication slower than `memory_wait_limit`), every partition is paused first,
so what arrives is bounded by one consume() call. Commits happen
only on the main thread, only for partitions we still own. A job abandoned on revoke is harmless: its files are exactly those the next
owner's replay produces (see ledger.py).
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ingest_core.batching.buffer import Batch, FlushPolicy, PartitionBuffer
from ingest_core.ops.faults import FaultInjector
from ingest_core.ops.observer import PipelineObserver
from ingest_core.sink.encode import BatchEncoder, EncodedBatch, return_freed_arrow_memory
from ingest_core.sink.events import NoEvents
from ingest_core.sink.formats import data_size
from ingest_core.sink.ledger import BatchMarker, Ledger, MarkedFile
from ingest_core.sink.storage import LakeStore, StorageError
from ingest_core.source.decode import DecodeUnavailable

log = logging.getLogger("ingest.pipeline")

_PARTITION_EOF = KafkaError._PARTITION_EOF  # what consume() hands over when a partition is read to its end

# Memory focus (Pipeline._choose_focus): from this share of the budget held, only the fullest
# buffers consume; below the second, all do again (the gap keeps pause/resume from flapping).
FOCUS_FROM, FOCUS_UNTIL = 0.5, 0.25


class FatalError(Exception):
    """Retrying cannot help (e.g. a permanent storage error); the consumer must stop."""


@dataclass
class Backoff:
    first: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        # Full jitter keeps a fleet of consumers from retrying a recovering store in lockstep.
        return random.uniform(0.5, 1.0) * min(self.cap, self.first * 2 ** max(0, attempt - 1))


@dataclass
class Stats:
    records: int = 0
    files: int = 0
    bytes: int = 0
    dead_letters: int = 0
    widened: int = 0
    skipped: int = 0  # tombstones skipped by decode.tombstones: skip (counted, not landed)
    commits: int = 0
    storage_retries: int = 0


@dataclass
class PartitionState:
    buffer: PartitionBuffer
    resolved: bool = False  # base (committed offset) and any crash marker are known
    nothing_committed: bool = False  # the group has no offset here: the first message gives the base
    forced_end: int | None = None  # a marker fixed where the current batch ends
    cut: Batch | None = None  # a batch cut from the buffer and not yet committed
    pending: EncodedBatch | None = None  # its encoding, once done (kept across storage retries)
    job: Any = None  # concurrent.futures.Future or None  # the storage call in flight for this partition
    job_kind: str = ""  # "resolve" or "publish"
    flush_started: float = 0.0  # perf_counter when the pending batch was cut
    flush_reason: str = ""  # why it was cut: records, bytes, age, memory (byte budget), shutdown, replay
    commit_due: int | None = None  # a published batch's commit that Kafka refused; retried
    commit_retry_at: float = 0.0
    attempts: int = 0
    retry_at: float = 0.0
    paused: bool = False
    due_since: float | None = None  # a batch is due but every publish slot is taken: since when
    at_end: bool = False  # the consumer reported the partition's end (_PARTITION_EOF) after its last message
    cut_at: float = 0.0  # when its last batch was cut (clock()): the least recently cut get memory first

    @property
    def settled(self) -> bool:
        """Nothing in flight and nothing that could be flushed now."""
        return (
            self.job is None
            and self.cut is None
            and (not self.buffer.offsets or (self.resolved and self.forced_end is not None))
        )


@dataclass
class Pipeline:
    topic: str
    consumer: Any  # confluent_kafka.Consumer or a test double with the same methods
    encoder: BatchEncoder
    store: LakeStore
    ledger: Ledger
    dead_letters: Any
    policy: FlushPolicy
    executor: Any = None  # concurrent.futures.Executor, made in __post_init__
    publish_slots: int = 2  # batches cut and not yet committed, over all partitions (the executor's workers)
    clock: Callable[[], float] = time.monotonic
    backoff: Backoff = field(default_factory=Backoff)
    consume_batch: int = 5000
    poll_timeout: float = 0.5
    # While a storage job is in flight, consume() waits at most this long: it waits for a
    # whole consume_batch, and a job that ends meanwhile frees a publish slot only when the
    # loop comes round (at 200 B values, slots sat idle for up to poll_timeout while paused
    # partitions refetched: bench/RESULTS.md).
    busy_poll_timeout: float = 0.01
    revoke_timeout: float = 10.0
    # Message bytes held at most (buffered, or cut and not yet committed); None: max_bytes x
    # assigned partitions alone. The runner sets it from memory.limit (budget.MemoryBudget).
    memory_budget: int | None = None
    # At the budget the loop waits for publication instead of consuming, but never for longer
    # than this at a stretch: storage that is slow (not failing) must not keep us from calling
    # consume() until max.poll.interval.ms throws us out of the group. Past it, every partition
    # is paused before consume() is called (see _hold_back), so the budget still holds.
    memory_wait_limit: float = 10.0
    # The consumer reports each partition's end (librdkafka `enable.partition.eof`, set by the
    # runner for --exit-when-idle): an idle exit then also waits until every partition we own
    # has been read to its end, so a slow first fetch is not taken for an empty topic.
    partition_eof: bool = False
    stats: Stats = field(default_factory=Stats)
    observer: PipelineObserver = field(default_factory=PipelineObserver)
    faults: FaultInjector = field(default_factory=FaultInjector)
    events: Any = field(default_factory=NoEvents)  # landed-batch events (events.py), announced before the commit
    states: dict[int, PartitionState] = field(default_factory=dict)
    waiting_for_memory: bool = False  # the last _poll() waited for publication instead of consuming
    holding_all: bool = False  # at the budget and about to consume anyway: every partition is paused
    # Under memory pressure, the partitions that may consume: the fullest, as many as the
    # budget lets grow to a full batch (None: all). See _choose_focus.
    focus: frozenset[int] | None = None
    _consumed_at: float = 0.0  # when consume() was last called
    _early_cut: PartitionState | None = None  # at the byte budget: the buffer to cut before it is due
    _room_from: PartitionState | None = None  # a caught-up buffer to cut for partitions waiting for room

    def __post_init__(self) -> None:
        if self.executor is None:
            # Two workers: two batches encode at once on two cores; more would only hold more memory.
            self.executor = concurrent.futures.ThreadPoolExecutor(self.publish_slots, thread_name_prefix="publisher")

    # ---- rebalance callbacks (librdkafka calls them from inside consume()) ----

    def on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            buffer = PartitionBuffer(self.topic, tp.partition, with_headers=self.encoder.reads_headers)
            self.states[tp.partition] = PartitionState(buffer)
        numbers = sorted(tp.partition for tp in partitions)
        log.info("assigned partitions %s", numbers, extra={"event": "assigned", "partitions": numbers})
        self.observer.assignment(sorted(self.states))

    def on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        """We still own the partitions here: publish and commit what we can in time, drop the rest."""
        deadline = self.clock() + self.revoke_timeout
        self._start_last_batches([tp.partition for tp in partitions])
        for tp in partitions:
            state = self.states.get(tp.partition)
            if state is not None:
                self._drain(tp.partition, state, deadline)
                self.states.pop(tp.partition, None)
        numbers = sorted(tp.partition for tp in partitions)
        log.info("revoked partitions %s", numbers, extra={"event": "revoked", "partitions": numbers})
        self.observer.assignment(sorted(self.states))

    def on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        """Lost without a clean revoke: someone else may own them now, so commit nothing."""
        for tp in partitions:
            self.states.pop(tp.partition, None)
        numbers = sorted(tp.partition for tp in partitions)
        log.warning(
            "lost partitions %s; their buffers were dropped, nothing committed",
            numbers,
            extra={"event": "lost", "partitions": numbers},
        )
        self.observer.assignment(sorted(self.states))

    # ---- the loop ----

    def run(
        self, should_stop: Callable[[], bool], exit_when_idle: float | None = None, shutdown_timeout: float = 30.0
    ) -> bool:
        """Loop until `should_stop()` (or idle for `exit_when_idle` s); then flush and commit.
        Returns False when storage still failed at shutdown (those offsets stay uncommitted)."""
        last_message_at = self.clock()
        while not should_stop():
            messages = self._poll()
            now = self.clock()
            if messages or not self.states or self.waiting_for_memory or any(s.paused for s in self.states.values()):
                # Idle counts only while we own partitions and consume from all of them: after a
                # crash the dead member may hold them until its session times out, and a partition
                # (or the whole loop, at the byte budget) we hold back is waiting for the lake;
                # neither is an empty topic.
                last_message_at = now
                self.accept(messages, now)
            self.turn(now)
            if exit_when_idle is not None and now - last_message_at >= exit_when_idle and self._drained():
                log.info("no message for %.0f s; stopping", exit_when_idle, extra={"event": "idle_exit"})
                break
        return self.shutdown(shutdown_timeout)

    def _drained(self) -> bool:
        """Nothing in flight, and (when the consumer reports them) every partition at its end."""
        return all(
            s.job is None and s.cut is None and (s.at_end or not self.partition_eof) for s in self.states.values()
        )

    def _poll(self) -> list:
        """The next messages. While a batch is being published and nothing may arrive (every
        partition paused) or nothing should (the messages held reach the byte budget), wait
        for that job instead: consume() would sleep its whole timeout, or hand over messages
        we have no room for. Once paused, consume without waiting, which still serves
        rebalances and keeps us in the group; at the budget, return nothing until there is
        room (librdkafka's bounded prefetch then stops fetching by itself)."""
        jobs = [s.job for s in self.states.values() if s.job is not None]
        all_paused = all(s.paused for s in self.states.values())
        self.waiting_for_memory = False
        if jobs and (all_paused or self._wait_for_memory()):
            concurrent.futures.wait(jobs, timeout=self.poll_timeout, return_when=concurrent.futures.FIRST_COMPLETED)
            if not all_paused:  # waited for room: the turn first lets go of what was published
                self.waiting_for_memory = True
                return []
            self._consumed_at = self.clock()
            return self.consumer.consume(self.consume_batch, 0)
        if self._at_budget() and not self.holding_all:
            # At the budget, yet consuming (nothing is being published, storage is failing, or
            # we waited memory_wait_limit): pause everything consume() could bring more of.
            self.holding_all = True
            for partition, state in list(self.states.items()):
                self._hold_back(partition, state)
        self._consumed_at = self.clock()
        return self.consumer.consume(self.consume_batch, self.busy_poll_timeout if jobs else self.poll_timeout)

    def held_bytes(self) -> int:
        """Bytes of messages held: buffered, or cut and not yet committed."""
        return sum(s.buffer.nbytes + (s.cut.nbytes if s.cut is not None else 0) for s in self.states.values())

    def budget_bytes(self) -> int:
        """Message bytes we may hold now: the memory budget, and never more than a full batch
        per assigned partition."""
        by_partitions = self.policy.max_bytes * len(self.states)
        return by_partitions if self.memory_budget is None else min(self.memory_budget, by_partitions)

    def _at_budget(self) -> bool:
        return bool(self.states) and self.held_bytes() >= self.budget_bytes()

    def _choose_focus(self, now: float) -> frozenset[int] | None:
        """Which partitions may consume while memory is short, so that files stay full-size.

        On a backlog over more partitions than the budget holds full batches of, every buffer
        would grow evenly until the budget is reached, and then each would be cut early at
        budget / partitions. Instead, once the bytes held reach FOCUS_FROM of the budget, only
        the fullest buffers go on filling, as many as the room left lets reach batch.max_bytes
        (the least recently cut first among equals, so every partition gets its turn); the
        others are paused with what they hold. Each cut makes room for the next. Below
        FOCUS_UNTIL of the budget every partition consumes again. A partition read to its end
        (the consumer reports it: enable.partition.eof) is never paused for focus: it only
        grows at the rate it is produced to, and its lag must not build up behind a backlog.
        Should the bytes held still reach the budget, the fullest buffer is cut early (_cut).
        With memory_budget unset there is no focus."""
        if self.memory_budget is None or not self.states:
            return None
        budget, held = self.budget_bytes(), self.held_bytes()
        if held < budget * (FOCUS_UNTIL if self.focus is not None else FOCUS_FROM):
            return None
        room = budget - held
        candidates = sorted(
            (p for p, s in self.states.items() if s.resolved and s.forced_end is None and not s.at_end),
            key=lambda p: (-self.states[p].buffer.nbytes, self.states[p].cut_at),
        )
        chosen: set[int] = set()
        for partition in candidates:
            need = max(0, self.policy.max_bytes - self.states[partition].buffer.nbytes)
            if chosen and need > room:
                break
            chosen.add(partition)
            room -= need
        return frozenset(chosen)

    def _caught_up_to_cut(self) -> PartitionState | None:
        """While partitions with a backlog wait paused for room (the memory focus), the fullest
        buffer of a partition already read to its end is cut early: it can only grow at the
        rate the topic is produced to, and the room it holds lets a waiting partition make a
        full-size file. With no partition waiting, caught-up buffers fill up as usual."""
        if self.focus is None:
            return None
        waiting = any(p not in self.focus and not s.at_end and s.resolved for p, s in self.states.items())
        if not waiting:
            return None
        caught_up = [
            s
            for s in self.states.values()
            if s.at_end
            and s.buffer.offsets
            and s.cut is None
            and s.job is None
            and s.resolved
            and s.forced_end is None
            and s.attempts == 0
        ]
        return max(caught_up, key=lambda s: s.buffer.nbytes, default=None)

    def _wait_for_memory(self) -> bool:
        """Wait for publication rather than consume more? At the budget, with a batch being
        published, unless storage is failing or we waited too long (then we consume with
        every partition paused: see _hold_back)."""
        return (
            self._at_budget()
            and any(s.job is not None for s in self.states.values())
            and not self.storage_failing
            and self.clock() - self._consumed_at < self.memory_wait_limit
        )

    def accept(self, messages, now: float) -> None:
        states = self.states
        before = sum(s.buffer.nbytes for s in states.values())
        by_partition: dict[int, list] = {}
        ends: dict[int, int] = {}  # partition -> how many of its messages came before its end was reported
        reports = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == _PARTITION_EOF:  # information, not an error
                    ends[message.partition()] = len(by_partition.get(message.partition(), ()))
                    reports += 1
                elif error.fatal():  # e.g. fenced by another member with our group.instance.id
                    raise FatalError(f"Kafka client failed for good: {error.str()}")
                else:
                    log.warning("consume error: %s", error.str(), extra={"event": "consume_error"})
                continue
            partition = message.partition()
            group = by_partition.get(partition)
            if group is None:
                group = by_partition[partition] = []
            group.append(message)
        for partition, group in by_partition.items():
            state = states.get(partition)
            if state is not None:
                state.buffer.extend(group, now)
                state.at_end = ends.get(partition) == len(group)
        for partition in ends.keys() - by_partition.keys():
            state = states.get(partition)
            if state is not None:
                state.at_end = True
        self.observer.consumed(len(messages) - reports, sum(s.buffer.nbytes for s in states.values()) - before)

    def turn(self, now: float) -> None:
        self._early_cut = self._fullest_buffer() if self._at_budget() else None
        self._room_from = self._caught_up_to_cut()
        for partition, state in list(self.states.items()):
            self._advance(partition, state, now, force=False)
        if self.holding_all and not self._at_budget():
            self.holding_all = False  # room again: _hold_back resumes what it paused for memory
        self.focus = self._choose_focus(now)
        for partition, state in list(self.states.items()):
            self._hold_back(partition, state)
        self.observer.memory(self.held_bytes(), self.budget_bytes())

    def shutdown(self, timeout: float) -> bool:
        """Publish and commit everything buffered, retrying storage until `timeout`."""
        deadline = self.clock() + timeout
        clean = True
        self._start_last_batches(list(self.states))
        for partition, state in list(self.states.items()):
            clean &= self._drain(partition, state, deadline)
        self.states.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
        return clean

    def _start_last_batches(self, partitions: list[int]) -> None:
        """Cut and submit every partition's last batch before waiting for any, so they encode
        in parallel instead of one after the other."""
        for partition in partitions:
            state = self.states.get(partition)
            if state is not None:
                self._advance(partition, state, self.clock(), force=True)

    # ---- one partition's progress ----

    def _advance(self, partition: int, state: PartitionState, now: float, force: bool) -> None:
        """Move one partition as far as it can go without waiting."""
        while True:
            if state.job is not None:
                if not state.job.done():
                    return
                self._finish_job(partition, state, now)
            if state.commit_due is not None and state.cut is None and now >= state.commit_retry_at:
                self._commit(partition, state, state.commit_due, now)
            if now < state.retry_at:
                return
            if not state.resolved:
                self._start_resolve(partition, state, now)
                if state.job is None:
                    return
                continue
            if state.cut is None:
                batch = self._cut(state, now, force)
                if batch is None:
                    return
                state.cut, state.pending = batch, None
                state.flush_started = time.perf_counter()
                state.cut_at = now
            self._submit(state, "publish", self._encode_and_store, state.cut, state.pending)

    def _drain(self, partition: int, state: PartitionState, deadline: float) -> bool:
        """Flush everything of one partition, waiting for storage until `deadline`."""
        if state.commit_due is not None:
            state.commit_retry_at = 0.0  # last chance while we still own the partition
        while True:
            self._advance(partition, state, self.clock(), force=True)
            if state.settled:
                return True
            remaining = deadline - self.clock()
            if state.job is not None:
                if remaining <= 0:
                    break
                concurrent.futures.wait([state.job], timeout=min(remaining, 1.0))
            elif state.retry_at > deadline:
                break
            elif not state.resolved and state.nothing_committed and not state.buffer.offsets:
                return True
            else:
                time.sleep(max(0.0, state.retry_at - self.clock()))
        log.error(
            "partition %d: storage still failing; nothing more committed for it, the next run replays it",
            partition,
            extra={"event": "drain_gave_up", "partition": partition},
        )
        return False

    def _submit(self, state: PartitionState, kind: str, function, *args) -> None:
        state.job = self.executor.submit(function, *args)
        state.job_kind = kind

    def _start_resolve(self, partition: int, state: PartitionState, now: float) -> None:
        if not state.nothing_committed:
            try:
                tp = TopicPartition(self.topic, partition)
                committed = self.consumer.committed([tp], timeout=10)[0].offset
            except KafkaException as error:
                state.retry_at = now + self.backoff.delay(1)
                log.warning("cannot read the committed offset of partition %d: %s", partition, error)
                return
            if committed >= 0:
                state.buffer.base = committed
            else:
                state.nothing_committed = True
        if state.nothing_committed:
            if not state.buffer.offsets:
                return  # the first message will tell where the first batch starts
            state.buffer.base = state.buffer.offsets[0]
        self._submit(state, "resolve", self.ledger.find, self.topic, partition, state.buffer.base)

    def _finish_job(self, partition: int, state: PartitionState, now: float) -> None:
        job, kind = state.job, state.job_kind
        state.job = None
        try:
            result = job.result()
        except DecodeUnavailable as error:
            batch, state.cut = state.cut, None
            assert batch is not None  # an encode job runs on the cut batch
            self._decode_unavailable(partition, state, batch, error, now)
            return
        except StorageError as error:  # reading a marker
            self._storage_error(partition, state, error, now, "reading the batch marker")
            return
        if kind == "resolve":
            state.attempts = 0
            self._resolved(partition, state, result)
            return
        state.pending, outcome = result
        if isinstance(outcome, StorageError):
            self._storage_error(partition, state, outcome, now, "publishing a batch")
        elif isinstance(outcome, BatchMarker):
            state.attempts = 0
            self._adopt(partition, state, outcome)
        else:
            state.attempts = 0
            self._published(partition, state, outcome)

    def _storage_error(
        self, partition: int, state: PartitionState, error: StorageError, now: float, doing: str
    ) -> None:
        if error.permanent:
            raise FatalError(str(error)) from error
        self._storage_failed(partition, state, error, now, doing)

    def _resolved(self, partition: int, state: PartitionState, marker: BatchMarker | None) -> None:
        state.resolved = True
        state.forced_end = marker.end if marker is not None else None
        if marker is not None:
            log.info(
                "partition %d: replaying batch %d..%d left by an earlier run",
                partition,
                marker.base,
                marker.end,
                extra={"event": "replay", "partition": partition, "base": marker.base, "end": marker.end},
            )

    def _cut(self, state: PartitionState, now: float, force: bool) -> Batch | None:
        buffer = state.buffer
        if not buffer.offsets:
            return None
        if state.forced_end is not None:
            end = state.forced_end
            if buffer.offsets[-1] < end:
                return None
            state.forced_end = None
            state.flush_reason = "replay"
            self.observer.cut("replay")
            state.due_since = None
            return buffer.take(through_offset=end)
        reason = self.policy.reason(buffer, now) or ("shutdown" if force else None)
        if reason is None and state is self._early_cut and self._at_budget():
            reason = "memory"  # the byte budget is reached: the fullest buffer goes first
        if reason is None and state is self._room_from:
            reason = "memory"  # read to its end while others wait for room: see _caught_up_to_cut
        if reason is None:
            state.due_since = None  # (a buffer cut early for memory is not due once another is fuller)
            return None
        if not force and not self._slot_free(state, now):
            return None
        self._early_cut = self._room_from = None
        state.flush_reason = reason
        self.observer.cut(reason)
        state.due_since = None
        through = buffer.offsets[self.policy.max_records - 1] if len(buffer) > self.policy.max_records else None
        return buffer.take(through_offset=through)

    def _fullest_buffer(self) -> PartitionState | None:
        """The partition whose buffer holds the most bytes, of those that could be cut now."""
        ready = [
            s
            for s in self.states.values()
            if s.buffer.offsets
            and s.cut is None
            and s.job is None
            and s.resolved
            and s.forced_end is None
            and s.attempts == 0
        ]
        return max(ready, key=lambda s: s.buffer.nbytes, default=None)

    def _slot_free(self, state: PartitionState, now: float) -> bool:
        """May this due batch be cut now? Only while fewer than `publish_slots` batches are cut
        and not yet committed, and no other due batch has waited longer (first come, first
        served, so a partition that just published cannot take the slot from one waiting).
        A batch cut with no worker free would only wait in memory, a second copy of a full
        buffer, while its partition filled another."""
        cut = sum(1 for s in self.states.values() if s.cut is not None)
        if cut < self.publish_slots and not any(
            s.due_since is not None and (state.due_since is None or s.due_since < state.due_since)
            for s in self.states.values()
            if s is not state
        ):
            return True
        if state.due_since is None:
            state.due_since = now
        return False

    def _encode_and_store(self, batch: Batch, encoded: EncodedBatch | None):
        """Publisher thread: encode (unless a failed attempt already did) and store. Encoding here,
        not on the main thread, lets `consume()` go on while pyarrow works (it releases the GIL).
        Returns (encoded, outcome); a storage failure is the outcome, so the encoding is kept."""
        if encoded is None:
            encoded = self.encoder.encode(batch)  # DecodeUnavailable propagates: the batch is retried
        try:
            return encoded, self._store_batch(encoded)
        except StorageError as error:
            return encoded, error
        finally:
            return_freed_arrow_memory()  # what making the NDJSON text while writing it allocated

    def _store_batch(self, encoded: EncodedBatch):
        """Publisher thread: marker, data files, dead letters. Returns the number of files
        created, or the marker that holds if another writer claimed this base first."""
        marker = _marker_of(encoded)
        holding = self.ledger.claim(marker)
        if (holding.end, [f.path for f in holding.files]) != (marker.end, [f.path for f in marker.files]):
            return holding
        self.faults.point("after_marker")
        created = 0
        for position, output in enumerate(encoded.files):
            if position:
                self.faults.point("between_files")
            created += self.store.publish(output.path, output.data)
        self.faults.point("after_files")
        self.dead_letters.write(encoded.batch, encoded.rejects)
        self.events.announce(encoded)
        return created

    def _published(self, partition: int, state: PartitionState, created: int) -> None:
        encoded = state.pending
        assert encoded is not None
        state.pending = state.cut = None
        batch = encoded.batch
        landed = sum(f.rows for f in encoded.files)
        size = sum(data_size(f.data) for f in encoded.files)
        self.observer.flushed(
            partition,
            landed,
            size,
            len(encoded.files),
            len(encoded.rejects),
            encoded.widened,
            time.perf_counter() - state.flush_started,
        )
        self.faults.point("before_commit")
        self._commit(partition, state, batch.end + 1, self.clock())
        self.faults.point("after_commit")
        self.stats.records += landed
        self.stats.files += len(encoded.files)
        self.stats.bytes += size
        self.stats.dead_letters += len(encoded.rejects)
        self.stats.widened += encoded.widened
        self.stats.skipped += encoded.skipped
        log.info(
            "flushed partition %d offsets %d..%d: %d rows in %d file(s), %d dead letters",
            partition,
            batch.offsets[0],
            batch.end,
            landed,
            len(encoded.files),
            len(encoded.rejects),
            extra={
                "event": "flush",
                "topic": self.topic,
                "partition": partition,
                "first_offset": batch.offsets[0],
                "last_offset": batch.end,
                "rows": landed,
                "bytes": size,
                "dead_letters": len(encoded.rejects),
                "paths": [f.path for f in encoded.files],
                "new_files": created,
                "reason": state.flush_reason,
            },
        )

    def _adopt(self, partition: int, state: PartitionState, holding: BatchMarker) -> None:
        """Another writer fixed this batch's boundaries first: cut the same batch and redo."""
        encoded = state.pending
        assert encoded is not None
        state.pending = state.cut = None
        if holding.end == encoded.batch.end:
            raise FatalError(
                f"partition {partition}: batch {holding.base}..{holding.end} was published earlier with files "
                f"{[f.path for f in holding.files]}, but this config makes {[f.path for f in encoded.files]}. "
                "Fix: restore the previous output.format / partition_by until this batch is committed"
            )
        state.buffer.restore(encoded.batch)
        state.buffer.base = holding.base
        state.forced_end = holding.end
        log.warning(
            "partition %d: batch from %d already claimed up to %d by another writer; following it",
            partition,
            holding.base,
            holding.end,
            extra={"event": "adopt_marker", "partition": partition},
        )

    def _commit(self, partition: int, state: PartitionState, offset: int, now: float) -> None:
        started = time.perf_counter()
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic, partition, offset)], asynchronous=False)
            self.stats.commits += 1
            self.observer.committed(partition, offset, time.perf_counter() - started, True)
            state.commit_due = None
        except KafkaException as error:
            self.observer.committed(partition, offset, time.perf_counter() - started, False)
            if error.args and isinstance(error.args[0], KafkaError) and error.args[0].fatal():
                # The client is unusable (fenced by another member with our group.instance.id, say):
                # retrying would spin forever; the next owner replays from the marker.
                raise FatalError(f"Kafka client failed for good: {error.args[0].str()}") from error
            # The batch is in the lake and its marker makes a new owner's replay exact. If we keep
            # the partition (a rebalance that changed the generation but not our assignment), the
            # commit is retried, or the last batch of an idle partition would stay uncommitted.
            state.commit_due = offset
            state.commit_retry_at = now + 1.0
            log.warning(
                "commit of partition %d at %d failed, will retry while we own it: %s",
                partition,
                offset,
                error,
                extra={"event": "commit_failed", "partition": partition},
            )

    def _decode_unavailable(
        self, partition: int, state: PartitionState, batch: Batch, error: DecodeUnavailable, now: float
    ) -> None:
        """The schema registry is down: put the batch back (cut the same way next time) and
        retry like a storage outage; its messages are not dead letters."""
        if error.permanent:
            raise FatalError(str(error)) from error
        state.buffer.restore(batch)
        state.forced_end = batch.end
        self._storage_failed(partition, state, error, now, "decoding a batch")

    def _storage_failed(self, partition: int, state: PartitionState, error: Exception, now: float, doing: str) -> None:
        state.attempts += 1
        self.stats.storage_retries += 1
        delay = self.backoff.delay(state.attempts)
        state.retry_at = now + delay
        self.observer.storage_retry(partition, state.attempts)
        log.warning(
            "storage failed while %s for partition %d (attempt %d), retrying in %.1f s: %s",
            doing,
            partition,
            state.attempts,
            delay,
            error,
            extra={"event": "storage_retry", "partition": partition, "attempt": state.attempts},
        )

    def _hold_back(self, partition: int, state: PartitionState) -> None:
        """Pause the partition while storage is failing, while its buffer is full and its
        previous batch is still being published, or while the whole loop is at its memory
        budget and will consume anyway (`holding_all`); resume otherwise. A partition that is
        replaying a batch left by an earlier run is never held for memory: that batch's end
        is fixed, and it cannot be cut before it arrives.
        (Pausing every partition whenever the budget is reached costs throughput: librdkafka
        drops a paused partition's prefetched messages and fetches them again. So while a
        publish is under way the loop stops calling consume() instead, see _poll.)"""
        buffer = state.buffer
        full = buffer.nbytes >= self.policy.max_bytes or len(buffer.offsets) >= self.policy.max_records
        busy = state.job is not None or state.cut is not None or state.due_since is not None
        out_of_focus = self.focus is not None and partition not in self.focus and state.resolved and not state.at_end
        held_for_memory = (self.holding_all or out_of_focus) and state.forced_end is None
        want_paused = state.attempts > 0 or (busy and full) or held_for_memory
        if want_paused == state.paused:
            return
        tp = [TopicPartition(self.topic, partition)]
        try:
            (self.consumer.pause if want_paused else self.consumer.resume)(tp)
            state.paused = want_paused
        except KafkaException:
            pass  # not assigned any more: nothing to hold back

    @property
    def storage_failing(self) -> bool:
        return any(s.attempts > 0 for s in self.states.values())


def _marker_of(encoded: EncodedBatch) -> BatchMarker:
    batch = encoded.batch
    return BatchMarker(
        topic=batch.topic,
        partition=batch.partition,
        base=batch.base,
        end=batch.end,
        records=len(batch),
        dead_letters=len(encoded.rejects),
        files=tuple(MarkedFile(f.path, f.rows, f.first_offset, f.last_offset) for f in encoded.files),
    )
