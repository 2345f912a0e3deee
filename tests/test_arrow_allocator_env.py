"""`ingest` gives pyarrow's C++ code the C library's malloc: the Parquet writer allocates its pages and
compression buffers from pyarrow's process-wide default, which pyarrow chooses when it is imported."""

import os
import subprocess
import sys

PROBE = """
from ingest_core.commands import cli  # what the `ingest` command imports first
import io
import pyarrow as pa
import pyarrow.parquet as pq
table = pa.table({"note": [str(i) * 40 for i in range(100_000)]})
pq.write_table(table, io.BytesIO(), compression="zstd")
print(pa.default_memory_pool().backend_name, pa.mimalloc_memory_pool().max_memory())
"""


def probe(environ: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True)
    backend, mimalloc_peak = out.stdout.split()
    return backend, int(mimalloc_peak)


def without_pool_setting() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}


def test_the_parquet_writer_allocates_nothing_through_mimalloc():
    assert probe(without_pool_setting()) == ("system", 0)


def test_an_allocator_named_in_the_environment_is_kept():
    backend, mimalloc_peak = probe({**without_pool_setting(), "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"})
    assert backend == "mimalloc" and mimalloc_peak > 0
