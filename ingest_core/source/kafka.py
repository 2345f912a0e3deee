"""The Kafka side: consumer configuration, and readable reports of broker trouble.

librdkafka retries unreachable brokers by itself; `BrokerErrors` turns its error
callbacks into one clear log line per kind of problem (not one per retry). Every client
we configure logs librdkafka's own lines through `log.librdkafka_logger()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ingest_core.ops.log import librdkafka_logger
from ingest_core.settings import Settings

log = logging.getLogger("ingest.kafka")

# Properties we own: offsets are committed by the pipeline after publication, never by librdkafka.
_FORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False}
_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    # Bound librdkafka's prefetch so memory follows batch.max_bytes, not the backlog: 8 MiB reads
    # a 1 KiB backlog as fast as 16 or 32 MiB, with less peak RSS (bench/RESULTS.md, Memory).
    "queued.max.messages.kbytes": 8192,
    "fetch.max.bytes": 8388608,
    # A fetch may take its whole 8 MiB from one partition (librdkafka's default is 1 MiB a
    # partition): while the memory focus lets only a few partitions consume, 1 MiB each left
    # fetches small (bench/memory.py, 64 partitions: 62 k against 50 k records/s). The response
    # is still capped by fetch.max.bytes, so this costs no memory.
    "max.partition.fetch.bytes": 8388608,
    # Once that prefetch is full, librdkafka (>= 2.4) waits fetch.queue.backoff.ms before it
    # fetches again, 1000 ms by default, even if we drained the queue meanwhile: a consumer
    # that keeps up with the broker then idles most of the time (measured: 4x the throughput
    # with 10 ms on a backlog, bench/RESULTS.md).
    "fetch.queue.backoff.ms": 10,
    # librdkafka has one fetch request in flight per broker, and the broker holds it up to
    # fetch.wait.max.ms (500 ms by default) while the partitions it asks for have nothing new.
    # A partition we resume after its batch is published joins only the next request, so
    # while some partitions were caught up it waited up to 500 ms for the one in flight
    # (measured: a 200 B backlog drained in 1.63 s against 2.39 s, median of 5 alternated runs,
    # bench/RESULTS.md). The price is an idle consumer asking 10 times a second, not twice.
    "fetch.wait.max.ms": 100,
    "session.timeout.ms": 45000,
    # librdkafka's sparse connections (its default) connect to a broker only once something needs it:
    # the group coordinator found through the bootstrap connection was connected about 50 ms later, so
    # joining the group took 57 ms instead of 7 (a bare consumer on one broker, 3 runs each). A
    # consumer of a topic spread over the cluster connects to every broker anyway.
    "enable.sparse.connections": False,
}


# Kafka's consumer group protocol (KIP-848): the broker assigns the partitions and keeps the
# sessions, and librdkafka refuses these two properties. They are left out unless the YAML sets them.
_CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms")
# Static membership (group.instance.id) with the classic protocol takes an eager assignor. Under
# cooperative-sticky, a rebalance that moves partitions comes in two rounds: the leader withholds
# them until their owner has given them up and joined again. A static member that dies in between
# (its container killed during a scale-out, say) and restarts is handed its old assignment without
# a rebalance, so no second round comes and the withheld partitions have no owner until the
# group's next change (tests/integration/test_group_membership.py). An eager rebalance moves
# every partition in one round. range orders static members by group.instance.id, so a pod that
# rejoins after a rebalance gets the same partitions back.
_STATIC_STRATEGY = "range"


def consumer_config(settings: Settings, error_cb=None, partition_eof: bool = False) -> dict[str, Any]:
    """`partition_eof`: have consume() report each partition's end (`--exit-when-idle` needs it)."""
    config: dict[str, Any] = {**_DEFAULTS, **settings.kafka, **_FORCED}
    if group_protocol(config) == "consumer":
        for key in _CLASSIC_ONLY:
            if key not in settings.kafka:
                del config[key]
    elif "group.instance.id" in settings.kafka and "partition.assignment.strategy" not in settings.kafka:
        config["partition.assignment.strategy"] = _STATIC_STRATEGY
    if partition_eof:
        config["enable.partition.eof"] = True
    config.setdefault("bootstrap.servers", "localhost:9092")
    config["group.id"] = settings.group
    config["logger"] = librdkafka_logger()  # librdkafka's lines through our log format, never raw to stderr
    if error_cb is not None:
        config["error_cb"] = error_cb
    return config


def group_protocol(config: Mapping[str, Any]) -> str:
    """ "classic" (join and sync, the client assigns) or "consumer" (KIP-848, the broker assigns)."""
    return str(config.get("group.protocol", "classic")).lower()


def static_cooperative_warning(settings: Settings, source: str) -> str | None:
    """The warning for a YAML that asks for cooperative-sticky with static membership (see _STATIC_STRATEGY)."""
    kafka = settings.kafka
    strategy = str(kafka.get("partition.assignment.strategy", ""))
    if "group.instance.id" not in kafka or "cooperative" not in strategy or group_protocol(kafka) == "consumer":
        return None
    return (
        f"{source}: kafka.partition.assignment.strategy: {strategy} with kafka.group.instance.id (static membership): "
        "a member that dies between giving up partitions and joining again leaves them with no owner until the "
        "group next changes. Fix: remove partition.assignment.strategy (static members then use range), or set "
        "kafka.group.protocol: consumer on Kafka 4.0 or later"
    )


def refused_message(source: str, reason: str) -> str:
    """What `ingest validate` and `ingest run` say when librdkafka refuses the consumer's properties."""
    return (
        f"{source}: kafka: librdkafka refused the consumer's properties: {reason}. Fix: correct or remove that "
        "property under kafka: (librdkafka's CONFIGURATION.md lists them)"
    )


def refused_properties(settings: Settings) -> str | None:
    """librdkafka's reason for refusing the consumer's properties (an unknown name, a bad value, one
    its group protocol does not take), or None. A consumer is made with them, with no broker named so
    that nothing is contacted, and closed at once."""
    try:
        Consumer({**consumer_config(settings), "bootstrap.servers": "", "log_level": 0}).close()
    except KafkaException as error:
        return str(error.args[0].str())
    return None


_MISSING_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


def topic_problem(
    consumer: Any, topic: str, timeout: float = 10.0, settle: float = 3.0, every: float = 0.5, sleep=time.sleep
) -> str | None:
    """What the broker says is wrong with `topic` (it does not exist, or we may not see it), or None: it
    is there, or the broker did not answer (its connection errors are reported on their own). A topic
    created a moment ago may not be in every broker's metadata yet: the broker is asked again `every`
    seconds for `settle` seconds before its answer is believed."""
    problem = _topic_problem(consumer, topic, timeout)
    for _ in range(round(settle / every)):
        if problem is None:
            break
        sleep(every)
        problem = _topic_problem(consumer, topic, timeout)
    return problem


def _topic_problem(consumer: Any, topic: str, timeout: float) -> str | None:
    try:
        found = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException:
        return None
    error = None if found is None else found.error
    if found is None or (error is not None and error.code() in _MISSING_TOPIC):
        return "does not exist. Fix: correct `topic:`, or create the topic first"
    if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return "is not ours to read (TOPIC_AUTHORIZATION_FAILED). Fix: grant the client's principal Describe and Read on it"
    return None


def consume_error_text(error: KafkaError) -> str:
    """A consume() error as logged: librdkafka's words, and what to do about a topic that is not there."""
    if error.code() in _MISSING_TOPIC:
        return f"{error.str()}; waiting for it. Fix: create the topic, or correct `topic:`"
    return str(error.str())


def read_to_high_watermark(consumer: Any, topic: str, partition: int, last_offset: int) -> bool:
    """Whether the message at `last_offset` was the partition's last as of the latest fetch: librdkafka's
    cached high watermark, no request. The consumer's own end report comes with the next fetch, which the
    broker holds up to fetch.wait.max.ms while there is nothing new: 100 ms more before every
    `--exit-at-end` run could stop. False when the watermark is not known yet, or when a transaction's
    marker or a compacted gap comes last: the end report still says so then."""
    try:
        high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)[1]
    except KafkaException:
        return False
    return high >= 0 and last_offset + 1 >= high


def set_paused(consumer: Any, topic: str, partition: int, paused: bool) -> bool:
    """Pause or resume one partition; False when it is not assigned any more (nothing to hold back)."""
    try:
        (consumer.pause if paused else consumer.resume)([TopicPartition(topic, partition)])
    except KafkaException:
        return False
    return True


def restart_fetching(consumer: Any, topic: str, partitions: list[int]) -> None:
    """Have librdkafka fetch these just-resumed partitions now, from where each stands. With every
    partition paused its fetcher has nothing to ask for and sleeps up to a second, and a resume does
    not wake it: the first message after the resume came 846 ms later, 14 ms with a seek to the
    position librdkafka resumes from (`python bench/pause_resume.py`: one broker, medians of 5
    alternated rounds). Only partitions with messages waiting (their cached high watermark past
    their position) are sought: after a seek librdkafka reports no position until the next message
    comes, and a caught-up partition would lose its lag (ingest_partition_lag) until then. A
    partition with no position yet (nothing consumed) is left to the resume."""
    try:
        for position in consumer.position([TopicPartition(topic, p) for p in partitions]):
            if position.offset < 0:
                continue
            if consumer.get_watermark_offsets(position, cached=True)[1] > position.offset:
                consumer.seek(position)
    except KafkaException as error:  # revoked meanwhile: the next assignment starts it
        log.debug("no fetch restart for %s %s: %s", topic, partitions, error)


def producer_config(settings: Settings) -> dict[str, Any]:
    """The connection part of the consumer's properties, for the dead-letter and events producers."""
    consumer_only = (
        "group.",
        "auto.offset",
        "enable.auto",
        "partition.assignment",
        "queued.",
        "fetch.",
        "session.timeout",
        "max.poll",
        "heartbeat",
        "isolation.level",
        "enable.partition.eof",
    )
    config: dict[str, Any] = {k: v for k, v in settings.kafka.items() if not k.startswith(consumer_only)}
    config["logger"] = librdkafka_logger()
    return config


class BrokerErrors:
    """Logs librdkafka errors clearly, at most once per `every` seconds per error code."""

    def __init__(self, settings: Settings, source: str, every: float = 30.0):
        self.bootstrap = consumer_config(settings)["bootstrap.servers"]
        self.source = source
        self.every = every
        self.last_logged: dict[str, float] = {}
        self.down = False

    def __call__(self, error) -> None:
        code = error.name()
        now = time.monotonic()
        if now - self.last_logged.get(code, -1e9) < self.every:
            return
        self.last_logged[code] = now
        if code in ("_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE"):
            self.down = True
            log.error(
                "cannot reach Kafka at %s (%s: %s); retrying. Fix: check kafka.bootstrap.servers in %s "
                "(or KAFKA_BOOTSTRAP_SERVERS) and that the broker is up and reachable",
                self.bootstrap,
                code,
                error.str(),
                self.source,
                extra={"event": "broker_unreachable", "bootstrap": self.bootstrap},
            )
        elif code in (
            "_AUTHENTICATION",
            "SASL_AUTHENTICATION_FAILED",
            "TOPIC_AUTHORIZATION_FAILED",
            "GROUP_AUTHORIZATION_FAILED",
        ):
            log.error(
                "Kafka refused our credentials or permissions (%s: %s). Fix: check the kafka.sasl.* settings in %s",
                code,
                error.str(),
                self.source,
                extra={"event": "broker_auth"},
            )
        else:
            log.warning("Kafka error %s: %s", code, error.str(), extra={"event": "broker_error"})
