"""Google Cloud Storage (gcsfs: `pip install "lake-ingest[gcs]"`). Create-only publication is
`ifGenerationMatch=0`, on simple and resumable uploads."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest_core.sink.stores import ObjectStore

# gcsfs turns every 404 into FileNotFoundError(url); an upload to a bucket's object collection
# (POST .../storage/v1/b/BUCKET/o) can only be 404 when the bucket does not exist.
NO_BUCKET = re.compile(r"/storage/v1/b/[^/?]+/o(\?|$)")
# gcsfs's `token` modes: words, not secrets (anything else under a token key is kept out of messages).
TOKEN_MODES = {"anon", "google_default", "cache", "cloud", "browser"}


@dataclass(frozen=True)
class GcsStore(ObjectStore):
    name: str = "gs"
    schemes: tuple[str, ...] = ("gs", "gcs")
    extra: str | None = "gcs"


STORE = GcsStore()
