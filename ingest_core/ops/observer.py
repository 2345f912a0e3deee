"""What the pipeline tells the outside world (metrics, health, the terminal status line).

The pipeline calls these hooks on its main thread; the base class ignores them. An
observer must not block and must never see message contents or settings.
"""

from __future__ import annotations

from dataclasses import dataclass


class PipelineObserver:
    def consumed(self, count: int, nbytes: int) -> None:
        """`count` messages of `nbytes` value bytes were taken into buffers."""

    def flushed(
        self, partition: int, rows: int, nbytes: int, files: int, dead_letters: int, widened: int, seconds: float
    ) -> None:
        """A batch was published (encode to last file, `seconds`) and is about to be committed."""

    def committed(self, partition: int, offset: int, seconds: float, ok: bool) -> None:
        """A commit of `offset` took `seconds`; ok=False if Kafka refused it."""

    def storage_retry(self, partition: int, attempt: int) -> None:
        """A storage call failed and will be retried (the partition is paused meanwhile)."""

    def assignment(self, partitions: list[int]) -> None:
        """The partitions this member owns now."""

    def cut(self, reason: str) -> None:
        """A batch was cut from its buffer: records, bytes, age, memory, shutdown or replay."""

    def memory(self, held: int, budget: int) -> None:
        """Once per loop turn: message bytes held (buffered, or cut and not committed) and the budget."""


@dataclass
class Stats:
    """What a run has done so far: the totals `ingest run` logs when it stops."""

    records: int = 0
    files: int = 0
    bytes: int = 0
    dead_letters: int = 0
    widened: int = 0
    skipped: int = 0  # tombstones skipped by decode.tombstones: skip (counted, not landed)
    commits: int = 0
    storage_retries: int = 0
