"""Test doubles for unit tests: Kafka messages and a consumer holding partitions in memory."""
from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition


class Clock:
    """A monotonic clock the test moves by hand (`clock.now += seconds`)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def rss_bytes() -> int:
    """This process's resident memory as the OS counts it (VmRSS in /proc/self/status)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = None
    _timestamp: int = 1_700_000_000_000
    _headers: list | None = None

    def topic(self): return self._topic
    def partition(self): return self._partition
    def offset(self): return self._offset
    def value(self): return self._value
    def key(self): return self._key
    def timestamp(self): return (1, self._timestamp)
    def headers(self): return self._headers
    def error(self): return None


@dataclass
class PartitionEnd:
    """What consume() hands over with `enable.partition.eof` when a partition is read to its end."""
    _topic: str
    _partition: int
    _offset: int

    def partition(self): return self._partition
    def offset(self): return self._offset
    def error(self): return KafkaError(KafkaError._PARTITION_EOF)


@dataclass
class FakeConsumer:
    """Serves messages of assigned partitions from their committed offset, like a real consumer."""

    topic: str
    log: dict[int, list[FakeMessage]]
    committed_offsets: dict[int, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    paused: set[int] = field(default_factory=set)  # like librdkafka's: kept across revoke and assign
    fail_commits: bool = False
    partition_eof: bool = False  # report each partition's end once its last message is handed over
    reported_end: dict[int, int] = field(default_factory=dict)
    seeks: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) of each seek()

    def assign_all(self, pipeline) -> None:
        for p in self.log:
            self.positions[p] = self.committed_offsets.get(p, 0)
        pipeline.on_assign(self, [TopicPartition(self.topic, p) for p in self.log])

    def consume(self, num_messages=1, timeout=0):
        out = []
        for p, messages in self.log.items():
            if p in self.paused:
                continue
            for m in messages:
                if m.offset() >= self.positions[p] and len(out) < num_messages:
                    out.append(m)
                    self.positions[p] = m.offset() + 1
            end = messages[-1].offset() + 1 if messages else self.positions[p]
            if self.partition_eof and self.positions[p] >= end and self.reported_end.get(p) != end \
                    and len(out) < num_messages:
                out.append(PartitionEnd(self.topic, p, end))
                self.reported_end[p] = end
        return out

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        """Like librdkafka's, (-1001, -1001) until the partition was fetched: here, only with end reports on."""
        messages = self.log.get(partition.partition, [])
        if not self.partition_eof or partition.partition not in self.positions:
            return (-1001, -1001)
        return (messages[0].offset() if messages else 0, messages[-1].offset() + 1 if messages else 0)

    def committed(self, partitions, timeout=None):
        return [TopicPartition(self.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001)) for tp in partitions]

    def commit(self, offsets, asynchronous=True):
        if self.fail_commits:
            raise KafkaException("commit refused")
        for tp in offsets:
            self.committed_offsets[tp.partition] = tp.offset

    def pause(self, partitions):
        self.paused.update(tp.partition for tp in partitions)

    def resume(self, partitions):
        self.paused.difference_update(tp.partition for tp in partitions)

    def position(self, partitions):
        return [TopicPartition(self.topic, tp.partition, self.positions.get(tp.partition, -1001)) for tp in partitions]

    def seek(self, partition):
        self.seeks.append((partition.partition, partition.offset))
        self.positions[partition.partition] = partition.offset


def json_messages(topic: str, partition: int, count: int, start: int = 0, ts: int = 1_700_000_000_000) -> list[FakeMessage]:
    return [FakeMessage(topic, partition, start + i, f'{{"id": {start + i}, "name": "n{start + i}"}}'.encode(),
                        f"k{start + i}".encode(), ts + i) for i in range(count)]
