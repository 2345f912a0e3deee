"""The store registry (sink/stores/): every store is found by each of its URL schemes, and the
local store publishes create-only."""

from __future__ import annotations

import pytest

from ingest_core.sink.stores import ObjectStore, store_for, stores
from ingest_core.sink.stores.local import STORE as LOCAL

EVERY_SCHEME = [(name, scheme) for name, store in stores().items() for scheme in store.schemes]


def test_the_registry_holds_local_s3_abfs_and_gs():
    assert sorted(stores()) == ["abfs", "gs", "local", "s3"]


@pytest.mark.parametrize("name,scheme", EVERY_SCHEME)
def test_every_scheme_finds_its_store(name, scheme):
    url = f"{scheme}://bucket/lake" if scheme else "relative/lake"
    assert store_for(url).name == name


def test_an_unknown_scheme_is_a_generic_object_store():
    store = store_for("memory://lake")
    assert isinstance(store, ObjectStore) and store.spark_path("memory://lake", {}, False) == "memory://lake"


def test_spark_names_each_store_as_its_reader_expects(tmp_path):
    assert store_for("s3://b/lake").spark_path("s3://b/lake", {}, databricks=False) == "s3a://b/lake"
    assert store_for("s3://b/lake").spark_path("s3://b/lake", {}, databricks=True) == "s3://b/lake"
    assert store_for("abfs://c/lake").spark_path("abfs://c/lake", {"account_name": "acct"}, False) == (
        "abfss://c@acct.dfs.core.windows.net/lake"
    )
    assert store_for("gs://b/lake").spark_path("gs://b/lake", {}, False) == "gs://b/lake"
    assert LOCAL.spark_path(f"file://{tmp_path}", {}, False) == f"file://{tmp_path}"


def test_local_publication_never_replaces_a_published_name(tmp_path):
    path = str(tmp_path / "dt=1" / "f.parquet")
    assert LOCAL.publish(None, path, b"first") is True
    assert LOCAL.publish(None, path, b"second") is False
    assert (tmp_path / "dt=1" / "f.parquet").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "dt=1").iterdir()] == ["f.parquet"]  # no temp file left
