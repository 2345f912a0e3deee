"""The consumer loop: consume → decode → batch → encode → publish → commit, one partition at a time.

One thread does everything, in this order each turn: take what `consume()` returns
into per-partition buffers, resolve newly assigned partitions (committed offset and
any batch marker left by a crash), then flush every buffer that is due. A flush is
marker → data files → dead letters → commit `end + 1`; when storage fails the encoded
batch is kept, its partition paused, and the flush retried with backoff while the loop
keeps calling `consume()`, so the consumer stays in its group.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import KafkaException, TopicPartition

from .batch import Batch, FlushPolicy, PartitionBuffer
from .encode import BatchEncoder, EncodedBatch
from .ledger import BatchMarker, Ledger, MarkedFile
from .storage import LakeStore, StorageError

log = logging.getLogger("ingest.pipeline")


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
    commits: int = 0
    storage_retries: int = 0


@dataclass
class PartitionState:
    buffer: PartitionBuffer
    resolved: bool = False  # base (committed offset) and any crash marker are known
    forced_end: int | None = None  # a marker fixed where the current batch ends
    pending: EncodedBatch | None = None  # encoded, waiting for storage to accept it
    attempts: int = 0
    retry_at: float = 0.0
    paused: bool = False


@dataclass
class Pipeline:
    topic: str
    consumer: object  # confluent_kafka.Consumer or a test double with the same methods
    encoder: BatchEncoder
    store: LakeStore
    ledger: Ledger
    dead_letters: object
    policy: FlushPolicy
    clock: Callable[[], float] = time.monotonic
    backoff: Backoff = field(default_factory=Backoff)
    consume_batch: int = 5000
    poll_timeout: float = 0.5
    stats: Stats = field(default_factory=Stats)
    states: dict[int, PartitionState] = field(default_factory=dict)

    # ---- rebalance callbacks (called by librdkafka from inside consume()) ----

    def on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.states[tp.partition] = PartitionState(PartitionBuffer(self.topic, tp.partition))
        log.info("assigned partitions %s", sorted(tp.partition for tp in partitions),
                 extra={"event": "assigned", "partitions": sorted(tp.partition for tp in partitions)})

    def on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        """We still own the partitions here: publish and commit what we can, drop the rest."""
        for tp in partitions:
            state = self.states.get(tp.partition)
            if state is not None:
                self._drain(tp.partition, state, deadline=self.clock())
                self.states.pop(tp.partition, None)
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions),
                 extra={"event": "revoked", "partitions": sorted(tp.partition for tp in partitions)})

    def on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        """Lost without a clean revoke: someone else may own them now, so publish nothing."""
        for tp in partitions:
            self.states.pop(tp.partition, None)
        log.warning("lost partitions %s; their buffers were dropped, nothing committed",
                    sorted(tp.partition for tp in partitions), extra={"event": "lost"})

    # ---- the loop ----

    def run(self, should_stop: Callable[[], bool], exit_when_idle: float | None = None,
            shutdown_timeout: float = 30.0) -> bool:
        """Loop until `should_stop()` (or idle for `exit_when_idle` s); then flush and commit.
        Returns True when everything consumed was published and committed."""
        last_message_at = self.clock()
        while not should_stop():
            messages = self.consumer.consume(self.consume_batch, self.poll_timeout)
            now = self.clock()
            if messages:
                last_message_at = now
                self._accept(messages, now)
            self.turn(now)
            if exit_when_idle is not None and now - last_message_at >= exit_when_idle \
                    and not any(s.pending for s in self.states.values()):
                log.info("no message for %.0f s; stopping", exit_when_idle, extra={"event": "idle_exit"})
                break
        return self.shutdown(shutdown_timeout)

    def turn(self, now: float) -> None:
        """One loop turn's work after consuming: resolve new partitions, flush what is due."""
        for partition, state in list(self.states.items()):
            if not state.resolved and now >= state.retry_at:
                self._resolve(partition, state, now)
            if state.pending is not None:
                if now >= state.retry_at:
                    self._publish(partition, state, now)
                continue
            if state.resolved:
                batch = self._cut(state, now, force=False)
                if batch is not None:
                    self._flush(partition, state, batch, now)

    def shutdown(self, timeout: float) -> bool:
        """Publish and commit everything buffered, retrying storage until `timeout`."""
        deadline = self.clock() + timeout
        clean = True
        for partition, state in list(self.states.items()):
            clean &= self._drain(partition, state, deadline)
        self.states.clear()
        return clean

    # ---- steps ----

    def _accept(self, messages, now: float) -> None:
        states = self.states
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != -191:  # _PARTITION_EOF is information, not an error
                    log.warning("consume error: %s", error.str(), extra={"event": "consume_error"})
                continue
            state = states.get(message.partition())
            if state is not None:
                state.buffer.append(message, now)

    def _resolve(self, partition: int, state: PartitionState, now: float) -> None:
        try:
            committed = self.consumer.committed([TopicPartition(self.topic, partition)], timeout=10)[0].offset
        except KafkaException as error:
            state.retry_at = now + self.backoff.delay(1)
            log.warning("cannot read the committed offset of partition %d: %s", partition, error)
            return
        if committed >= 0:
            base = committed
        elif state.buffer.offsets:
            base = state.buffer.offsets[0]
        else:
            return  # nothing committed and nothing consumed yet: the first message will tell
        try:
            marker = self.ledger.find(self.topic, partition, base)
        except StorageError as error:
            self._storage_failed(partition, state, error, now, "reading the batch marker")
            return
        state.buffer.base = base
        state.forced_end = marker.end if marker is not None else None
        state.resolved = True
        state.attempts = 0
        self._resume(partition, state)
        if marker is not None:
            log.info("partition %d: replaying batch %d..%d left by an earlier run", partition, base, marker.end,
                     extra={"event": "replay", "partition": partition, "base": base, "end": marker.end})

    def _cut(self, state: PartitionState, now: float, force: bool) -> Batch | None:
        buffer = state.buffer
        if not buffer.offsets:
            return None
        if state.forced_end is not None:
            end = state.forced_end
            if buffer.offsets[-1] < end:
                return None
            state.forced_end = None
            return buffer.take(through_offset=end)
        reason = self.policy.reason(buffer, now) or ("shutdown" if force else None)
        if reason is None:
            return None
        through = buffer.offsets[self.policy.max_records - 1] if len(buffer) > self.policy.max_records else None
        return buffer.take(through_offset=through)

    def _flush(self, partition: int, state: PartitionState, batch: Batch, now: float) -> None:
        state.pending = self.encoder.encode(batch)
        state.attempts = 0
        self._publish(partition, state, now)

    def _publish(self, partition: int, state: PartitionState, now: float) -> bool:
        encoded = state.pending
        assert encoded is not None
        batch = encoded.batch
        started = time.perf_counter()
        marker = _marker_of(encoded)
        try:
            holding = self.ledger.claim(marker)
            if (holding.end, [f.path for f in holding.files]) != (marker.end, [f.path for f in marker.files]):
                return self._adopt(partition, state, holding)
            created = sum(self.store.publish(f.path, f.data) for f in encoded.files)
            self.dead_letters.write(batch, encoded.rejects)
        except StorageError as error:
            if error.permanent:
                raise FatalError(str(error)) from error
            self._storage_failed(partition, state, error, now, "publishing a batch")
            return False
        self._commit(partition, batch.end + 1)
        state.pending = None
        state.attempts = 0
        self._resume(partition, state)
        landed = sum(f.rows for f in encoded.files)
        size = sum(len(f.data) for f in encoded.files)
        self.stats.records += landed
        self.stats.files += len(encoded.files)
        self.stats.bytes += size
        self.stats.dead_letters += len(encoded.rejects)
        self.stats.widened += encoded.widened
        log.info(
            "flushed partition %d offsets %d..%d: %d rows in %d file(s), %d dead letters",
            partition, batch.offsets[0], batch.end, landed, len(encoded.files), len(encoded.rejects),
            extra={"event": "flush", "topic": self.topic, "partition": partition, "first_offset": batch.offsets[0],
                   "last_offset": batch.end, "rows": landed, "bytes": size, "dead_letters": len(encoded.rejects),
                   "paths": [f.path for f in encoded.files], "new_files": created,
                   "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return True

    def _adopt(self, partition: int, state: PartitionState, holding: BatchMarker) -> bool:
        """Another writer fixed this batch's boundaries first: cut the same batch and redo."""
        encoded = state.pending
        assert encoded is not None
        if holding.end == encoded.batch.end:
            raise FatalError(
                f"partition {partition}: batch {holding.base}..{holding.end} was published earlier with files "
                f"{[f.path for f in holding.files]}, but this config makes {[f.path for f in encoded.files]}. "
                "Fix: restore the previous output.format / partition_by until this batch is committed"
            )
        state.buffer.restore(encoded.batch)
        state.buffer.base = holding.base
        state.forced_end = holding.end
        state.pending = None
        log.warning("partition %d: batch from %d already claimed up to %d by another writer; following it",
                    partition, holding.base, holding.end, extra={"event": "adopt_marker", "partition": partition})
        return False

    def _commit(self, partition: int, offset: int) -> None:
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic, partition, offset)], asynchronous=False)
            self.stats.commits += 1
        except KafkaException as error:
            # The batch is in the lake and its marker makes the next owner's replay exact.
            log.warning("commit of partition %d at %d failed: %s", partition, offset, error,
                        extra={"event": "commit_failed", "partition": partition})

    def _storage_failed(self, partition: int, state: PartitionState, error: StorageError, now: float, doing: str) -> None:
        state.attempts += 1
        self.stats.storage_retries += 1
        delay = self.backoff.delay(state.attempts)
        state.retry_at = now + delay
        self._pause(partition, state)
        log.warning("storage failed while %s for partition %d (attempt %d), retrying in %.1f s: %s",
                    doing, partition, state.attempts, delay, error,
                    extra={"event": "storage_retry", "partition": partition, "attempt": state.attempts})

    def _drain(self, partition: int, state: PartitionState, deadline: float) -> bool:
        """Publish the pending batch and what is buffered, retrying storage until `deadline`.
        False only when storage kept failing; what is left unpublished stays uncommitted."""
        while True:
            now = self.clock()
            if state.pending is None and not state.resolved and state.buffer.offsets:
                self._resolve(partition, state, now)
            if state.pending is None and state.resolved:
                batch = self._cut(state, now, force=True)
                if batch is not None:
                    state.pending = self.encoder.encode(batch)
                    state.attempts = 0
            if state.pending is not None:
                if self._publish(partition, state, now):
                    continue
            elif state.resolved or not state.buffer.offsets:
                # Done; or a replayed batch not complete yet, which the next owner replays.
                return True
            if state.retry_at > deadline:
                log.error("partition %d: storage still failing at shutdown; nothing more committed for it, "
                          "the next run replays it", partition, extra={"event": "drain_gave_up"})
                return False
            time.sleep(max(0.0, state.retry_at - self.clock()))

    def _pause(self, partition: int, state: PartitionState) -> None:
        if not state.paused:
            try:
                self.consumer.pause([TopicPartition(self.topic, partition)])
                state.paused = True
            except KafkaException:
                pass  # not assigned any more: nothing to hold back

    def _resume(self, partition: int, state: PartitionState) -> None:
        if state.paused:
            try:
                self.consumer.resume([TopicPartition(self.topic, partition)])
            except KafkaException:
                pass
            state.paused = False


def _marker_of(encoded: EncodedBatch) -> BatchMarker:
    batch = encoded.batch
    return BatchMarker(
        topic=batch.topic, partition=batch.partition, base=batch.base, end=batch.end,
        records=len(batch), dead_letters=len(encoded.rejects),
        files=tuple(MarkedFile(f.path, f.rows, f.first_offset, f.last_offset) for f in encoded.files),
    )
