"""pyarrow's allocator for `ingest run`, and when the memory it freed goes back to the OS.

Encoding and writing a batch allocate through pyarrow's pool on the publisher threads. Freed,
that memory stays with the allocator until it is trimmed. Trimming is not free: the system
allocator's trim (`malloc_trim`) gives back the free pages of every thread's heap, librdkafka's
receive buffers included, and each page given back is zeroed by the kernel when it is written
again. Twice after every batch, on a backlog of 1 KiB values into NDJSON, that doubled the
process's page faults and cost 9 % of its time, for no lower peak (bench/versus.py; bench/RESULTS.md,
"Returning freed memory cost page faults").
So `FreedMemory` trims at most once a second while batches follow each other (the next batch
reuses what the last one freed), and once the publishers have been idle for a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import pyarrow as pa

# While batches follow each other, freed memory goes back at most this often (seconds).
TRIM_EVERY = 1.0


def use_system_allocator(environ: Mapping[str, str]) -> str:
    """Give pyarrow the C library's malloc for this process, unless ARROW_DEFAULT_MEMORY_POOL
    names an allocator; returns the one in use. Called once, when `ingest run` starts.

    Why: with batches parsed in slices on the publisher threads, pyarrow's default,
    mimalloc, kept 30-40 MiB more resident than malloc at the peak of a backlog (Parquet
    548-555 against 514-522 MiB, NDJSON 499-500 against 466-467) and was no faster
    (bench/RESULTS.md, Memory)."""
    if not environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    return pa.default_memory_pool().backend_name


def return_freed_arrow_memory() -> None:
    """Give back what pyarrow's allocator keeps of memory freed (malloc: `malloc_trim`;
    mimalloc keeps freed memory per thread for reuse, so each publisher thread holds on to its
    largest batch's peak otherwise, 240-440 MiB at 64 MiB batches, bench/encode_memory.py)."""
    release = getattr(pa.default_memory_pool(), "release_unused", None)
    if release is not None:
        release()


class FreedMemory:
    """When the memory freed by encoding and storing batches goes back: one per pipeline, shared
    by its publisher threads, which encode and store each batch inside `batch()`. As a batch
    finishes, at most once every `every` seconds; and from the consume loop (`settle()`) once
    no batch has been at work for `every` seconds, so an idle consumer holds none of it."""

    def __init__(
        self,
        every: float = TRIM_EVERY,
        release: Callable[[], None] = return_freed_arrow_memory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.release = release
        self.clock = clock
        self._lock = threading.Lock()  # the publisher threads and the consume loop share what follows
        self._working = 0  # batches inside batch()
        self._released_at = clock()  # the first interval starts here
        self._finished_at = self._released_at  # when the last batch finished
        self._owed = False  # a batch finished since the last release

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            self._working += 1
        try:
            yield
        finally:
            with self._lock:
                self._working -= 1
                self._finished_at = self.clock()
                self._owed = True
                due = self._due(self._finished_at - self._released_at)
            if due:
                self.release()

    def settle(self) -> None:
        """Release what is owed once no batch has been at work for `every` seconds."""
        with self._lock:
            due = self._working == 0 and self._due(self.clock() - self._finished_at)
        if due:
            self.release()

    def _due(self, waited: float) -> bool:
        """(lock held) Whether to release now; if so, it counts as released."""
        if not self._owed or waited < self.every:
            return False
        self._owed, self._released_at = False, self.clock()
        return True
