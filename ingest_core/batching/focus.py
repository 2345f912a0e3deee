"""Memory focus: while the bytes held approach the budget, which partitions may consume, which
are paused, and which buffer is cut early, so that files stay full-size.

Pure functions over the partitions' states; the flow (flow.py) calls them once a loop turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ingest_core.batching.buffer import FlushPolicy

if TYPE_CHECKING:  # the flow's per-partition state; batching does not import the flow at run time
    from ingest_core.partition import PartitionState

# From this share of the budget held, only the fullest buffers consume; below the second, all
# do again (the gap keeps pause/resume from flapping).
FOCUS_FROM, FOCUS_UNTIL = 0.5, 0.25


def held_bytes(states: Iterable[PartitionState]) -> int:
    """Bytes of messages held: buffered, or cut and not yet committed."""
    return sum(s.buffer.nbytes + (s.cut.nbytes if s.cut is not None else 0) for s in states)


def budget_bytes(memory_budget: int | None, max_bytes: int, partitions: int, publish_slots: int = 0) -> int:
    """Message bytes we may hold now: the memory budget, and never more than a full batch per
    assigned partition plus one per publish slot (a batch being published while its partition
    fills the next)."""
    by_partitions = max_bytes * (partitions + publish_slots) if partitions else 0
    return by_partitions if memory_budget is None else min(memory_budget, by_partitions)


def holds_full_batches(memory_budget: int | None, max_bytes: int, partitions: int, publish_slots: int) -> bool:
    """Does the budget hold a full batch for every partition and every publish slot?"""
    return memory_budget is None or memory_budget >= max_bytes * (partitions + publish_slots)


def choose_focus(
    states: dict[int, PartitionState],
    max_bytes: int,
    budget: int,
    held: int,
    focus: frozenset[int] | None,
    publish_slots: int = 0,
) -> frozenset[int] | None:
    """Which partitions may consume while memory is short (None: all), given the current `focus`.

    On a backlog over more partitions than the budget holds full batches of, every buffer
    would grow evenly until the budget is reached, and then each would be cut early at
    budget / partitions. Instead, once the bytes held reach FOCUS_FROM of the budget, only
    the fullest buffers go on filling, as many as the room left lets reach batch.max_bytes
    (the least recently cut first among equals, so every partition gets its turn); the
    others are paused with what they hold. Each cut makes room for the next. Below
    FOCUS_UNTIL of the budget every partition consumes again. No partition is paused for
    focus when the budget holds a full batch in every buffer and in every publish slot: a
    pause is not free (librdkafka drops a paused partition's prefetched messages and
    fetches them again after it resumes). A partition read to its end (the consumer
    reports it: enable.partition.eof) is never paused for focus: it only grows at the
    rate it is produced to, and its lag must not build up behind a backlog.
    Should the bytes held still reach the budget, the fullest buffer is cut early."""
    if held < budget * (FOCUS_UNTIL if focus is not None else FOCUS_FROM):
        return None
    if holds_full_batches(budget, max_bytes, len(states), publish_slots):
        return None  # room for a full batch in every buffer and every publish slot: nobody need wait
    room = budget - held
    candidates = sorted(
        (p for p, s in states.items() if s.resolved and s.forced_end is None and not s.at_end),
        key=lambda p: (-states[p].buffer.nbytes, states[p].cut_at),
    )
    chosen: set[int] = set()
    for partition in candidates:
        need = max(0, max_bytes - states[partition].buffer.nbytes)
        if chosen and need > room:
            break
        chosen.add(partition)
        room -= need
    return frozenset(chosen)


def _cuttable(s: PartitionState) -> bool:
    """Holds messages and could be cut now: nothing in flight, no retry, no replay."""
    return (
        bool(s.buffer.offsets)
        and s.cut is None
        and s.job is None
        and s.resolved
        and s.forced_end is None
        and s.attempts == 0
    )


def fullest_buffer(states: Iterable[PartitionState]) -> PartitionState | None:
    """The partition whose buffer holds the most bytes, of those that could be cut now."""
    return max((s for s in states if _cuttable(s)), key=lambda s: s.buffer.nbytes, default=None)


def caught_up_to_cut(states: dict[int, PartitionState], focus: frozenset[int] | None) -> PartitionState | None:
    """While partitions with a backlog wait paused for room (the memory focus), the fullest
    buffer of a partition already read to its end is cut early: it can only grow at the
    rate the topic is produced to, and the room it holds lets a waiting partition make a
    full-size file. With no partition waiting, caught-up buffers fill up as usual."""
    if focus is None:
        return None
    waiting = any(p not in focus and not s.at_end and s.resolved for p, s in states.items())
    if not waiting:
        return None
    return max((s for s in states.values() if s.at_end and _cuttable(s)), key=lambda s: s.buffer.nbytes, default=None)


def should_pause(
    partition: int, state: PartitionState, policy: FlushPolicy, focus: frozenset[int] | None, holding_all: bool
) -> bool:
    """Pause the partition while storage is failing, while its buffer is full and its
    previous batch is still being published, or while the whole loop is at its memory
    budget and will consume anyway (`holding_all`); resume otherwise. A partition that is
    replaying a batch left by an earlier run is never held for memory: that batch's end
    is fixed, and it cannot be cut before it arrives.
    (Pausing every partition whenever the budget is reached costs throughput: librdkafka
    drops a paused partition's prefetched messages and fetches them again. So while a
    publish is under way the loop stops calling consume() instead, see Pipeline._poll.)"""
    buffer = state.buffer
    full = buffer.nbytes >= policy.max_bytes or len(buffer.offsets) >= policy.max_records
    busy = state.job is not None or state.cut is not None or state.due_since is not None
    out_of_focus = focus is not None and partition not in focus and state.resolved and not state.at_end
    held_for_memory = (holding_all or out_of_focus) and state.forced_end is None
    return state.attempts > 0 or (busy and full) or held_for_memory
