"""Every output format x compression in the registry (sink/formats/): a batch of messages is
encoded, published with its marker, named as the autoloader expects, and `ingest audit --deep`
reads every row back. A new format file is covered here without a new test."""

from __future__ import annotations

import json

import pytest

from ingest_core.batching.buffer import Batch
from ingest_core.commands.audit import audit
from ingest_core.commands.autoloader import data_file_extension, spark_reader
from ingest_core.ops.faults import FaultInjector
from ingest_core.settings import COMPRESSIONS, Settings
from ingest_core.sink.allocator import FreedMemory
from ingest_core.sink.deadletter import DeadLetterFiles
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.events import NoEvents
from ingest_core.sink.formats import FORMATS, data_bytes, format_of_file
from ingest_core.sink.ledger import Ledger
from ingest_core.sink.publish import Publisher
from ingest_core.sink.storage import LakeStore

EVERY = [(name, codec) for name, fmt in FORMATS.items() for codec in fmt.compressions]
BASE_TS = 1_700_000_000_000


def test_the_settings_accept_exactly_the_registry():
    assert COMPRESSIONS == {name: fmt.compressions for name, fmt in FORMATS.items()}
    assert list(Settings.model_json_schema()["$defs"]["OutputSettings"]["properties"]["format"]["enum"]) == list(FORMATS)


@pytest.mark.parametrize("fmt,codec", EVERY)
def test_every_format_and_compression_lands_and_audits_back(tmp_path, fmt, codec):
    url = f"file://{tmp_path}/lake"
    settings = Settings.model_validate({"topic": "t", "output": {"url": url, "format": fmt, "compression": codec}})
    store = LakeStore.open(url)
    values = [json.dumps({"id": i, "note": "é ü", "nested": {"x": i / 2}}).encode() for i in range(500)]
    values[7] = b"not json"  # a dead letter: the audit counts it, not as a row
    n = len(values)
    batch = Batch("t", 0, 0, list(range(n)), [BASE_TS + i for i in range(n)], [b"k"] * n, values,
                  [None] * n)
    publisher = Publisher(BatchEncoder(settings), Ledger(store), store, DeadLetterFiles(LakeStore.open(f"{url}/_dlq")),
                          NoEvents(), FaultInjector(), FreedMemory())
    encoded, outcome = publisher.encode_and_store(batch, None)
    assert outcome == len(encoded.files) >= 1 and len(encoded.rejects) == 1

    for output in encoded.files:
        assert output.path.endswith(data_file_extension(settings))
        found = format_of_file(output.path)
        assert found is not None and found[0] is FORMATS[fmt]
        read = found[0].read_rows(data_bytes(output.data), found[1])
        assert read.rows == output.rows and read.offsets.to_pylist()[0] == output.first_offset
    assert spark_reader(settings).format == FORMATS[fmt].spark_format

    report = audit(settings, deep=True, positions={0: (n, 0, n)})
    assert report.all_findings == [] and report.rows_read == n - 1 and report.exit_code == 0


def test_pieces_become_one_bytes_object_held_once():
    """An object store takes one bytes object: NDJSON pieces are copied into it once, so the
    file is held once while it is made, not as a list of copies and then their join."""
    import os
    import tracemalloc

    import pyarrow as pa

    from ingest_core.sink.formats.base import Pieces, data_bytes

    pieces = [pa.py_buffer(os.urandom(1 << 20)) for _ in range(24)]
    tracemalloc.start()
    try:
        joined = data_bytes(Pieces(lambda: iter(pieces)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert joined == b"".join(p.to_pybytes() for p in pieces)
    assert peak < 1.25 * len(joined), f"peak {peak >> 20} MiB for a {len(joined) >> 20} MiB file"
