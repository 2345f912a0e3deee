"""Where batches go: encoding to files (encode.py, formats/), their names (paths.py), the batch
markers that make publication exactly once (ledger.py), the lake's storage (storage.py), dead
letters (deadletter.py) and landed-batch events (events.py)."""
