"""The terminal status line: only on a terminal, at most once per second, cleared before logs."""
from __future__ import annotations

import io
import logging

from ingest_core.ops.status import CLEAR_LINE, StatusLine


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_only_on_a_terminal():
    assert StatusLine.for_terminal("orders", stream=io.StringIO()) is None
    assert isinstance(StatusLine.for_terminal("orders", stream=Terminal()), StatusLine)


def test_redraws_at_most_once_per_second_with_rate_lag_files_and_last_flush():
    clock, out = Clock(), Terminal()
    line = StatusLine("orders", out, lag_provider=lambda: {0: 1200, 1: 34}, clock=clock)
    line.consumed(500, 5000)
    assert out.getvalue() == "", "less than a second since start: nothing drawn yet"
    clock.now += 1.0
    line.consumed(1500, 15000)
    assert out.getvalue() == CLEAR_LINE + "orders | 2,000 rec/s | lag 1,234 | 0 files | no flush yet"
    clock.now += 0.5
    line.flushed(2, 1500, 9000, 1, 0, 0, 0.3)
    line.consumed(12, 120)
    assert out.getvalue().count(CLEAR_LINE) == 1
    clock.now += 3.5
    line.tick()  # idle: the runner's per-turn tick keeps the line current
    assert out.getvalue().rsplit(CLEAR_LINE, 1)[1] == \
        "orders | 3 rec/s | lag 1,234 | 1 files | last flush 4 s ago (p2, 1,500 rows)"


def test_a_failing_lag_provider_shows_unknown_lag():
    clock, out = Clock(), Terminal()

    def broken():
        raise RuntimeError("consumer closed")

    line = StatusLine("orders", out, lag_provider=broken, clock=clock)
    clock.now += 2
    line.tick()
    assert "lag ?" in out.getvalue()


def test_log_records_clear_the_line_first():
    clock, out = Clock(), Terminal()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        line = StatusLine("orders", out, clock=clock)
        line.attach_to_logging()
        clock.now += 1
        line.tick()
        logging.getLogger("ingest.test").warning("storage failed")
    finally:
        root.removeHandler(handler)
    drawn = out.getvalue()
    assert drawn.endswith(CLEAR_LINE + "storage failed\n")
    assert drawn.startswith(CLEAR_LINE + "orders | 0 rec/s")
