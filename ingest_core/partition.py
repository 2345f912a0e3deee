"""One assigned partition's state: where it is in its cycle (a `Phase`), and what it holds.

A partition goes round this cycle, one batch at a time (the transitions are `PartitionState`'s
methods; any other move raises):

    UNRESOLVED --resolve job--> RESOLVING --marker read--> FILLING --batch due--> CUT
        ^                           |                        ^  ^                  |
        +------ storage error ------+                        |  |        publish job
                                                             |  |                  v
                                        batch back in buffer +  +--- published -- PUBLISHING
                                (another writer's marker,                           |
                                 registry down)             CUT <-- storage error --+

- UNRESOLVED: assigned; the committed offset (the next batch's base) and any marker a crash
  left there are not known yet. RESOLVING: the marker is being read on a publisher thread.
- FILLING: messages go into the buffer; a batch is cut when the flush policy says so (or, when
  replaying a marker, exactly at its end: `forced_end`).
- CUT: a batch is cut and waits for a publish slot or for its retry (`retry_at`); its encoding
  is kept across retries (`pending`). PUBLISHING: it is encoded and stored on a publisher thread.
Beside the phase: a commit Kafka refused is retried while we own the partition (`commit_due`),
and the partition may be paused (storage failing, buffer full, memory short).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from ingest_core.batching.buffer import Batch, PartitionBuffer
from ingest_core.sink.encode import EncodedBatch


class Phase(Enum):
    UNRESOLVED = "unresolved"
    RESOLVING = "resolving"
    FILLING = "filling"
    CUT = "cut"
    PUBLISHING = "publishing"


_NEXT = {
    Phase.UNRESOLVED: {Phase.RESOLVING},
    Phase.RESOLVING: {Phase.FILLING, Phase.UNRESOLVED},
    Phase.FILLING: {Phase.CUT},
    Phase.CUT: {Phase.PUBLISHING},
    Phase.PUBLISHING: {Phase.FILLING, Phase.CUT},
}


@dataclass
class PartitionState:
    buffer: PartitionBuffer
    phase: Phase = Phase.UNRESOLVED
    nothing_committed: bool = False  # the group has no offset here: the first message gives the base
    forced_end: int | None = None  # a marker fixed where the current batch ends
    cut: Batch | None = None  # the batch cut from the buffer and not yet committed (CUT, PUBLISHING)
    pending: EncodedBatch | None = None  # its encoding, once done (kept across storage retries)
    job: Any = None  # the concurrent.futures.Future in flight for this partition (RESOLVING, PUBLISHING)
    flush_started: float = 0.0  # perf_counter when the pending batch was cut
    flush_reason: str = ""  # why it was cut: records, bytes, age, memory (byte budget), shutdown, replay
    commit_due: int | None = None  # a published batch's commit that Kafka refused; retried
    commit_retry_at: float = 0.0
    attempts: int = 0  # failed storage attempts in a row (0: storage is fine)
    retry_at: float = 0.0  # no new attempt before this (clock())
    # Whether the consumer has it paused; None until the first turn sets it explicitly:
    # librdkafka keeps a partition's pause across a revoke and a later assign, so a partition
    # paused when it was taken away would come back paused and never be fetched again.
    paused: bool | None = None
    due_since: float | None = None  # a batch is due but every publish slot is taken: since when
    at_end: bool = False  # the consumer reported the partition's end after its last message
    cut_at: float = 0.0  # when its last batch was cut (clock()): the least recently cut get memory first

    @property
    def resolved(self) -> bool:
        """The base (committed offset) and any crash marker are known."""
        return self.phase not in (Phase.UNRESOLVED, Phase.RESOLVING)

    @property
    def job_kind(self) -> str:
        """What the job in flight does: "resolve" or "publish" ("" between jobs)."""
        return {Phase.RESOLVING: "resolve", Phase.PUBLISHING: "publish"}.get(self.phase, "")

    @property
    def settled(self) -> bool:
        """Nothing in flight and nothing that could be flushed now."""
        return (
            self.job is None
            and self.cut is None
            and (not self.buffer.offsets or (self.resolved and self.forced_end is not None))
        )

    # ---- transitions ----

    def _go(self, phase: Phase) -> None:
        if phase not in _NEXT[self.phase]:
            raise RuntimeError(f"partition {self.buffer.partition}: no transition from {self.phase} to {phase}")
        self.phase = phase

    def submitted(self, kind: str, job: Any) -> None:
        """A job runs for this partition: reading its marker ("resolve") or publishing its cut batch."""
        self._go(Phase.RESOLVING if kind == "resolve" else Phase.PUBLISHING)
        self.job = job

    def resolved_to(self, marker_end: int | None) -> None:
        """The marker at the base is read: none, or the end of a batch to replay exactly."""
        self._go(Phase.FILLING)
        self.forced_end = marker_end

    def job_failed(self) -> None:
        """Storage failed: read the marker again, or publish the same batch again, after a backoff."""
        self._go(Phase.UNRESOLVED if self.phase is Phase.RESOLVING else Phase.CUT)

    def cut_batch(self, batch: Batch, now: float, started: float) -> None:
        self._go(Phase.CUT)
        self.cut, self.pending = batch, None
        self.flush_started = started
        self.cut_at = now

    def published(self) -> EncodedBatch:
        """The batch is in the lake: back to filling. Returns its encoding."""
        encoded = self.pending
        assert encoded is not None  # a publish job's result sets it
        self._go(Phase.FILLING)
        self.pending = self.cut = None
        return encoded

    def put_back(self, batch: Batch, end: int, now: float, base: int | None = None) -> None:
        """The batch goes back into the buffer, to be cut again exactly up to `end` (and from
        `base`, when another writer's marker says where it starts)."""
        self._go(Phase.FILLING)
        self.pending = self.cut = None
        self.buffer.restore(batch, now)
        if base is not None:
            self.buffer.base = base
        self.forced_end = end
