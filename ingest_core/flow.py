"""The flow: consume → decode → batch → encode → publish → commit, for every assigned partition.

    consume()        Kafka, on the main thread (`Pipeline.run` / `_poll`)
      → batch        per-partition buffers (batching/buffer.py), cut by the flush policy
      → decode+encode  on a publisher thread (sink/encode.py; decoders in source/)
      → publish      marker → data files → dead letters → event (sink/publish.py)
      → commit       `end + 1`, on the main thread, for partitions we still own (commit.py)

The main thread owns the consumer and all state. Each turn (`run` below) it takes what `consume()` returns into
per-partition buffers (`accept`), then moves every partition through its phases (`turn`: partition.py holds the
phases, steps.py the steps), and pauses or resumes partitions for storage trouble and memory (batching/focus.py).

Why threads: storage calls can block for as long as an outage lasts; off the main thread, `consume()` keeps being
called, so the member stays in its group past `max.poll.interval.ms`. A partition has at most one storage job in
flight (its batches stay in order); at most `publish_slots` batches are cut and not committed (a due batch waits in
its paused buffer).

Memory: the message bytes held (buffered, or cut and not committed), with what their maps hold beyond them, and the
idle maps kept for new buffers (batching/maps.py) stay within one budget per process (`memory_budget`, from
memory.limit: batching/budget.py), never above batch.max_bytes x (assigned partitions + publish_slots). At the budget
the fullest buffer is cut early (flush reason "memory") when a publish slot is free; otherwise the loop waits for a
batch to be published instead of consuming; when it must call consume() anyway (storage failing, or publication
slower than `memory_wait_limit`), every partition is paused first, so one consume() call bounds what comes.
A job abandoned on revoke is harmless: the next owner's replay makes the same files (ledger.py).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from ingest_core.batching import focus as memory
from ingest_core.batching import intake
from ingest_core.batching.buffer import FlushPolicy, PartitionBuffer
from ingest_core.batching.maps import MapPool
from ingest_core.ops.faults import FaultInjector
from ingest_core.ops.observer import PipelineObserver, Stats
from ingest_core.partition import PartitionState
from ingest_core.retry import Backoff, FatalError
from ingest_core.sink.allocator import FreedMemory
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.events import NoEvents
from ingest_core.sink.ledger import Ledger
from ingest_core.sink.publish import Publisher
from ingest_core.sink.storage import LakeStore
from ingest_core.source.kafka import consume_error_text, read_to_high_watermark, restart_fetching, set_paused
from ingest_core.steps import PartitionSteps

log = logging.getLogger("ingest.pipeline")

_PARTITION_EOF = KafkaError._PARTITION_EOF  # what consume() hands over when a partition is read to its end


@dataclass
class Pipeline(PartitionSteps):
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
    # While a storage job is in flight, consume() waits at most this long: it waits for a whole consume_batch, and a
    # job that ends meanwhile frees a publish slot only when the loop comes round (at 200 B values, slots sat idle
    # for up to poll_timeout while paused partitions refetched: bench/RESULTS.md).
    busy_poll_timeout: float = 0.01
    revoke_timeout: float = 10.0
    # Message bytes held at most (buffered, or cut and not yet committed); None: max_bytes x
    # (assigned partitions + publish_slots) alone. The runner sets it from memory.limit (budget.MemoryBudget).
    memory_budget: int | None = None
    # At the budget the loop waits for publication instead of consuming, but never for longer than this at a stretch:
    # storage that is slow (not failing) must not keep us from calling consume() until max.poll.interval.ms throws us
    # out of the group. Past it, every partition is paused before consume() (focus.py should_pause): the budget holds.
    memory_wait_limit: float = 10.0
    # The consumer reports each partition's end (librdkafka `enable.partition.eof`, set by the
    # runner for --exit-when-idle): an idle exit then also waits until every partition we own
    # has been read to its end, so a slow first fetch is not taken for an empty topic.
    partition_eof: bool = False
    exit_at_end: bool = False  # --exit-at-end: cut each partition at its end (steps._cut); run() stops when all are
    assigned_once: bool = False  # some partition has been assigned since the start
    stats: Stats = field(default_factory=Stats)
    observer: PipelineObserver = field(default_factory=PipelineObserver)
    faults: FaultInjector = field(default_factory=FaultInjector)
    events: Any = field(default_factory=NoEvents)  # landed-batch events (events.py), announced before the commit
    states: dict[int, PartitionState] = field(default_factory=dict)
    maps: MapPool = field(default_factory=MapPool)  # the buffers' memory maps, reused (batching/maps.py)
    freed: FreedMemory = field(default_factory=FreedMemory)  # when encoding's freed memory goes back (allocator.py)
    waiting_for_memory: bool = False  # the last _poll() waited for publication instead of consuming
    holding_all: bool = False  # at the budget and about to consume anyway: every partition is paused
    # Under memory pressure, the partitions that may consume: the fullest, as many as the
    # budget lets grow to a full batch (None: all). See batching/focus.py.
    focus: frozenset[int] | None = None
    _consumed_at: float = 0.0  # when consume() was last called
    _early_cut: PartitionState | None = None  # at the byte budget: the buffer to cut before it is due
    _room_from: PartitionState | None = None  # a caught-up buffer to cut for partitions waiting for room

    def __post_init__(self) -> None:
        if self.executor is None:
            # Two workers: two batches encode at once on two cores; more would only hold more memory.
            self.executor = concurrent.futures.ThreadPoolExecutor(self.publish_slots, thread_name_prefix="publisher")

    @property
    def publisher(self) -> Publisher:
        """The publisher threads' side, with the sinks as they are now (tests swap events)."""
        return Publisher(self.encoder, self.ledger, self.store, self.dead_letters, self.events, self.faults, self.freed)

    # ---- the loop ----

    def run(
        self, should_stop: Callable[[], bool], exit_when_idle: float | None = None, shutdown_timeout: float = 30.0
    ) -> bool:
        """Loop until `should_stop()` (or idle for `exit_when_idle` s, or all read to the end with
        `exit_at_end`); then flush and commit. False when storage still failed, or Kafka refused a commit, at shutdown."""
        last_message_at = self.clock()
        while not should_stop():
            # An idle exit is checked once per turn: a turn waits no longer than the idle time left.
            idle_left = None if exit_when_idle is None else exit_when_idle - (self.clock() - last_message_at)
            messages = self._poll(idle_left)
            now = self.clock()
            if messages or not self.states or self.waiting_for_memory or any(s.paused for s in self.states.values()):
                # Idle counts only while we own partitions and consume from all of them: after a
                # crash the dead member may hold them until its session times out, and a partition
                # (or the whole loop, at the byte budget) we hold back is waiting for the lake;
                # neither is an empty topic.
                last_message_at = now
                self.accept(messages, now)
            elif exit_when_idle is not None and now - last_message_at >= exit_when_idle / 2 and self._all_at_end():
                # All read to the end, half the idle time gone: the idle exit's batches are cut now and
                # publish while the rest runs out. (A trickle with shorter gaps never gets here, so it
                # makes no small files; a message that still comes starts a new buffer.)
                self._start_last_batches(list(self.states))
            self.turn(now)
            if self.exit_at_end and self._all_at_end() and self._drained() and self._buffers_empty():
                log.info("every partition read to its end and published; stopping", extra={"event": "end_exit"})
                break
            if exit_when_idle is not None and now - last_message_at >= exit_when_idle and self._drained():
                log.info("no message for %g s; stopping", exit_when_idle, extra={"event": "idle_exit"})
                break
        return self.shutdown(shutdown_timeout)

    def _poll(self, wait_limit: float | None = None) -> list:
        """The next messages. While a batch is being published and nothing may arrive (every partition paused) or
        nothing should (the messages held reach the byte budget), wait for that job instead: consume() would sleep
        its whole timeout, or hand over messages we have no room for. Once paused, consume without waiting, which
        still serves rebalances and keeps us in the group; at the budget, return nothing until there is room
        (librdkafka's bounded prefetch then stops fetching by itself). consume() returns with a whole consume_batch
        or at its timeout: with `exit_at_end` a short one while partitions are owned, or a topic's last messages
        would wait all of it, and before the first assignment, which comes inside a consume() call that would
        otherwise go on waiting its whole timeout for a small topic's messages (a member that owns nothing after
        that waits as usual)."""
        jobs = [s.job for s in self.states.values() if s.job is not None]
        all_paused = all(s.paused for s in self.states.values())
        self.waiting_for_memory = False
        poll_timeout = self.poll_timeout if wait_limit is None else max(0.01, min(self.poll_timeout, wait_limit))
        if self.exit_at_end and (self.states or not self.assigned_once):
            poll_timeout = min(poll_timeout, self.busy_poll_timeout)
        if jobs and (all_paused or self._wait_for_memory()):
            concurrent.futures.wait(jobs, timeout=poll_timeout, return_when=concurrent.futures.FIRST_COMPLETED)
            if not all_paused:  # waited for room: the turn first lets go of what was published
                self.waiting_for_memory = True
                return []
            self._consumed_at = self.clock()
            return self.consumer.consume(self.consume_batch, 0)
        if self._at_budget() and not self.holding_all:
            # At the budget, yet consuming (nothing is being published, storage is failing, or
            # we waited memory_wait_limit): pause everything consume() could bring more of.
            self.holding_all = True
            self._hold_back_all()
        self._consumed_at = self.clock()
        return self.consumer.consume(
            self.consume_batch, min(self.busy_poll_timeout, poll_timeout) if jobs else poll_timeout
        )

    def accept(self, messages, now: float) -> None:
        states, consumer, topic = self.states, self.consumer, self.topic
        before = sum(s.buffer.nbytes for s in states.values())
        by_partition, reports = intake.by_partition(messages)  # (in C: one pass, no Python per message)
        ends: dict[int, int] = {}  # partition -> how many of its messages came before its end was reported
        for message, earlier in reports:
            error = message.error()
            if error.code() == _PARTITION_EOF:  # information, not an error
                ends[message.partition()] = earlier
            elif error.fatal():  # e.g. fenced by another member with our group.instance.id
                raise FatalError(f"Kafka client failed for good: {error.str()}")
            else:
                log.warning("consume error: %s", consume_error_text(error), extra={"event": "consume_error"})
        for partition, group in by_partition.items():
            state = states.get(partition)
            if state is not None:
                state.buffer.extend(group, now)
                reported = ends.get(partition) == len(group)  # else: did its last message reach the high watermark?
                state.at_end = reported or read_to_high_watermark(consumer, topic, partition, group[-1].offset())
        for partition in ends.keys() - by_partition.keys():
            state = states.get(partition)
            if state is not None:
                state.at_end = True
        self.observer.consumed(len(messages) - len(reports), sum(s.buffer.nbytes for s in states.values()) - before)

    def turn(self, now: float) -> None:
        # Maps are reused while the budget holds a full batch per partition, idle ones kept only where messages may go.
        self.maps.reuse = memory.holds_full_batches(
            self.memory_budget, self.policy.max_bytes, len(self.states), self.publish_slots
        )
        self.maps.let_go(room=self.budget_bytes() - self.held_bytes(), now=now)
        self.freed.settle()
        if self._at_budget():  # pages of reused maps beyond their values first: a cut would not free them
            self.maps.give_back_slack(self.held_bytes() - self.budget_bytes() + 1)
        self._early_cut = memory.fullest_buffer(self.states.values()) if self._at_budget() else None
        self._room_from = memory.caught_up_to_cut(self.states, self.focus)
        for partition, state in list(self.states.items()):
            self._advance(partition, state, now, force=False)
        if self.holding_all and not self._at_budget():
            self.holding_all = False  # room again: _hold_back_all resumes what it paused for memory
        self.focus = self._choose_focus(now)
        self._hold_back_all()
        self.observer.memory(self.held_bytes(), self.budget_bytes())

    def _all_at_end(self) -> bool:
        """Every partition we own read to its end (reported only with `partition_eof`)."""
        return self.partition_eof and bool(self.states) and all(s.at_end for s in self.states.values())

    def _buffers_empty(self) -> bool:  # (a replay waiting for its end offset is left to shutdown)
        return all(not s.buffer.offsets or s.forced_end is not None for s in self.states.values())

    def _drained(self) -> bool:
        """Nothing in flight or owed to Kafka (a commit a rebalance refused is retried while the loop
        still serves the group), and (when the consumer reports them) every partition at its end."""
        return all(
            s.job is None and s.cut is None and s.commit_due is None and (s.at_end or not self.partition_eof)
            for s in self.states.values()
        )

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

    # ---- rebalance callbacks (librdkafka calls them from inside consume()) ----

    def on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            buffer = PartitionBuffer(self.topic, tp.partition, with_headers=self.encoder.reads_headers, maps=self.maps)
            self.states[tp.partition] = PartitionState(buffer)
        numbers = sorted(tp.partition for tp in partitions)
        self.assigned_once = self.assigned_once or bool(numbers)
        log.info("assigned partitions %s", numbers, extra={"event": "assigned", "partitions": numbers})
        self.observer.assignment(sorted(self.states))

    def on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        """We still own the partitions here: publish and commit what we can in time, drop the rest."""
        self.faults.point("on_revoke")
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

    # ---- memory (the decisions are batching/focus.py's) ----

    def held_bytes(self) -> int:
        """Bytes of messages held (buffered, or cut and not yet committed), and the pages their
        values' maps hold resident beyond them (a reused map keeps what it held before)."""
        return memory.held_bytes(self.states.values()) + self.maps.slack_bytes()

    def budget_bytes(self) -> int:
        """Message bytes we may hold now (see memory.budget_bytes)."""
        return memory.budget_bytes(self.memory_budget, self.policy.max_bytes, len(self.states), self.publish_slots)

    def _at_budget(self) -> bool:
        return bool(self.states) and self.held_bytes() >= self.budget_bytes()

    def _choose_focus(self, now: float) -> frozenset[int] | None:
        """Which partitions may consume while memory is short (memory.choose_focus); None without memory_budget."""
        if self.memory_budget is None or not self.states:
            return None
        return memory.choose_focus(
            self.states, self.policy.max_bytes, self.budget_bytes(), self.held_bytes(), self.focus, self.publish_slots
        )

    def _wait_for_memory(self) -> bool:
        """Wait for publication rather than consume more? At the budget, with a batch being
        published, unless storage is failing or we waited too long (then we consume with
        every partition paused: see memory.should_pause)."""
        return (
            self._at_budget()
            and any(s.job is not None for s in self.states.values())
            and not self.storage_failing
            and self.clock() - self._consumed_at < self.memory_wait_limit
        )

    def _hold_back_all(self) -> None:
        """Pause or resume each partition as memory.should_pause says (always, when its state is not
        known yet: a newly assigned partition). Resumed while every partition was paused, librdkafka's
        fetcher would sleep on for up to a second: restart_fetching wakes it."""
        fetching_none = all(s.paused for s in self.states.values())
        for partition, state in list(self.states.items()):
            want_paused = memory.should_pause(partition, state, self.policy, self.focus, self.holding_all)
            if want_paused != state.paused and set_paused(self.consumer, self.topic, partition, want_paused):
                state.paused = want_paused
        resumed = [partition for partition, state in self.states.items() if not state.paused]
        if fetching_none and resumed:
            restart_fetching(self.consumer, self.topic, resumed)

    @property
    def storage_failing(self) -> bool:
        return any(s.attempts > 0 for s in self.states.values())
