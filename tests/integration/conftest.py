"""Real servers for integration tests, started by the repo's own scripts on 127.0.0.1."""
from __future__ import annotations

import itertools
import os
import uuid

import pytest

from kafka_broker import LocalKafka  # noqa: E402  (deploy/local/kafka_broker.py)

_names = itertools.count()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    broker = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    yield broker
    broker.stop()


@pytest.fixture
def topic_name():
    return f"t{next(_names)}-{uuid.uuid4().hex[:8]}"
