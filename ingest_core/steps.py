"""One partition's steps, as the flow (flow.py) drives them: resolve where its next batch starts,
cut a due batch, hand its publication to a publisher thread (sink/publish.py), take the outcome,
commit, and retry after a backoff when storage fails. The phases these steps move a partition
through are in partition.py; which partitions may fill while memory is short, in batching/focus.py.

`PartitionSteps` is the part of `Pipeline` that works on one partition at a time.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from ingest_core.batching.buffer import Batch, FlushPolicy
from ingest_core.commit import commit_offset, fatal
from ingest_core.ops.faults import FaultInjector
from ingest_core.ops.observer import PipelineObserver
from ingest_core.partition import PartitionState
from ingest_core.retry import Backoff, FatalError
from ingest_core.sink.formats import data_size
from ingest_core.sink.ledger import BatchMarker, Ledger
from ingest_core.sink.publish import Publisher
from ingest_core.sink.storage import StorageError
from ingest_core.source.decoded import DecodeUnavailable

log = logging.getLogger("ingest.pipeline")


class PartitionSteps:
    # Provided by Pipeline (flow.py).
    topic: str
    consumer: Any
    ledger: Ledger
    policy: FlushPolicy
    executor: Any
    publish_slots: int
    clock: Callable[[], float]
    backoff: Backoff
    observer: PipelineObserver
    faults: FaultInjector
    stats: Any
    states: dict[int, PartitionState]
    _early_cut: PartitionState | None
    _room_from: PartitionState | None
    exit_at_end: bool

    @property
    def publisher(self) -> Publisher:
        raise NotImplementedError

    def _at_budget(self) -> bool:
        raise NotImplementedError

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
                state.cut_batch(batch, now, time.perf_counter())
            self._submit(state, "publish", self.publisher.encode_and_store, state.cut, state.pending)

    def _drain(self, partition: int, state: PartitionState, deadline: float) -> bool:
        """Flush and commit everything of one partition, waiting for storage until `deadline`. False when
        something is left for the next owner: a batch not landed, or one landed whose commit Kafka refused."""
        if state.commit_due is not None:
            state.commit_retry_at = 0.0  # last chance while we still own the partition
        while True:
            self._advance(partition, state, self.clock(), force=True)
            if state.settled:
                if state.commit_due is None:
                    return True
                break  # landed, but Kafka refused its commit once more (a rebalance)
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
            "partition %d: %s; nothing more committed for it, the next owner replays it",
            partition,
            "storage still failing" if state.commit_due is None else f"Kafka refused the commit of {state.commit_due}",
            extra={"event": "drain_gave_up", "partition": partition},
        )
        return False

    def _submit(self, state: PartitionState, kind: str, function: Callable[..., Any], *args: Any) -> None:
        state.submitted(kind, self.executor.submit(function, *args))

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
                if dropped := state.buffer.drop_before(committed):
                    log.warning(
                        "partition %d: %d messages before the committed offset %d dropped: already in the lake",
                        partition,
                        dropped,
                        committed,
                        extra={"event": "behind_commit", "partition": partition, "dropped": dropped},
                    )
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
            self._decode_unavailable(partition, state, error, now)
            return
        except StorageError as error:  # reading a marker
            state.job_failed()
            self._storage_error(partition, state, error, now, "reading the batch marker")
            return
        if kind == "resolve":
            state.attempts = 0
            self._resolved(partition, state, result)
            return
        state.pending, outcome = result
        if isinstance(outcome, StorageError):
            state.job_failed()
            self._storage_error(partition, state, outcome, now, "publishing a batch")
        elif isinstance(outcome, BatchMarker):
            state.attempts = 0
            self._adopt(partition, state, outcome, now)
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
        state.resolved_to(marker.end if marker is not None else None)
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
        if reason is None and self.exit_at_end and state.at_end:
            reason = "end"  # --exit-at-end: what a partition holds once it is read to its end lands now
        if reason is None and state is self._room_from:
            reason = "memory"  # read to its end while others wait for room: see focus.caught_up_to_cut
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

    def _published(self, partition: int, state: PartitionState, created: int) -> None:
        encoded = state.published()
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

    def _adopt(self, partition: int, state: PartitionState, holding: BatchMarker, now: float) -> None:
        """Another writer fixed this batch's boundaries first: cut the same batch and redo."""
        encoded = state.pending
        assert encoded is not None  # a publish job's result sets it
        if holding.end == encoded.batch.end:
            raise FatalError(
                f"partition {partition}: batch {holding.base}..{holding.end} was published earlier with files "
                f"{[f.path for f in holding.files]}, but this config makes {[f.path for f in encoded.files]}. "
                "Fix: restore the previous output.format / partition_by until this batch is committed"
            )
        state.put_back(encoded.batch, holding.end, now, holding.base)
        log.warning(
            "partition %d: batch from %d already claimed up to %d by another writer; following it",
            partition,
            holding.base,
            holding.end,
            extra={"event": "adopt_marker", "partition": partition},
        )

    def _commit(self, partition: int, state: PartitionState, offset: int, now: float) -> None:
        started = time.perf_counter()
        error = commit_offset(self.consumer, self.topic, partition, offset)
        if error is None:
            self.stats.commits += 1
            self.observer.committed(partition, offset, time.perf_counter() - started, True)
            state.commit_due = None
            return
        self.observer.committed(partition, offset, time.perf_counter() - started, False)
        if (failed := fatal(error)) is not None:
            # The next owner replays from the marker.
            raise FatalError(f"Kafka client failed for good: {failed.str()}") from error
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

    def _decode_unavailable(self, partition: int, state: PartitionState, error: DecodeUnavailable, now: float) -> None:
        """The schema registry is down: put the batch back (cut the same way next time) and
        retry like a storage outage; its messages are not dead letters."""
        batch = state.cut
        assert batch is not None  # an encode job runs on the cut batch
        if error.permanent:
            raise FatalError(str(error)) from error
        state.put_back(batch, batch.end, now)
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
