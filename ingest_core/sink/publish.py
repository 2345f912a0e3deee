"""Publish one batch, on a publisher thread: encode it, claim its boundaries in a batch marker,
write its data files (create-only), its dead letters, and announce it. The flow commits
`end + 1` once this is done (flow.py, steps.py); a crash anywhere in between is replayed
exactly from the marker (ledger.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest_core.batching.buffer import Batch
from ingest_core.ops.faults import FaultInjector
from ingest_core.sink.allocator import FreedMemory
from ingest_core.sink.encode import BatchEncoder, EncodedBatch
from ingest_core.sink.ledger import BatchMarker, Ledger, MarkedFile
from ingest_core.sink.storage import LakeStore, StorageError

# What storing a batch came to: the number of files created, the marker another writer holds
# for this base (its boundaries differ), or the storage error to retry after.
Outcome = int | BatchMarker | StorageError


@dataclass
class Publisher:
    encoder: BatchEncoder
    ledger: Ledger
    store: LakeStore
    dead_letters: Any  # DeadLetterFiles or DeadLetterTopic (deadletter.py)
    events: Any  # landed-batch events (events.py), announced before the commit
    faults: FaultInjector
    freed: FreedMemory  # when the allocator's freed memory goes back: one for every publisher thread

    def encode_and_store(self, batch: Batch, encoded: EncodedBatch | None) -> tuple[EncodedBatch, Outcome]:
        """Encode (unless a failed attempt already did) and store. Encoding here, not on the
        main thread, lets `consume()` go on while pyarrow works (it releases the GIL).
        Returns (encoded, outcome); a storage failure is the outcome, so the encoding is kept."""
        with self.freed.batch():
            if encoded is None:
                encoded = self.encoder.encode(batch)  # DecodeUnavailable propagates: the batch is retried
            try:
                return encoded, self.store_batch(encoded)
            except StorageError as error:
                return encoded, error

    def store_batch(self, encoded: EncodedBatch) -> int | BatchMarker:
        """Marker, data files, dead letters, event. Returns the number of files created, or
        the marker that holds if another writer claimed this base first."""
        marker = marker_of(encoded)
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


def marker_of(encoded: EncodedBatch) -> BatchMarker:
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
