"""A live one-line status for `ingest run` on a terminal:

    orders | 12,480 rec/s | lag 3,200 | 42 files | last flush 3 s ago (p2, 1,500 rows)

Only when stderr is a terminal (logs to a pipe stay pure JSON). The line is redrawn at
most once per second, from the pipeline's hooks and from `tick()`, which the runner calls
every loop turn so the line stays current while nothing arrives. Log records clear the
line first (see `attach_to_logging`), so a log line never lands in the middle of it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ingest_core.ops.observer import PipelineObserver

CLEAR_LINE = "\r\x1b[K"


class StatusLine(PipelineObserver):
    """Renders the status line to `stream`. All calls come from the main thread."""

    def __init__(
        self,
        topic: str,
        stream: TextIO,
        lag_provider: Callable[[], dict[int, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float = 1.0,
    ):
        self.topic = topic
        self.stream = stream
        self.lag_provider = lag_provider
        self.clock = clock
        self.every = every
        self.started = clock()
        self.drawn_at: float | None = None
        self.consumed_since_draw = 0
        self.rate = 0.0
        self.files = 0
        self.last_flush: tuple[float, int, int] | None = None  # (when, partition, rows)
        self.shown = False

    @classmethod
    def for_terminal(cls, topic: str, lag_provider=None, stream: TextIO | None = None) -> StatusLine | None:
        """A StatusLine on stderr if it is a terminal, else None (nothing to attach)."""
        stream = stream or sys.stderr
        return cls(topic, stream, lag_provider) if stream.isatty() else None

    # ---- hooks ----

    def consumed(self, count: int, nbytes: int) -> None:
        self.consumed_since_draw += count
        self.tick()

    def flushed(
        self, partition: int, rows: int, nbytes: int, files: int, dead_letters: int, widened: int, seconds: float
    ) -> None:
        self.files += files
        self.last_flush = (self.clock(), partition, rows)
        self.tick()

    def tick(self) -> None:
        """Redraw if a second has passed since the last draw."""
        now = self.clock()
        since = now - (self.drawn_at if self.drawn_at is not None else self.started)
        if since < self.every:
            return
        self.rate = self.consumed_since_draw / since
        self.consumed_since_draw = 0
        self.drawn_at = now
        self.stream.write(CLEAR_LINE + self.render(now))
        self.stream.flush()
        self.shown = True

    def render(self, now: float) -> str:
        parts = [self.topic, f"{self.rate:,.0f} rec/s"]
        lag = self._lag()
        parts.append(f"lag {lag:,}" if lag is not None else "lag ?")
        parts.append(f"{self.files:,} files")
        if self.last_flush is None:
            parts.append("no flush yet")
        else:
            when, partition, rows = self.last_flush
            parts.append(f"last flush {now - when:.0f} s ago (p{partition}, {rows:,} rows)")
        return " | ".join(parts)

    def clear(self) -> None:
        """Erase the line (before a log record, or at exit)."""
        if self.shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self.shown = False

    def attach_to_logging(self) -> None:
        """Clear the line before any log record is written (the next tick redraws it)."""
        line = self

        class _ClearFirst(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                line.clear()
                return True

        for handler in logging.getLogger().handlers:
            handler.addFilter(_ClearFirst())

    def _lag(self) -> int | None:
        if self.lag_provider is None:
            return None
        try:
            return sum(self.lag_provider().values())
        except Exception:  # noqa: BLE001 - a status line must never stop the consumer
            return None
