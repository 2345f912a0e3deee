import json
import logging

from fakes import Clock

from ingest_core.ops.log import JsonFormatter, LibrdkafkaLines

FAIL = "[thrd:b/bootstrap]: b/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after {}ms in state CONNECT)"


def shown(lines, logger_filter, clock, steps):
    """Log `lines` (one per step of the clock) as confluent-kafka does; return the JSON of those let through."""
    out = []
    for text, step in zip(lines, steps, strict=False):
        clock.now += step
        record = logging.LogRecord("librdkafka", logging.ERROR, "", 0, "%s [%s] %s", ("FAIL", "rdkafka#consumer-1", text), None)
        if logger_filter.filter(record):
            out.append(json.loads(JsonFormatter().format(record)))
    return out


def test_librdkafka_lines_become_our_fields():
    clock = Clock(100.0)
    [line] = shown([FAIL.format(0)], LibrdkafkaLines(30, clock), clock, [0])
    assert line["message"] == FAIL.format(0)
    assert (line["level"], line["logger"], line["event"]) == ("error", "librdkafka", "librdkafka")
    assert (line["facility"], line["client"]) == ("FAIL", "rdkafka#consumer-1")
    assert "repeated" not in line


def test_alike_lines_are_shown_once_then_counted_every_period():
    clock = Clock(100.0)
    limiter = LibrdkafkaLines(30, clock)
    # 100 lines 0.5 s apart (only the milliseconds differ), 50 s in all
    lines = shown([FAIL.format(i % 3) for i in range(100)], limiter, clock, [0.5] * 100)
    assert len(lines) == 2  # the first, then one 30 s later
    assert "repeated" not in lines[0]
    assert lines[1]["repeated"] == 59  # held back between the two
    assert "59 more like it in the last 30 s" in lines[1]["message"]


def test_different_lines_are_limited_apart():
    clock = Clock(100.0)
    limiter = LibrdkafkaLines(30, clock)
    lines = shown([FAIL.format(0), "Group coordinator lost", FAIL.format(1), "Group coordinator lost"], limiter, clock, [1] * 4)
    assert [line["message"] for line in lines] == [FAIL.format(0), "Group coordinator lost"]
