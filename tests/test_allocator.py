"""When the publisher threads give the allocator's freed memory back (sink/allocator.py)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest
from fakes import Clock, rss_bytes

from ingest_core.sink.allocator import FreedMemory, use_system_allocator


def counted(every: float = 1.0) -> tuple[FreedMemory, list[float], Clock]:
    clock = Clock(100.0)
    released: list[float] = []
    return FreedMemory(every=every, release=lambda: released.append(clock.now), clock=clock), released, clock


def test_as_batches_finish_freed_memory_goes_back_at_most_once_every_interval():
    """On a backlog the next batch reuses what the last one freed: releasing after each would
    only have the kernel zero those pages again."""
    freed, released, clock = counted(every=1.0)
    for _ in range(10):  # ten batches, one after the other, 0.25 s each
        with freed.batch():
            clock.now += 0.25
    assert released == [101.0, 102.0]


def test_overlapping_batches_share_one_interval():
    freed, released, clock = counted(every=1.0)
    with freed.batch():
        clock.now += 1.5
        with freed.batch():
            pass
        assert released == [101.5]
    assert released == [101.5]  # the second to finish, in the same interval


def test_once_the_publishers_have_been_idle_for_the_interval_the_rest_goes_back():
    freed, released, clock = counted(every=1.0)
    freed.settle()
    assert released == []  # nothing finished yet: nothing owed
    with freed.batch():
        clock.now += 0.5
    assert released == []  # within the interval of the start
    clock.now += 0.9
    freed.settle()
    assert released == []  # idle 0.9 s
    clock.now += 0.1
    freed.settle()
    freed.settle()
    assert released == [101.5]  # idle 1 s: released once
    with freed.batch():
        clock.now += 2.0
        freed.settle()  # a batch at work: not idle
        assert released == [101.5]
    assert released == [101.5, 103.5]


def test_a_batch_that_fails_still_counts_as_finished():
    freed, released, clock = counted()
    with pytest.raises(RuntimeError), freed.batch():
        raise RuntimeError("storage down")
    clock.now += 1.0
    freed.settle()
    assert released == [101.0]


def test_the_last_batch_out_hands_freed_arrow_memory_back_to_the_os():
    """RSS as the OS sees it: 1 KiB Arrow buffers allocated on a publisher thread and freed, every
    16th kept so the heap cannot shrink from its top, stay resident until the batch that freed
    them finishes, an interval after the last release."""
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    clock = Clock(100.0)
    freed = FreedMemory(clock=clock)
    seen: dict[str, int] = {}

    def publish() -> None:
        with freed.batch():
            buffers = [pa.allocate_buffer(1024) for _ in range(160_000)]  # ~160 MiB on this thread's heap
            for buffer in buffers:
                buffer.to_pybytes()  # write every page
            kept = buffers[::16]
            del buffers
            seen["freed"] = rss_bytes() // 1024
            clock.now += 1.0
        del kept

    try:
        worker = threading.Thread(target=publish)
        worker.start()
        worker.join()
        seen["released"] = rss_bytes() // 1024
    finally:
        pa.set_memory_pool(before)
    assert seen["freed"] - seen["released"] > 100 * 1024  # KiB: most of the 150 MiB freed went back


def test_ingest_run_gives_pyarrow_malloc_unless_the_environment_names_an_allocator():
    before = pa.default_memory_pool()
    try:
        assert use_system_allocator({}) == "system" and pa.default_memory_pool().backend_name == "system"
        pa.set_memory_pool(before)
        assert use_system_allocator({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == before.backend_name
    finally:
        pa.set_memory_pool(before)
