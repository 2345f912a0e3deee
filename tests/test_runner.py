"""`ingest run`'s process-wide settings."""
from __future__ import annotations

import gc

from ingest_core.commands.run import GC_THRESHOLDS, tune_garbage_collection


def test_ingest_run_makes_garbage_collection_rare_and_blind_to_start_up_objects():
    before = gc.get_threshold()
    try:
        tune_garbage_collection()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # the imports' objects: out of every collection's way
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Store:
    """check_writable fails `transient` times with a retryable error, then works."""

    def __init__(self, transient: int, permanent: bool = False):
        self.transient, self.permanent, self.calls = transient, permanent, 0

    def check_writable(self):
        from ingest_core.sink.storage import StorageError

        self.calls += 1
        if self.permanent:
            raise StorageError("NoSuchBucket", permanent=True)
        if self.calls <= self.transient:
            raise StorageError("connection refused", permanent=False)


def test_a_lake_down_at_start_is_waited_for_not_a_crash(caplog):
    from pathlib import Path

    import pytest

    from ingest_core.commands.run import wait_until_writable
    from ingest_core.retry import Backoff
    from ingest_core.sink.storage import StorageError

    sleeps: list[float] = []
    store = _Store(transient=3)
    with caplog.at_level("WARNING", logger="ingest.run"):
        assert wait_until_writable(store, Path("c.yaml"), lambda: False, sleeps.append, Backoff(1.0, 30.0))
    assert store.calls == 4 and len(sleeps) == 3 and sleeps[2] >= 2.0  # backed off
    assert all("key output.url" in r.getMessage() for r in caplog.records)
    # Asked to stop while waiting: give up without consuming.
    assert not wait_until_writable(_Store(transient=99), Path("c.yaml"), lambda: len(sleeps) > 5, sleeps.append)
    # A permanent error is not retried: `ingest run` exits 2 naming the key.
    with pytest.raises(StorageError):
        wait_until_writable(_Store(transient=0, permanent=True), Path("c.yaml"), lambda: False, sleeps.append)
