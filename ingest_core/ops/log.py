"""Logging set-up: one JSON object per line (for log pipelines), or plain text on a terminal.

Fields passed with `extra=` (event, partition, offsets, path, ...) become JSON keys.
Nothing here sees settings, so no secret can reach a log line through it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def setup_logging(fmt: str = "auto", level: str = "INFO") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Storage SDKs log every HTTP request at INFO; keep their warnings only.
    for noisy in ("azure", "botocore", "aiobotocore", "s3fs", "urllib3", "adlfs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


LIBRDKAFKA_LOGGER = "librdkafka"
REPEAT_SECONDS_VARIABLE = "INGEST_LOG_REPEAT_SECONDS"
DEFAULT_REPEAT_SECONDS = 30.0
_NUMBERS = re.compile(r"\d+")


class LibrdkafkaLines(logging.Filter):
    """librdkafka's own log lines as ours: confluent-kafka calls
    `logger.log(level, "%s [%s] %s", facility, client, text)` with the syslog level already
    mapped (0-2 critical, 3 error, 4 warning, 5-6 info, 7 debug). This filter makes the text the
    message and `facility` and `client` fields, and lets through the first of a run of alike
    lines, then at most one every `every` seconds, carrying `repeated`: how many alike lines
    were held back since the last one shown. Lines are alike when they differ only in numbers
    ("after 0ms" / "after 1ms", "2 identical error(s) suppressed"): an unreachable broker
    otherwise makes one line per reconnect, about 20 a second."""

    def __init__(self, every: float = DEFAULT_REPEAT_SECONDS, clock=time.monotonic):
        super().__init__()
        self.every = every
        self.clock = clock
        self.shown: dict[tuple, list] = {}  # alike-key -> [when last shown, held back since]
        self.lock = threading.Lock()  # the dead-letter producer's lines come from a publisher thread

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 3:
            facility, client, text = record.args
            record.msg, record.args = str(text), ()
            record.facility, record.client = facility, client
        record.event = "librdkafka"
        key = (
            record.levelno,
            getattr(record, "facility", ""),
            getattr(record, "client", ""),
            _NUMBERS.sub("N", record.getMessage()),
        )
        now = self.clock()
        with self.lock:
            seen = self.shown.get(key)
            if seen is not None and now - seen[0] < self.every:
                seen[1] += 1
                return False
            held_back = seen[1] if seen is not None else 0
            self.shown[key] = [now, 0]
            if len(self.shown) > 1000:  # many distinct lines: forget the oldest half
                for old in sorted(self.shown, key=lambda k: self.shown[k][0])[:500]:
                    del self.shown[old]
        if held_back:
            record.repeated = held_back
            record.msg = f"{record.msg} (and {held_back} more like it in the last {self.every:g} s)"
        return True


def librdkafka_logger() -> logging.Logger:
    """The logger every Kafka client we make is given (`logger` in its configuration), so
    librdkafka writes nothing to stderr itself. Its lines reach our handler (JSON or text),
    rate-limited by `LibrdkafkaLines`; INGEST_LOG_REPEAT_SECONDS sets the period (default 30)."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, LibrdkafkaLines) for f in logger.filters):
        every = float(os.environ.get(REPEAT_SECONDS_VARIABLE) or DEFAULT_REPEAT_SECONDS)
        logger.addFilter(LibrdkafkaLines(every))
    return logger
