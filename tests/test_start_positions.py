"""Where a newly assigned partition starts (source/assign.py): auto.offset.reset's position for
partitions without a committed offset, librdkafka's own lookup for the others."""
from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from ingest_core.source.assign import StartPositions

TOPIC = "orders"


class AssigningConsumer:
    """Records the assignment it is given; answers committed() from `committed_offsets`."""

    def __init__(self, committed_offsets: dict[int, int], lookup_fails: bool = False):
        self.committed_offsets = committed_offsets
        self.lookup_fails = lookup_fails
        self.assigned: list[tuple[str, dict[int, int]]] = []

    def committed(self, partitions, timeout=None):
        if self.lookup_fails:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return [TopicPartition(TOPIC, p.partition, self.committed_offsets.get(p.partition, OFFSET_INVALID))
                for p in partitions]

    def incremental_assign(self, partitions):
        self.assigned.append(("incremental", {p.partition: p.offset for p in partitions}))

    def assign(self, partitions):
        self.assigned.append(("eager", {p.partition: p.offset for p in partitions}))


def new_partitions(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, n) for n in numbers]


def test_partitions_without_a_committed_offset_start_at_the_reset_position_the_others_at_their_commit():
    seen = []
    start = StartPositions.from_config({"auto.offset.reset": "earliest",
                                        "partition.assignment.strategy": "cooperative-sticky"},
                                       then=lambda consumer, partitions: seen.append([p.partition for p in partitions]))
    consumer = AssigningConsumer({1: 40})
    start(consumer, new_partitions(0, 1, 2))
    assert seen == [[0, 1, 2]]  # the pipeline's own callback ran first
    # 1 is left to librdkafka, which starts at its commit (and validates it) as before.
    assert consumer.assigned == [("incremental", {0: OFFSET_BEGINNING, 1: OFFSET_INVALID, 2: OFFSET_BEGINNING})]


def test_latest_and_the_eager_protocol():
    start = StartPositions.from_config({"auto.offset.reset": "latest", "partition.assignment.strategy": "range"},
                                       then=lambda consumer, partitions: None)
    consumer = AssigningConsumer({})
    start(consumer, new_partitions(3))
    assert consumer.assigned == [("eager", {3: OFFSET_END})]


def test_librdkafkas_default_reset_is_latest_and_the_new_group_protocol_is_incremental():
    start = StartPositions.from_config({"group.protocol": "consumer"}, then=lambda consumer, partitions: None)
    consumer = AssigningConsumer({})
    start(consumer, new_partitions(0))
    assert consumer.assigned == [("incremental", {0: OFFSET_END})]


def test_reset_error_and_a_failed_lookup_leave_every_partition_to_librdkafka():
    for config, consumer in (({"auto.offset.reset": "error"}, AssigningConsumer({})),
                             ({"auto.offset.reset": "earliest"}, AssigningConsumer({}, lookup_fails=True))):
        start = StartPositions.from_config({**config, "partition.assignment.strategy": "cooperative-sticky"},
                                           then=lambda consumer, partitions: None)
        start(consumer, new_partitions(0, 1))
        assert consumer.assigned == [("incremental", {0: OFFSET_INVALID, 1: OFFSET_INVALID})]
