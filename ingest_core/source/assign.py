"""Taking an assignment: where each newly assigned partition starts reading.

Left to itself, librdkafka looks up each new partition's committed offset, and for a partition
without one (a new consumer group, a new partition) it applies `auto.offset.reset` after a
fixed 100 ms wait. (`python bench/startup.py`: with this and every broker connected at start,
source/kafka.py, a new group's first message comes 15 ms after the consumer is made, against
166 ms with librdkafka's defaults.) `StartPositions` looks the committed offsets up itself, in
the assignment callback, and gives librdkafka `auto.offset.reset`'s position (beginning or end)
for the partitions without one, so it asks the broker for that offset at once. Partitions with a
committed offset, and all of them when the lookup fails or `auto.offset.reset` is `error`, are
left to librdkafka as before: it starts from the committed offset (and validates it), or resets,
or reports the error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from ingest_core.source.kafka import group_protocol

log = logging.getLogger("ingest.kafka")

# auto.offset.reset's values (librdkafka's names and their aliases) and the position each means.
_RESET_POSITIONS = {
    "smallest": OFFSET_BEGINNING,
    "earliest": OFFSET_BEGINNING,
    "beginning": OFFSET_BEGINNING,
    "largest": OFFSET_END,
    "latest": OFFSET_END,
    "end": OFFSET_END,
}


@dataclass
class StartPositions:
    """The consumer's `on_assign` callback: `then` (the pipeline's own) first, then the assignment
    with a start position for every partition without a committed offset."""

    then: Callable[[Any, list[TopicPartition]], None]
    reset: int | None  # OFFSET_BEGINNING or OFFSET_END; None: leave every partition to librdkafka
    incremental: bool  # the cooperative protocol: incremental_assign(), not assign()
    lookup_timeout: float = 10.0

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], then: Callable[[Any, list[TopicPartition]], None]
    ) -> StartPositions:
        """From the consumer's properties: auto.offset.reset (librdkafka's default: largest), and
        the rebalance protocol (cooperative-sticky, or the consumer group protocol of KIP-848)."""
        reset = _RESET_POSITIONS.get(str(config.get("auto.offset.reset", "largest")).lower())
        strategy = str(config.get("partition.assignment.strategy", "range,roundrobin"))
        incremental = "cooperative" in strategy or group_protocol(config) == "consumer"
        return cls(then=then, reset=reset, incremental=incremental)

    def __call__(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.then(consumer, partitions)
        if partitions:
            self._set_start(consumer, partitions)
        (consumer.incremental_assign if self.incremental else consumer.assign)(partitions)

    def _set_start(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        reset = self.reset
        if reset is None:
            return
        try:
            committed = consumer.committed(
                [TopicPartition(p.topic, p.partition) for p in partitions], self.lookup_timeout
            )
        except KafkaException as error:  # librdkafka looks them up itself after the assignment
            log.info("committed offsets not looked up (%s); librdkafka will", error, extra={"event": "start_lookup"})
            return
        found = {(c.topic, c.partition): c for c in committed}
        for partition in partitions:
            mine = found.get((partition.topic, partition.partition))
            if mine is not None and mine.error is None and mine.offset < 0:  # no committed offset
                partition.offset = reset
