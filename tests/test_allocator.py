"""When the publisher threads give the allocator's freed memory back (sink/allocator.py)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from ingest_core.sink.allocator import FreedMemory, use_system_allocator


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counted(every: float = 1.0) -> tuple[FreedMemory, list[float], Clock]:
    clock = Clock()
    released: list[float] = []
    return FreedMemory(every=every, release=lambda: released.append(clock.now), clock=clock), released, clock


def test_freed_memory_goes_back_when_the_last_batch_at_work_finishes():
    freed, released, _ = counted()
    with freed.batch():
        with freed.batch():
            pass
        assert released == []  # the other batch is still at work: what this one freed is reused by it
    assert released == [100.0]


def test_while_batches_overlap_freed_memory_goes_back_at_most_once_every_interval():
    freed, released, clock = counted(every=1.0)
    with freed.batch():  # a batch always at work: the publishers never go idle
        for _ in range(10):  # ten batches finish 0.25 s apart beside it
            with freed.batch():
                clock.now += 0.25
        assert released == [101.0, 102.0]  # not after each of the ten
    assert released == [101.0, 102.0, 102.5]  # and when the publishers go idle


def test_a_batch_that_fails_still_counts_as_finished():
    freed, released, _ = counted()
    with pytest.raises(RuntimeError), freed.batch():
        raise RuntimeError("storage down")
    assert released == [100.0]
    with freed.batch():
        pass
    assert len(released) == 2  # the count went back to zero: the next batch alone releases again


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_the_last_batch_out_hands_freed_arrow_memory_back_to_the_os():
    """RSS as the OS sees it: 1 KiB Arrow buffers allocated on a publisher-like thread and freed,
    every 16th kept so the heap cannot shrink from its top, stay resident until released."""
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    freed = FreedMemory()
    seen: dict[str, int] = {}

    def publish() -> None:
        with freed.batch():
            buffers = [pa.allocate_buffer(1024) for _ in range(160_000)]  # ~160 MiB on this thread's heap
            for buffer in buffers:
                buffer.to_pybytes()  # write every page
            kept = buffers[::16]
            del buffers
            seen["freed"] = resident_kib()
        seen["released"] = resident_kib()
        del kept

    try:
        worker = threading.Thread(target=publish)
        worker.start()
        worker.join()
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
