"""Where the lake lives: one file per kind of store, found by the URL's scheme.

A store says how a file is published create-only (never overwriting a published name), and how
Spark names and reaches the lake (`ingest autoloader`). Reading, listing and error handling are
fsspec's and the same for every store (sink/storage.py). To add a store: a module here with a
`STORE` object that has the attributes and methods of `Store`, listed in `_MODULES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ingest_core.sink.formats import FileData, data_bytes


class Store(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def schemes(self) -> tuple[str, ...]:
        """URL schemes of output.url that mean this store."""
        ...

    @property
    def extra(self) -> str | None:
        """The pip extra that installs its fsspec implementation ("lake-ingest[s3]")."""
        ...

    def publish(self, fs: Any, path: str, data: FileData) -> bool:
        """Create `path` with `data`, atomically. True if created; False, or FileExistsError,
        if the name already exists (its content is then never replaced)."""
        ...

    def spark_path(self, url: str, options: dict, databricks: bool) -> str:
        """output.url as Spark names it (open-source Spark, or Databricks)."""
        ...

    def spark_options(self, options: dict) -> dict[str, str]:
        """Hadoop settings Spark's reader needs for this store's storage_options (never credentials)."""
        ...


@dataclass(frozen=True)
class ObjectStore:
    """An object store reached through fsspec: conditional create (`mode="create"`), URL as it is."""

    name: str = "object store"
    schemes: tuple[str, ...] = ()
    extra: str | None = None

    def publish(self, fs: Any, path: str, data: FileData) -> bool:
        # mode="create" sends If-None-Match: * (S3) / If-None-Match on the commit (Azure) /
        # ifGenerationMatch=0 (GCS, checked when a resumable upload is finalised), and
        # aborts a failed multipart or resumable upload instead of leaving it behind.
        fs.pipe_file(path, data_bytes(data), mode="create")  # the HTTP clients want one bytes object
        return True

    def spark_path(self, url: str, options: dict, databricks: bool) -> str:
        return url

    def spark_options(self, options: dict) -> dict[str, str]:
        return {}


_MODULES = ("local", "s3", "abfs", "gs")


def stores() -> dict[str, Store]:
    """Every known store by name."""
    found: dict[str, Store] = {}
    for module in _MODULES:
        store = importlib.import_module(f"{__name__}.{module}").STORE
        found[store.name] = store
    return found


def store_for(url: str) -> Store:
    """The store of `url` (a plain path is local); an unknown scheme is a generic object store."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    for store in stores().values():
        if scheme in store.schemes:
            return store
    return ObjectStore(schemes=(scheme,))
