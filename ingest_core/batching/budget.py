"""One memory budget per process, whatever the partition count.

`memory.limit` (default: MEMORY_SHARE of `deploy.resources.memory`, the pod's limit) covers
everything held for batching: librdkafka's prefetch, the encoders' working memory for the
batches being published, and the message bytes held (buffered, or cut and not yet
committed). The rest of the pod is the process itself: Python, pyarrow and librdkafka
code and their allocators, which this budget does not try to count.

`MemoryBudget.plan` splits the limit; the pipeline keeps the message bytes it holds at or
below `messages`, by cutting the fullest buffer early (flush reason "memory") and by not
consuming while it is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The share of the pod's memory limit given to the budget. The other half is the process
# and its allocators' slack: an idle consumer is ~100 MiB resident (Python, pyarrow,
# librdkafka), and freed batch memory returns to the OS in pages, not at once. Measured
# by bench/memory.py: see bench/RESULTS.md ("Memory: one budget per pod").
MEMORY_SHARE = 0.5

# Working memory of one batch's encode, as a share of the batch's bytes (Parquet in slices
# peaks at about 0.7 x its batch above the batch itself; NDJSON written to local disk, or
# compressed, much less: its text is made and written a slice at a time).
ENCODE_WORKING_SHARE = 0.75
# Uncompressed NDJSON to an object store: the HTTP clients take a file as one bytes object, so
# its whole text is held while it uploads (the values and each line's metadata fields: about
# 1.1 x the batch's bytes at 1 KiB values, 1.5 x at 200 B), and s3fs's HTTP client (aiohttp,
# through the BytesIO botocore wraps the body in) copies it once more while sending. Measured
# with bench/run.py (lake-ndjson-s3, 1M x 1 KiB, 4 partitions, 1Gi pod): peak RSS 748-806 MiB
# reserving 0.75, 718-771 reserving 1.5, 697-702 reserving 2.5, at the same records/s.
WHOLE_TEXT_SHARE = 2.5

# The budget never plans for less message memory than this: below it, files would be tiny.
MIN_MESSAGES = 4 * 1024 * 1024

# librdkafka's prefetch limits when the consumer's properties do not set them (kafka.py's defaults).
DEFAULT_QUEUE_KBYTES = 8192
DEFAULT_FETCH_MAX_BYTES = 8 * 1024 * 1024


def prefetch_bytes(kafka_config: Mapping[str, Any]) -> int:
    """What librdkafka may hold before we consume it: its queue, plus one fetch response in flight."""
    queue = int(kafka_config.get("queued.max.messages.kbytes", DEFAULT_QUEUE_KBYTES)) * 1024
    fetch = int(kafka_config.get("fetch.max.bytes", DEFAULT_FETCH_MAX_BYTES))
    return queue + fetch


@dataclass(frozen=True)
class MemoryBudget:
    limit: int  # the whole budget (memory.limit)
    prefetch: int  # reserved for librdkafka's prefetch
    encode_working: int  # reserved for the encoders of the batches being published
    messages: int  # message bytes the pipeline may hold: buffered, or cut and not yet committed
    max_bytes: int  # batch.max_bytes, for the full-batch arithmetic

    @classmethod
    def plan(
        cls, limit: int, max_bytes: int, publish_slots: int, prefetch: int, working_share: float = ENCODE_WORKING_SHARE
    ) -> MemoryBudget:
        """Split `limit`: prefetch first, then the encoders' working memory for `publish_slots`
        batches (`working_share` of a batch each), the rest for messages. When the rest cannot
        hold one full batch, batches are smaller than max_bytes, and so is their working memory."""
        free = max(0, limit - prefetch)
        working_per_batch = working_share * publish_slots
        messages = free - working_per_batch * max_bytes
        if messages < max_bytes:  # batches are cut at the budget, not at max_bytes
            messages = free / (1 + working_per_batch)
        messages = max(MIN_MESSAGES, int(messages))
        encode_working = max(0, free - messages)
        return cls(
            limit=limit, prefetch=prefetch, encode_working=encode_working, messages=messages, max_bytes=max_bytes
        )

    @property
    def full_batches(self) -> int:
        """How many full batches (batch.max_bytes) the message budget holds at once."""
        return self.messages // self.max_bytes

    def file_bytes_at(self, partitions: int) -> int:
        """About how many message bytes a batch holds on a backlog spread over `partitions`:
        max_bytes while every partition's batch fits, else the budget shared among them."""
        if partitions <= 0:
            return self.max_bytes
        return min(self.max_bytes, self.messages // partitions)
