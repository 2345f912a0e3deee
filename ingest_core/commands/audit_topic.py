"""The audit's view of the topic: the group's committed offsets, each partition's watermarks,
and whether the topic holds a record in an offset range. One consumer, never subscribed
(so it never joins the group) and never committing; closed by `close()` (a client left open
aborts in librdkafka's destructor at exit)."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ingest_core.source.kafka import consumer_config

TIMEOUT = 15.0  # seconds for each broker request
PROBE_TIMEOUT = 10.0  # seconds to wait for the first record of a range


class TopicUnavailable(Exception):
    """The broker cannot be reached or the topic is not there: the audit cannot run."""


class TopicView:
    def __init__(self, settings, config_path):
        self.topic = settings.topic
        self._where = f"kafka.bootstrap.servers in {config_path}"
        config = consumer_config(settings, partition_eof=True)
        config.pop("group.instance.id", None)  # never taken for a member of the group, even a static one
        # The probe reads what a consumer of the group would: committed transactions only.
        config.setdefault("isolation.level", "read_committed")
        self._consumer = Consumer(config)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> TopicView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def positions(self) -> dict[int, tuple[int, int, int]]:
        """{partition: (committed, low, high)}; committed is -1001 where the group has none."""
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=TIMEOUT)
        except KafkaException as error:
            raise TopicUnavailable(
                f"cannot reach the broker ({error.args[0].str()}). Fix: check {self._where}"
            ) from error
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None:
            reason = found.error.str() if found is not None and found.error is not None else "not listed"
            raise TopicUnavailable(f"topic {self.topic!r}: {reason}. Fix: check `topic` and {self._where}")
        numbers = sorted(found.partitions)
        try:
            committed = self._consumer.committed([TopicPartition(self.topic, p) for p in numbers], timeout=TIMEOUT)
            result = {}
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, tp.partition), timeout=TIMEOUT
                )
                result[tp.partition] = (tp.offset, low, high)
        except KafkaException as error:
            raise TopicUnavailable(
                f"reading offsets of {self.topic!r}: {error.args[0].str()}. "
                f"Fix: check {self._where} and the group's access"
            ) from error
        return result

    def first_record(self, partition: int, first: int, last: int) -> int | None:
        """The offset of the first record the topic holds in [first, last], or None."""
        self._consumer.assign([TopicPartition(self.topic, partition, first)])
        try:
            while True:
                message = self._consumer.poll(PROBE_TIMEOUT)
                if message is None:
                    return first  # no answer in time: say it holds records (never a false "OK")
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return None
                    if error.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                        return None
                    raise TopicUnavailable(f"reading partition {partition} at {first}: {error.str()}")
                if message.partition() == partition:
                    return message.offset() if message.offset() <= last else None
        finally:
            self._consumer.unassign()
