"""The consumer's librdkafka properties (source/kafka.py): what lake-ingest sets unless the YAML says otherwise."""
from __future__ import annotations

from types import SimpleNamespace

from confluent_kafka import Consumer, KafkaError, KafkaException

from ingest_core.settings import Settings
from ingest_core.source.kafka import (
    consumer_config,
    producer_config,
    refused_properties,
    static_cooperative_warning,
    topic_problem,
)


def settings(kafka: dict | None = None) -> Settings:
    return Settings.model_validate({"topic": "orders", "output": {"url": "file:///tmp/lake"}, "kafka": kafka or {}})


def test_every_broker_is_connected_at_start_unless_the_yaml_says_otherwise():
    assert consumer_config(settings())["enable.sparse.connections"] is False
    assert consumer_config(settings({"enable.sparse.connections": True}))["enable.sparse.connections"] is True


def test_offsets_are_never_committed_by_librdkafka_whatever_the_yaml_says():
    config = consumer_config(settings({"enable.auto.commit": True, "enable.auto.offset.store": True}))
    assert config["enable.auto.commit"] is False and config["enable.auto.offset.store"] is False


def test_the_producers_get_the_connection_properties_not_the_consumers():
    config = producer_config(settings({"bootstrap.servers": "k:9092", "fetch.wait.max.ms": 50,
                                       "enable.sparse.connections": True}))
    assert config["bootstrap.servers"] == "k:9092" and config["enable.sparse.connections"] is True
    assert "fetch.wait.max.ms" not in config and "group.id" not in config


def test_static_members_take_the_eager_range_assignor_unless_the_yaml_names_one():
    assert consumer_config(settings())["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer_config(settings({"group.instance.id": "pod-1"}))["partition.assignment.strategy"] == "range"
    named = settings({"group.instance.id": "pod-1", "partition.assignment.strategy": "roundrobin"})
    assert consumer_config(named)["partition.assignment.strategy"] == "roundrobin"


def test_the_consumer_group_protocol_gets_no_property_that_librdkafka_refuses_for_it():
    config = consumer_config(settings({"group.protocol": "consumer", "group.instance.id": "pod-1"}))
    assert "partition.assignment.strategy" not in config and "session.timeout.ms" not in config
    Consumer(config).close()  # librdkafka refuses both with group.protocol=consumer: this would raise
    assert consumer_config(settings())["session.timeout.ms"] == 45000


def test_cooperative_sticky_with_static_membership_is_warned_about_naming_the_file_keys_and_fix():
    asked = settings({"group.instance.id": "pod-1", "partition.assignment.strategy": "cooperative-sticky"})
    warning = static_cooperative_warning(asked, "consumers/orders.yaml")
    assert warning is not None
    assert warning.startswith("consumers/orders.yaml: kafka.partition.assignment.strategy: cooperative-sticky")
    assert "Fix: remove partition.assignment.strategy" in warning
    assert static_cooperative_warning(settings({"group.instance.id": "pod-1"}), "x.yaml") is None
    assert static_cooperative_warning(settings({"partition.assignment.strategy": "cooperative-sticky"}), "x.yaml") is None


def test_properties_librdkafka_refuses_are_named_without_contacting_a_broker():
    assert refused_properties(settings({"bootstrap.servers": "127.0.0.1:1"})) is None
    assert refused_properties(settings({"fetch.wait.max.mss": 5})) == 'No such configuration property: "fetch.wait.max.mss"'
    assert "session.timeout.ms" in refused_properties(settings({"group.protocol": "consumer", "session.timeout.ms": 6000}))


class _Listing:
    """A consumer whose list_topics answers with one topic's metadata (or raises); `answers` ones first."""

    def __init__(self, topics: dict | None = None, raises: bool = False, answers: list[dict] | None = None):
        self.topics, self.raises, self.answers, self.asked = topics or {}, raises, list(answers or []), 0

    def list_topics(self, topic, timeout):
        self.asked += 1
        if self.raises:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return SimpleNamespace(topics=self.answers.pop(0) if self.answers else self.topics)


def test_a_topic_the_broker_does_not_have_or_hides_is_named_with_the_fix():
    assert topic_problem(_Listing({"orders": SimpleNamespace(error=None)}), "orders") is None
    missing = SimpleNamespace(error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert topic_problem(_Listing({"orders": missing}), "orders", sleep=lambda _: None).startswith("does not exist. Fix:")
    assert topic_problem(_Listing({}), "orders", sleep=lambda _: None).startswith("does not exist. Fix:")
    hidden = SimpleNamespace(error=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert "Fix: grant the client's principal Describe and Read" in topic_problem(_Listing({"orders": hidden}), "orders", sleep=lambda _: None)
    assert topic_problem(_Listing(raises=True), "orders") is None  # no answer: the broker errors are reported apart


def test_a_missing_topic_is_asked_about_for_a_few_seconds_before_it_is_believed():
    sleeps: list[float] = []
    missing = {"orders": SimpleNamespace(error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))}
    just_created = _Listing({"orders": SimpleNamespace(error=None)}, answers=[missing, missing])
    assert topic_problem(just_created, "orders", sleep=sleeps.append) is None
    assert just_created.asked == 3 and sleeps == [0.5, 0.5]
    sleeps.clear()
    never = _Listing(missing)
    assert topic_problem(never, "orders", sleep=sleeps.append).startswith("does not exist")
    assert never.asked == 7 and sum(sleeps) == 3.0
    there = _Listing({"orders": SimpleNamespace(error=None)})
    assert topic_problem(there, "orders", sleep=sleeps.append) is None and there.asked == 1
