"""Real servers for integration tests, started by the repo's own scripts on 127.0.0.1:
Apache Kafka (deploy/local/kafka_broker.py), moto's S3, Azurite and fake-gcs-server (deploy/local/object_stores.py)."""
from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka_broker import LocalKafka  # noqa: E402
from object_stores import AzuriteServer, FakeGcsServer, MotoS3Server  # noqa: E402

# Before anything imports gcsfs, in this process and the `ingest` processes it starts.
os.environ.update(FakeGcsServer.ENVIRONMENT)

from ingest_core.sink.storage import LakeStore

_names = itertools.count()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    broker = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def moto():
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def azurite():
    with AzuriteServer() as server:
        yield server


@pytest.fixture(scope="session")
def fake_gcs():
    with FakeGcsServer() as server:
        yield server


@pytest.fixture
def topic_name():
    return f"t{next(_names)}-{uuid.uuid4().hex[:8]}"


@dataclass
class Lake:
    """Where one test's consumer lands: URL, fsspec options, and the server behind it (if any)."""

    kind: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    server: Any = None

    @property
    def store(self) -> LakeStore:
        # A filesystem of its own each time: after an outage, fsspec's cached instance (and its
        # connection pool) in this test process has handed back empty bodies; a fresh one reads true.
        options = {**self.storage_options, "skip_instance_cache": True} if self.kind != "local" else {}
        return LakeStore.open(self.url, options)


def make_lake(kind: str, request, tmp_path) -> Lake:
    name = f"lake-{uuid.uuid4().hex[:10]}"
    if kind == "local":
        return Lake(kind, f"file://{tmp_path / 'lake'}")
    if kind == "s3":
        server = request.getfixturevalue("moto")
        server.create_bucket(name)
        return Lake(kind, f"s3://{name}/topic", server.storage_options, server)
    if kind == "azure":
        server = request.getfixturevalue("azurite")
        server.create_container(name)
        return Lake(kind, f"abfs://{name}/topic", server.storage_options, server)
    if kind == "gcs":
        server = request.getfixturevalue("fake_gcs")
        server.create_bucket(name)
        return Lake(kind, f"gs://{name}/topic", server.storage_options, server)
    raise ValueError(kind)


@pytest.fixture(params=["local", "s3", "azure", "gcs"])
def lake(request, tmp_path) -> Lake:
    return make_lake(request.param, request, tmp_path)
