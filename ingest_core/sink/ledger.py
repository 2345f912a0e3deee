"""Batch markers: the lake's own record of batch boundaries, for exactly-once files.

Before a batch's files are published, a marker `_ingest/batches/{topic}/{partition}/
{base:020d}.json` records where the batch starts (`base`, the committed offset it
follows), where it ends and which files it makes. Markers are create-only, so the
first writer for a base fixes the boundaries and every later writer (a replay after
a crash, a zombie after a rebalance) cuts the same batch and so writes the same files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ingest_core.sink.storage import LakeStore, StorageError

MARKER_ROOT = "_ingest/batches"


@dataclass(frozen=True)
class MarkedFile:
    path: str
    rows: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True)
class BatchMarker:
    topic: str
    partition: int
    base: int  # the committed offset this batch follows
    end: int  # last offset of the batch; the commit after it is end + 1
    records: int  # messages in the batch (landed + dead-lettered)
    dead_letters: int
    files: tuple[MarkedFile, ...]

    def to_json(self) -> bytes:
        body = asdict(self)
        body["files"] = [asdict(f) for f in self.files]
        return json.dumps(body, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BatchMarker:
        body = json.loads(data)
        body["files"] = tuple(MarkedFile(**f) for f in body["files"])
        return cls(**body)


def marker_path(topic: str, partition: int, base: int) -> str:
    return f"{MARKER_ROOT}/{topic}/{partition}/{base:020d}.json"


class Ledger:
    def __init__(self, store: LakeStore):
        self.store = store

    def find(self, topic: str, partition: int, base: int) -> BatchMarker | None:
        path = marker_path(topic, partition, base)
        data = self.store.read(path)
        if data is None:
            return None
        try:
            return BatchMarker.from_json(data)
        except (ValueError, TypeError, KeyError) as error:  # damaged outside lake-ingest: markers are written whole
            raise StorageError(
                f"{self.store.url}/{path}: the batch marker of partition {partition} from offset {base} cannot be "
                f"read ({type(error).__name__}: {str(error)[:200]}), so which records its batch holds is unknown; "
                "landing it again could duplicate or lose records. Fix: restore the marker from a backup, or, if "
                f"no reader has taken that batch's files yet, delete the marker and partition {partition}'s data "
                f"files from offset {base} (`ingest audit` lists them) so that the batch is landed again",
                permanent=True,
            ) from error

    def claim(self, marker: BatchMarker) -> BatchMarker:
        """Write `marker` unless one exists for its base; return the marker that holds."""
        path = marker_path(marker.topic, marker.partition, marker.base)
        if self.store.publish(path, marker.to_json()):
            return marker
        existing = self.find(marker.topic, marker.partition, marker.base)
        return existing if existing is not None else marker

    def all_markers(self, topic: str) -> list[BatchMarker]:
        paths = [p for p in self.store.list_files(f"{MARKER_ROOT}/{topic}") if p.endswith(".json")]
        return [BatchMarker.from_json(data) for data in self.store.read_many(paths).values()]
