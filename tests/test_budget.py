"""The memory budget's arithmetic: one limit per process, split the same whatever the partitions."""
from __future__ import annotations

import pytest

from ingest_core.batching.budget import MEMORY_SHARE, MIN_MESSAGES, MemoryBudget, prefetch_bytes
from ingest_core.settings import Settings
from ingest_core.units import parse_kubernetes_memory

MiB = 1024 * 1024


def test_the_shipped_pod_gets_half_its_memory_as_budget():
    settings = Settings.model_validate({"topic": "t", "output": {"url": "file:///tmp/x"}})
    assert settings.deploy.resources.memory == "1Gi"
    assert settings.memory_limit == int(1024 * MiB * MEMORY_SHARE)
    explicit = Settings.model_validate({"topic": "t", "output": {"url": "file:///tmp/x"}, "memory": {"limit": "300MiB"}})
    assert explicit.memory_limit == 300 * MiB


def test_plan_reserves_prefetch_and_encoding_then_gives_the_rest_to_messages():
    budget = MemoryBudget.plan(512 * MiB, 64 * MiB, publish_slots=2, prefetch=16 * MiB)
    assert budget.prefetch == 16 * MiB
    assert budget.encode_working == 96 * MiB  # 0.75 x 64 MiB for each of two batches in flight
    assert budget.messages == 400 * MiB and budget.full_batches == 6
    assert budget.prefetch + budget.encode_working + budget.messages == budget.limit
    assert budget.file_bytes_at(4) == 64 * MiB and budget.file_bytes_at(128) == 400 * MiB // 128


def test_a_budget_smaller_than_a_full_batch_plans_smaller_batches():
    budget = MemoryBudget.plan(100 * MiB, 64 * MiB, publish_slots=2, prefetch=16 * MiB)
    assert budget.messages < 64 * MiB and budget.full_batches == 0
    assert budget.encode_working == pytest.approx(1.5 * budget.messages, rel=0.01)
    assert MemoryBudget.plan(10 * MiB, 64 * MiB, 2, 16 * MiB).messages == MIN_MESSAGES


def test_prefetch_follows_the_consumer_properties():
    assert prefetch_bytes({}) == 16 * MiB
    assert prefetch_bytes({"queued.max.messages.kbytes": 65536, "fetch.max.bytes": 52428800}) == 64 * MiB + 52428800


@pytest.mark.parametrize("text, expected", [("1Gi", 1 << 30), ("512Mi", 512 << 20), ("1G", 10**9), ("800M", 8 * 10**8),
                                            ("1073741824", 1 << 30), ("1.5Gi", 3 << 29)])
def test_kubernetes_memory_quantities(text, expected):
    assert parse_kubernetes_memory(text) == expected


def test_a_pod_memory_that_is_not_a_kubernetes_quantity_is_refused():
    with pytest.raises(ValueError, match="deploy"):
        Settings.model_validate({"topic": "t", "output": {"url": "file:///x"}, "deploy": {"resources": {"memory": "1GiB"}}})
