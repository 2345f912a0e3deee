"""The `ingest` command line on top of everything else: cli.py parses it and runs `run` (run.py),
`validate` (with sizing.py), `new`, `render` (with render_monitoring.py), `autoloader` and `audit`
(with audit_chain.py, audit_rows.py, audit_topic.py). Nothing below this package imports it."""

import os

# pyarrow reads ARROW_DEFAULT_MEMORY_POOL once, when it is first imported, to choose the allocator
# of its C++ code. Code that allocates without being handed a pool (the Parquet writer's pages and
# compression buffers among it) uses that one, whatever sink/allocator.py later sets for Python's
# calls: so `ingest` asks for the C library's malloc here, before anything imports pyarrow, unless
# the environment names an allocator. Why malloc: sink/allocator.py.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
