"""Per-partition buffers and the policy that decides when one is flushed.

A buffer holds the consumed messages of one partition column by column (offsets,
timestamps, keys, values, headers), so the encoders can work on whole arrays.
`FlushPolicy.reason()` is a pure function of a buffer and the clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .settings import BatchSettings


class KafkaMessage(Protocol):
    """The part of confluent_kafka.Message the pipeline reads (tests pass fakes)."""

    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


@dataclass(frozen=True)
class Batch:
    """A cut of one partition's messages, ready to encode. `base` is the offset the batch
    follows (the committed position when it started); `end` its last offset."""

    topic: str
    partition: int
    base: int
    offsets: list[int]
    timestamps: list[int]  # milliseconds since the epoch, UTC
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[Any]
    nbytes: int = 0  # bytes of keys and values, as counted against batch.max_bytes

    @property
    def end(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass
class PartitionBuffer:
    topic: str
    partition: int
    base: int | None = None  # next offset to commit; None until the first message or assignment says
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    nbytes: int = 0
    opened_at: float | None = None  # monotonic time of the first message in the buffer

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, message: KafkaMessage, now: float) -> None:
        if not self.offsets:
            self.opened_at = now
            if self.base is None:
                self.base = message.offset()
        value = message.value()
        key = message.key()
        self.offsets.append(message.offset())
        self.timestamps.append(message.timestamp()[1])
        self.keys.append(key)
        self.values.append(value)
        self.headers.append(message.headers())
        self.nbytes += (len(value) if value else 0) + (len(key) if key else 0)

    def take(self, through_offset: int | None = None) -> Batch:
        """Cut the buffer: the messages up to `through_offset` (all if None) leave as a Batch."""
        count = len(self.offsets)
        if through_offset is not None:
            count = sum(1 for offset in self.offsets if offset <= through_offset)
        assert self.base is not None and count > 0
        if count == len(self.offsets):  # the usual cut, everything: hand the lists over, no copy
            batch = Batch(self.topic, self.partition, self.base, self.offsets, self.timestamps, self.keys,
                          self.values, self.headers, self.nbytes)
            self.offsets, self.timestamps, self.keys, self.values, self.headers = [], [], [], [], []
        else:
            values, keys = self.values[:count], self.keys[:count]
            batch = Batch(self.topic, self.partition, self.base, self.offsets[:count], self.timestamps[:count],
                          keys, values, self.headers[:count], _size(values, keys))
            del self.offsets[:count], self.timestamps[:count], self.keys[:count]
            del self.values[:count], self.headers[:count]
        self.nbytes -= batch.nbytes
        self.base = batch.end + 1
        self.opened_at = self.opened_at if self.offsets else None
        return batch

    def restore(self, batch: Batch) -> None:
        """Put a cut batch back in front of the buffer (its boundaries must be cut again)."""
        self.offsets[:0] = batch.offsets
        self.timestamps[:0] = batch.timestamps
        self.keys[:0] = batch.keys
        self.values[:0] = batch.values
        self.headers[:0] = batch.headers
        self.nbytes += _size(batch.values, batch.keys)
        self.base = batch.base

    def clear(self) -> None:
        """Forget the buffered messages (partition lost or flush abandoned)."""
        self.offsets.clear(); self.timestamps.clear(); self.keys.clear()
        self.values.clear(); self.headers.clear()
        self.nbytes = 0
        self.opened_at = None


def _size(values: list[bytes | None], keys: list[bytes | None]) -> int:
    return sum(len(v) for v in values if v) + sum(len(k) for k in keys if k)


@dataclass(frozen=True)
class FlushPolicy:
    max_records: int
    max_bytes: int
    max_age: float

    @classmethod
    def from_settings(cls, batch: BatchSettings) -> "FlushPolicy":
        return cls(batch.max_records, batch.max_bytes, batch.max_age)

    def reason(self, buffer: PartitionBuffer, now: float) -> str | None:
        """Why the buffer must be flushed now ('records', 'bytes', 'age'), or None."""
        if not buffer.offsets:
            return None
        if len(buffer.offsets) >= self.max_records:
            return "records"
        if buffer.nbytes >= self.max_bytes:
            return "bytes"
        if buffer.opened_at is not None and now - buffer.opened_at >= self.max_age:
            return "age"
        return None
