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
