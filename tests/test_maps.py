"""MapPool: a buffer's memory map is reused once nothing holds its batch's bytes, never before."""
from __future__ import annotations

import gc

from fakes import FakeMessage, rss_bytes

from ingest_core.batching.buffer import PartitionBuffer
from ingest_core.batching.maps import MapPool


def _fill(buffer: PartitionBuffer, values: list[bytes], start: int) -> None:
    buffer.extend([FakeMessage("orders", 0, start + i, v, None, 1) for i, v in enumerate(values)], now=1.0)


def test_the_map_of_a_batch_that_is_gone_goes_to_the_next_buffer():
    pool = MapPool()
    buffer = PartitionBuffer("orders", 0, maps=pool)
    _fill(buffer, [b"a" * 1000] * 10, 0)
    first = buffer.values.data
    batch = buffer.take()
    _fill(buffer, [b"b" * 10] * 3, 10)  # the batch still holds the first map: a second one
    assert buffer.values.data is not first and len(pool) == 2
    del batch, first
    gc.collect()
    second = buffer.take()
    del second
    _fill(buffer, [b"c" * 5], 13)  # both maps idle: the one with the most pages written is taken
    assert len(pool) == 2
    assert pool.slack_bytes() == 10_000 - 5 and pool.idle_bytes() == 30
    assert buffer.take().values.to_pylist() == [b"c" * 5]


def test_no_map_is_reused_while_an_array_slice_or_view_of_its_batch_is_alive():
    pool = MapPool()
    buffer = PartitionBuffer("orders", 0, maps=pool)
    values = [bytes([65 + i]) * 100 for i in range(20)]
    _fill(buffer, values, 0)
    batch = buffer.take()
    kept_slice = batch.values.slice(5, 3)  # what an encoder or a dead letter might still hold
    view = memoryview(batch.values.buffers()[2])
    del batch
    gc.collect()
    for round_ in range(3):  # new buffers must not write over those bytes
        _fill(buffer, [b"z" * 100] * 20, 20 + 40 * round_)
        leftover = buffer.take()
        del leftover
        gc.collect()
    assert kept_slice.to_pylist() == values[5:8]
    assert bytes(view[:100]) == values[0]
    del kept_slice
    gc.collect()
    _fill(buffer, [b"y"], 200)
    assert bytes(view[:100]) == values[0]  # still held by the view alone
    view.release()


def test_let_go_keeps_idle_maps_only_within_the_room_and_the_count():
    pool = MapPool(keep_idle=2)
    buffers = [PartitionBuffer("orders", p, maps=pool) for p in range(4)]
    batches = []
    for size, buffer in zip([100, 200, 300, 400], buffers, strict=True):
        _fill(buffer, [b"x" * size], 0)
        batches.append(buffer.take())
    del batches
    gc.collect()
    assert pool.idle_bytes() == 1000 and len(pool) == 4
    pool.let_go(room=650)  # the two largest that fit: 400, then 200 (300 would not fit after 400)
    assert len(pool) == 2 and pool.idle_bytes() == 600
    pool.let_go(room=0)
    assert len(pool) == 0 and pool.idle_bytes() == 0


def test_a_reused_map_counts_its_pages_beyond_the_values_against_the_budget(tmp_path):
    """The pipeline's held bytes include what a reused map holds resident beyond the messages in it."""
    pool = MapPool()
    big, small = PartitionBuffer("orders", 0, maps=pool), PartitionBuffer("orders", 1, maps=pool)
    _fill(big, [b"x" * 1000] * 50, 0)
    big.take()
    gc.collect()
    _fill(small, [b"y" * 100], 0)
    assert small.values.data is not None and pool.slack_bytes() == 50_000 - 100
    _fill(small, [b"y" * 100] * 600, 1)  # past what the map held: no slack left
    assert pool.slack_bytes() == 0 and pool.idle_bytes() == 0


def test_with_reuse_off_every_buffer_gets_a_new_map_and_idle_ones_are_let_go():
    pool = MapPool()
    pool.reuse = False
    buffer = PartitionBuffer("orders", 0, maps=pool)
    _fill(buffer, [b"x" * 1000], 0)
    first_id = id(buffer.values.data)
    buffer.take()
    gc.collect()
    _fill(buffer, [b"y"], 1)
    assert id(buffer.values.data) != first_id and pool.slack_bytes() == 0
    pool.let_go(room=1 << 30)
    assert len(pool) == 1 and pool.idle_bytes() == 0


def test_giving_back_the_slack_returns_its_pages_to_the_kernel_and_keeps_the_values():
    """A reused 64 MiB map under a buffer of 1,000 bytes: give_back_slack() drops the pages past the
    values (the process's RSS, as the OS counts it, falls by about 64 MiB), the values stay, and the
    map reads as zeros past them."""
    pool = MapPool()
    buffer = PartitionBuffer("orders", 0, maps=pool)
    _fill(buffer, [b"a" * (1 << 20)] * 64, 0)
    buffer.take()  # the batch is dropped at once: its map is idle
    gc.collect()
    _fill(buffer, [b"b" * 100] * 10, 64)
    assert pool.slack_bytes() == (64 << 20) - 1000
    before = rss_bytes()
    assert pool.give_back_slack() == (64 << 20) - 1000
    assert before - rss_bytes() > 48 << 20
    assert pool.slack_bytes() == 0
    data = buffer.values.data
    assert data is not None and data[:1000] == b"b" * 1000 and data[4096 : 4096 + (1 << 20)] == bytes(1 << 20)
    assert buffer.take().values.to_pylist() == [b"b" * 100] * 10


def test_at_the_budget_only_the_slack_wanted_is_given_back_from_the_end_of_the_map_with_most():
    """Two reused 32 MiB maps, one under 1 MiB of values and one under 8 MiB: 4 MiB wanted come
    from the end of the first (RSS falls by about 4 MiB, not 55), and its next 27 MiB of values
    go into pages it still holds; the other map is not touched."""
    pool = MapPool()
    buffers = [PartitionBuffer("orders", p, maps=pool) for p in range(2)]
    for buffer in buffers:
        _fill(buffer, [b"a" * (1 << 20)] * 32, 0)
    for buffer in buffers:
        buffer.take()
    gc.collect()
    _fill(buffers[0], [b"b" * (1 << 20)] * 1, 32)
    _fill(buffers[1], [b"c" * (1 << 20)] * 8, 32)
    assert pool.slack_bytes() == (31 << 20) + (24 << 20)
    before = rss_bytes()
    assert pool.give_back_slack(4 << 20) == 4 << 20
    assert 3 << 20 < before - rss_bytes() < 6 << 20
    assert pool.slack_bytes() == (27 << 20) + (24 << 20)
    data = buffers[0].values.data
    assert data is not None and data[(28 << 20) : (28 << 20) + 10] == bytes(10)  # the end dropped: zeros
    assert data[(27 << 20) - 10 : 27 << 20] == b"a" * 10  # the rest kept as written
    assert [b.take().values.to_pylist()[0][:1] for b in buffers] == [b"b", b"c"]


def test_maps_idle_for_longer_than_idle_for_are_let_go():
    """Under steady traffic a buffer is cut by age, so a committed batch's map would wait a whole
    batch.max_age for the next cut: maps idle longer than `idle_for` seconds are unmapped."""
    pool = MapPool(idle_for=5.0)
    buffers = [PartitionBuffer("orders", p, maps=pool) for p in range(2)]
    for buffer in buffers:
        _fill(buffer, [b"x" * 1000], 0)
    first = buffers[0].take()
    buffers[1].take()  # dropped at once: idle from here on
    gc.collect()
    pool.let_go(room=1 << 30, now=100.0)  # first seen idle at 100
    assert len(pool) == 2 and pool.idle_bytes() == 1000
    del first
    gc.collect()
    pool.let_go(room=1 << 30, now=104.0)  # buffer 0's map idle since 104, buffer 1's since 100
    assert len(pool) == 2 and pool.idle_bytes() == 2000
    pool.let_go(room=1 << 30, now=105.5)  # buffer 1's map idle 5.5 s: let go; buffer 0's 1.5 s: kept
    assert len(pool) == 1 and pool.idle_bytes() == 1000
    _fill(buffers[0], [b"y"], 1)  # buffer 0's map taken again: no longer idle, whatever its age
    pool.let_go(room=1 << 30, now=200.0)
    assert len(pool) == 1 and pool.slack_bytes() == 1000 - 1
