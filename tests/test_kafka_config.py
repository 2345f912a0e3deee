"""The consumer's librdkafka properties (source/kafka.py): what lake-ingest sets unless the YAML says otherwise."""
from __future__ import annotations

from ingest_core.settings import Settings
from ingest_core.source.kafka import consumer_config, producer_config


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
