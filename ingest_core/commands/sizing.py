"""`ingest validate`'s sizing checks: memory against partitions per replica, and the
deployment's timings against the batches it holds.

Each check returns warnings that name the file, the keys and the fix. None of them stops a
consumer from running: a config that cannot make full-size files still lands everything,
in smaller files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest_core.batching.budget import (
    ENCODE_WORKING_SHARE,
    MEMORY_SHARE,
    WHOLE_TEXT_SHARE,
    MemoryBudget,
    prefetch_bytes,
)
from ingest_core.settings import Settings
from ingest_core.sink.formats import FORMATS
from ingest_core.sink.stores import store_for
from ingest_core.source.kafka import consumer_config, producer_config

MiB = 1024 * 1024
PUBLISH_SLOTS = 2  # as runner.PUBLISH_SLOTS (not imported: validate must not load the runner)
# What a final flush is assumed to sustain (encode and upload of what the budget holds), for
# the grace-period check: about what one pod does to an object store over its network.
FLUSH_BYTES_PER_SECOND = 50 * 1000 * 1000
GRACE_MARGIN = 10.0  # seconds: leaving the group and closing the consumer after the last commit


@dataclass(frozen=True)
class PartitionCount:
    partitions: int
    source: str  # where the number came from, for the message


PartitionLookup = Callable[[Settings], PartitionCount | None]


def partitions_from_broker(timeout: float = 3.0) -> PartitionLookup:
    """Ask the broker (quietly, once per bootstrap list) how many partitions the topic has."""
    unreachable: set[str] = set()

    def lookup(settings: Settings) -> PartitionCount | None:
        from confluent_kafka.admin import AdminClient

        bootstrap = consumer_config(settings)["bootstrap.servers"]
        if bootstrap in unreachable:
            return None
        admin = AdminClient(
            {
                **producer_config(settings),
                "bootstrap.servers": bootstrap,
                "log_level": 0,
                "error_cb": lambda _error: None,  # type: ignore[dict-item]  # the stub types values as scalars
            }
        )
        try:
            metadata = admin.list_topics(settings.topic, timeout=timeout)
        except Exception:  # noqa: BLE001 - unreachable or refused: fall back to deploy
            unreachable.add(bootstrap)
            return None
        topic = metadata.topics.get(settings.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return None
        return PartitionCount(len(topic.partitions), f"topic {settings.topic} on {bootstrap}")

    return lookup


def partitions_from_deploy(settings: Settings) -> PartitionCount | None:
    if settings.deploy.keda.partitions:
        return PartitionCount(settings.deploy.keda.partitions, "deploy.keda.partitions")
    return None


def sizing_warnings(path: Path, settings: Settings, lookup: PartitionLookup | None = None) -> list[str]:
    count = (lookup(settings) if lookup else None) or partitions_from_deploy(settings)
    return memory_warnings(path, settings, count) + timing_warnings(path, settings)


def replicas_at_least(settings: Settings) -> int:
    """The fewest replicas that share the topic: KEDA's minimum when it scales, else deploy.replicas."""
    keda = settings.deploy.keda
    return max(1, keda.min_replicas if keda.enabled else settings.deploy.replicas)


def planned_budget(settings: Settings) -> MemoryBudget:
    """The memory budget `ingest run` plans for these settings (batching/budget.py)."""
    output = settings.output
    whole_text = (
        FORMATS[output.format].writes_json_text and output.codec == "none" and store_for(output.url).name != "local"
    )
    share = WHOLE_TEXT_SHARE if whole_text else ENCODE_WORKING_SHARE
    return MemoryBudget.plan(
        settings.memory_limit, settings.batch.max_bytes, PUBLISH_SLOTS, prefetch_bytes(consumer_config(settings)), share
    )


def memory_warnings(path: Path, settings: Settings, count: PartitionCount | None) -> list[str]:
    if count is None:
        return []
    replicas = replicas_at_least(settings)
    per_replica = math.ceil(count.partitions / replicas)
    max_bytes = settings.batch.max_bytes
    budget = planned_budget(settings)
    if budget.full_batches >= per_replica:
        return []
    limit_from = (
        "memory.limit"
        if settings.memory.limit is not None
        else f"memory.limit, by default {MEMORY_SHARE:.0%} of deploy.resources.memory "
        f"{settings.deploy.resources.memory}"
    )
    smaller = budget.file_bytes_at(per_replica)
    # What would give every partition of a replica a full batch at once.
    needed_limit = budget.prefetch + budget.encode_working + per_replica * max_bytes
    needed_pod = math.ceil(needed_limit / MEMORY_SHARE / (256 * MiB)) * 256  # in steps of 256Mi
    needed_replicas = math.ceil(count.partitions / max(1, budget.full_batches)) if budget.full_batches else None
    fixes = [
        f"raise deploy.resources.memory to {needed_pod}Mi"
        + ("" if settings.memory.limit is None else f" and memory.limit to {needed_limit // MiB}MiB"),
        f"or lower batch.max_bytes to {max(1, budget.messages // per_replica // MiB)}MiB",
    ]
    if needed_replicas and needed_replicas <= count.partitions:
        fixes.append(
            f"or raise deploy.replicas{' (deploy.keda.min_replicas)' if settings.deploy.keda.enabled else ''} "
            f"to {needed_replicas}"
        )
    return [
        f"{path}: memory.limit / batch.max_bytes: {limit_from} gives {budget.messages // MiB} MiB for messages, "
        f"{budget.full_batches} full batch(es) of batch.max_bytes {max_bytes // MiB} MiB, but each replica owns "
        f"up to {per_replica} partitions ({count.partitions} of {count.source} over {replicas} replica(s)). "
        f"A backlog is still landed in full-size files, a few partitions at a time; steady traffic on every "
        f"partition is cut at about {max(1, smaller // MiB)} MiB per file. Fix: {', '.join(fixes)}"
    ]


def timing_warnings(path: Path, settings: Settings) -> list[str]:
    warnings = []
    deploy, batch = settings.deploy, settings.batch
    keda = deploy.keda
    if keda.enabled and keda.cooldown <= batch.max_age:
        warnings.append(
            f"{path}: deploy.keda.cooldown: {keda.cooldown:.0f}s is not longer than batch.max_age "
            f"{batch.max_age:.0f}s. Records buffered but not committed count as lag to KEDA, so a replica may be "
            f"scaled down while it holds a batch (the batch is replayed, the work done twice). "
            f"Fix: set deploy.keda.cooldown to at least {math.ceil(2 * batch.max_age)}s"
        )
    budget_bytes = planned_budget(settings).messages
    flush_seconds = budget_bytes / FLUSH_BYTES_PER_SECOND
    needed = deploy.shutdown_timeout + flush_seconds + GRACE_MARGIN
    if deploy.termination_grace_period < needed:
        warnings.append(
            f"{path}: deploy.termination_grace_period: {deploy.termination_grace_period:.0f}s does not cover a final "
            f"flush: deploy.shutdown_timeout {deploy.shutdown_timeout:.0f}s + about {flush_seconds:.0f}s to publish the "
            f"{budget_bytes // MiB} MiB the memory budget may hold + {GRACE_MARGIN:.0f}s to leave the group. "
            f"Kubernetes kills the pod at the grace period and the batches are replayed by the next owner. "
            f"Fix: set deploy.termination_grace_period to at least {math.ceil(needed)}s, or lower deploy.shutdown_timeout"
        )
    return warnings
