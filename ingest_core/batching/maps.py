"""Memory maps for the buffers' values, kept for reuse once nothing holds them.

A buffer keeps its values in an anonymous memory map (buffer.ValueColumn), which a cut hands
to its batch as the bytes of an Arrow array. Unmapped when the batch is gone, its pages went
back to the kernel, and the next buffer's new map had every page zeroed by the kernel as it
was first written: a third of the consume thread's CPU at 1 KiB values
(bench/profiles/native-1024.md), and more on a machine whose memory is new to it, where the
kernel hands out pages the host has not backed yet. A `MapPool` keeps such maps instead and
gives them to the next buffers, whose values then go into pages this process has written
before.

A map is idle when nothing but the pool refers to it: CPython counts the references, and an
Arrow buffer over a map holds one through the buffer protocol, as does a memoryview, so no
array, slice or view over a batch's bytes can outlive the batch into the next buffer.

Memory: the pages of a map stay resident until it is unmapped, however few bytes its next
buffer holds. `slack_bytes()` is what maps in use hold resident beyond the message bytes in
them; the pipeline counts it with the message bytes against the memory budget, and at the
budget gives back as much of it as takes the bytes held under the budget (`give_back_slack()`)
before it cuts any buffer early.
`idle_bytes()` is what idle maps hold; `let_go()` unmaps idle maps until they fit in the room
the budget leaves, so mapped memory stays within the budget.
"""

from __future__ import annotations

import mmap
import sys
from dataclasses import dataclass

# From this capacity on, a map asks for transparent huge pages (where the kernel grants them:
# THP `madvise` or `always`): one page fault per 2 MiB instead of one per 4 KiB, which halved
# the main thread's cost of taking in 1 KiB values (bench/page_faults.py). The last huge page
# of a map may be only partly written: at most 2 MiB more resident per map past this size.
HUGE_PAGES_FROM = 16 << 20


@dataclass(eq=False)
class KeptMap:
    """One map the pool made, with what was written into it."""

    map: mmap.mmap
    resident: int = 0  # bytes written into the map at most: its pages stay resident
    used: int = 0  # bytes of values in it now (while a buffer or its batch holds it)
    idle_since: float | None = None  # when let_go first saw nothing but the pool hold it

    def wrote(self, size: int) -> None:
        """The map now holds `size` bytes of values."""
        self.used = size
        if size > self.resident:
            self.resident = size


class MapPool:
    """The maps of one pipeline's buffers. Called from the consume thread only; the publisher
    threads only drop their references to a batch's bytes."""

    def __init__(self, keep_idle: int = 4, idle_for: float = 5.0) -> None:
        self.keep_idle = keep_idle  # idle maps kept at most
        # ... and for this many seconds at most. On a backlog a committed batch's map is taken again
        # within a fraction of a second; under steady traffic buffers are cut by age (batch.max_age),
        # and maps kept idle until the next cut held a full round of batches resident for nothing
        # (bench/soak.py, 3,000 1 KiB messages/s: 453-477 MiB RSS so, at most 408 with this limit).
        self.idle_for = idle_for
        # Off, every buffer gets a new map: the pipeline turns reuse off while the budget cannot
        # hold a full batch per partition, where a reused map's pages beyond a small buffer's
        # messages would take room from the buffers filling to full batches (bench/memory.py at
        # 128 partitions: 126,748 records/s reusing against 157,656 not).
        self.reuse = True
        self._kept: list[KeptMap] = []

    def take(self, capacity: int) -> KeptMap:
        """A map of at least `capacity` bytes for a new buffer: the idle one that has the most
        pages written already, else a new one."""
        idle = [kept for kept in self._kept if _idle(kept)] if self.reuse else []
        if idle:
            kept = max(idle, key=lambda k: k.resident)
            kept.used, kept.idle_since = 0, None
            if len(kept.map) < capacity:
                grow(kept.map, capacity)
            return kept
        kept = KeptMap(new_map(capacity))
        self._kept.append(kept)
        return kept

    def slack_bytes(self) -> int:
        """Bytes the maps in use hold resident beyond the values in them."""
        return sum(kept.resident - kept.used for kept in self._kept if not _idle(kept))

    def give_back_slack(self, wanted: int | None = None) -> int:
        """Hand the kernel back pages the maps in use hold beyond the values in them (madvise
        MADV_DONTNEED: they read as zeros again and are zeroed by the kernel when next written,
        as a new map's are): `wanted` bytes or a little more (whole pages), from the ends of the
        maps with the most, or all of it (None); returns the bytes given back. For when the
        budget is reached: cutting a buffer early frees none of this, giving it back does. Only
        what takes the bytes held under the budget: the rest is where those buffers' next
        messages go without a page fault."""
        wanted = self.slack_bytes() if wanted is None else wanted
        given = 0
        in_use = [kept for kept in self._kept if not _idle(kept) and kept.resident > kept.used]
        for kept in sorted(in_use, key=lambda k: k.used - k.resident):  # the most slack first
            if given >= wanted:
                break
            keep = max(kept.used, kept.resident - (wanted - given))
            start = -(-keep // mmap.PAGESIZE) * mmap.PAGESIZE  # the first page past what is kept
            if start < len(kept.map):
                kept.map.madvise(mmap.MADV_DONTNEED, start, len(kept.map) - start)
            given += kept.resident - keep  # (bytes on the page of the last value kept are counted given)
            kept.resident = keep
        return given

    def idle_bytes(self) -> int:
        """Bytes the idle maps hold resident."""
        return sum(kept.resident for kept in self._kept if _idle(kept))

    def let_go(self, room: int, now: float = 0.0) -> None:
        """Unmap idle maps until at most `keep_idle` are left, none idle for longer than
        `idle_for` seconds at `now` (monotonic), and their pages fit in `room` bytes; the maps
        with the most pages written stay. Maps no longer in use and not kept are unmapped when
        their last holder lets go, as without a pool."""
        in_use: list[KeptMap] = []
        idle: list[KeptMap] = []
        for kept in self._kept:  # one reference count per map
            if _idle(kept):
                kept.idle_since = now if kept.idle_since is None else kept.idle_since
                idle.append(kept)
            else:
                kept.idle_since = None
                in_use.append(kept)
        kept_idle: list[KeptMap] = []
        for kept in sorted(idle, key=lambda k: -k.resident):
            fresh = now - (kept.idle_since or 0.0) <= self.idle_for
            if self.reuse and fresh and len(kept_idle) < self.keep_idle and kept.resident <= room:
                kept_idle.append(kept)
                room -= kept.resident
            else:
                kept.map.close()
        self._kept = in_use + kept_idle

    def __len__(self) -> int:
        return len(self._kept)


def _idle(kept: KeptMap) -> bool:
    """Nothing but the pool refers to the map: getrefcount sees the pool's reference and its own argument."""
    return sys.getrefcount(kept.map) <= 2


def new_map(capacity: int) -> mmap.mmap:
    data = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE)
    _ask_for_huge_pages(data)
    return data


def grow(data: mmap.mmap, capacity: int) -> None:
    """Resize a map in place (mremap); raises BufferError while an export of it exists."""
    data.resize(capacity)
    _ask_for_huge_pages(data)


def _ask_for_huge_pages(data: mmap.mmap) -> None:
    if len(data) >= HUGE_PAGES_FROM and hasattr(mmap, "MADV_HUGEPAGE"):
        data.madvise(mmap.MADV_HUGEPAGE)
