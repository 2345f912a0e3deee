"""What `ingest` imports only when a run needs it."""

import subprocess
import sys

PROBE = """
import sys
from ingest_core.commands import cli  # what the `ingest` command imports first
from ingest_core.sink.formats import encoder_for
encoder_for("ndjson", "none")
print("pyarrow.parquet" in sys.modules)
encoder_for("parquet", "zstd")
print("pyarrow.parquet" in sys.modules)
"""


def test_pyarrow_parquet_is_imported_by_the_parquet_encoder_only():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
