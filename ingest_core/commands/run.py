"""Wiring for `ingest run`: settings → store, ledger, dead letters, Kafka consumer, pipeline.

Signals only set a flag; the loop notices it within one poll timeout, then publishes
what is buffered, commits, and closes the consumer. SIGUSR1 writes every thread's stack to
stderr (Python's faulthandler), for a consumer that looks stuck.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Message

from ingest_core.batching import intake
from ingest_core.batching.buffer import FlushPolicy
from ingest_core.commands.sizing import planned_budget
from ingest_core.flow import Pipeline
from ingest_core.ops.faults import FaultInjector
from ingest_core.ops.metrics import Instruments
from ingest_core.retry import Backoff, FatalError
from ingest_core.settings import Settings
from ingest_core.sink.allocator import use_system_allocator
from ingest_core.sink.deadletter import DeadLetterFiles, DeadLetters, DeadLetterTopic
from ingest_core.sink.encode import BatchEncoder
from ingest_core.sink.events import batch_events
from ingest_core.sink.ledger import Ledger
from ingest_core.sink.storage import LakeStore, StorageError
from ingest_core.source.assign import StartPositions
from ingest_core.source.kafka import (
    BrokerErrors,
    consumer_config,
    producer_config,
    refused_message,
    static_cooperative_warning,
    topic_problem,
)

log = logging.getLogger("ingest.run")

EXIT_OK, EXIT_CONFIG, EXIT_FATAL, EXIT_UNCLEAN = 0, 1, 2, 3
PUBLISH_SLOTS = 2  # batches encoded and published at once: one per core of the pod's typical CPU


def dead_letter_destinations(settings: Settings, store: LakeStore) -> DeadLetters:
    """Dead letters go where configured; with nothing configured, to `{output.url}/_dlq/`."""
    sinks: list = []
    target = settings.dead_letter
    if target.url:
        sinks.append(DeadLetterFiles(LakeStore.open(target.url, settings.output.storage_options)))
    if target.topic:
        sinks.append(
            DeadLetterTopic(
                target.topic,
                {**producer_config(settings), "bootstrap.servers": consumer_config(settings)["bootstrap.servers"]},
            )
        )
    if not sinks:
        sinks.append(
            DeadLetterFiles(LakeStore.open(settings.output.url.rstrip("/") + "/_dlq", settings.output.storage_options))
        )
    return DeadLetters(sinks)


GC_THRESHOLDS = (50_000, 20, 100)  # Python's default is (700, 10, 10)


def tune_garbage_collection() -> None:
    """Make the cyclic garbage collector cheap for a consume loop. Called once, when `ingest run`
    starts, after the imports.

    Why: every consume() call makes up to 5,000 message objects the collector tracks, so with
    Python's thresholds a young collection ran every 700 of them and a full one, which walks every
    object pyarrow and the other imports made, every 100 young ones. `gc.freeze()` moves what
    exists at start-up out of the collector's sight; the higher thresholds make collections 70
    times rarer. Nothing this program keeps is cyclic garbage for long: each batch's objects are
    freed by reference counting when it is committed. Measured (bench/RESULTS.md, alternated
    runs): 4-7 % less time to land 1,000,000 messages of 1 KiB, 8 % less CPU at 200 B."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def wait_until_writable(
    store: LakeStore,
    source: Path,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
    backoff: Backoff | None = None,
) -> bool:
    """Check that the lake can be written before consuming anything. A permanent error (no such
    bucket, refused credentials) raises StorageError; a transient one (the store is down) is
    retried with backoff, so a pod started during a storage outage waits for it instead of
    crash-looping. Returns False if asked to stop meanwhile."""
    backoff = backoff or Backoff(first=1.0, cap=30.0)
    attempt = 0
    while not should_stop():
        try:
            store.check_writable()
            if attempt:
                log.info("the lake can be written again; starting", extra={"event": "storage_recovered"})
            return True
        except StorageError as error:
            if error.permanent:
                raise
            attempt += 1
            delay = backoff.delay(attempt)
            log.warning(
                "cannot write the lake at start (attempt %d), retrying in %.1f s: %s (config: %s, key output.url)",
                attempt,
                delay,
                error,
                source,
                extra={"event": "storage_retry_at_start", "attempt": attempt},
            )
            sleep(delay)
    return False


def run(
    settings: Settings,
    source: Path,
    exit_when_idle: float | None = None,
    shutdown_timeout: float = 30.0,
    exit_at_end: bool = False,
) -> int:
    stop = {"requested": False}

    def request_stop(signum, _frame):
        log.info(
            "received %s: publishing what is buffered, then stopping",
            signal.Signals(signum).name,
            extra={"event": "stopping"},
        )
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where is every thread?
    try:
        store = LakeStore.open(settings.output.url, settings.output.storage_options)
        if not wait_until_writable(store, source, lambda: stop["requested"]):
            return EXIT_OK  # stopped before anything was consumed
        dead_letters = dead_letter_destinations(settings, store)
        events = batch_events(
            settings, {**producer_config(settings), "bootstrap.servers": consumer_config(settings)["bootstrap.servers"]}
        )
    except StorageError as error:
        log.error("%s (config: %s, key output.url)", error, source, extra={"event": "storage_fatal"})
        return EXIT_FATAL
    except (ImportError, ValueError) as error:
        log.error(
            "cannot open %s: %s. Fix: check output.url and output.storage_options in %s",
            settings.output.url,
            error,
            source,
            extra={"event": "storage_fatal"},
        )
        return EXIT_FATAL

    allocator = use_system_allocator(os.environ)  # before any batch: see its docstring
    tune_garbage_collection()
    # An idle exit waits until every partition is read to its end; --exit-at-end stops there.
    partition_eof = exit_when_idle is not None or exit_at_end
    # Partition ends are reported always: the memory focus never pauses a partition read to its end.
    kafka_config = consumer_config(settings, error_cb=BrokerErrors(settings, str(source)), partition_eof=True)
    membership = static_cooperative_warning(settings, str(source))
    if membership:
        log.warning(membership, extra={"event": "static_cooperative"})
    try:
        consumer = Consumer(kafka_config)
    except KafkaException as error:
        log.error(refused_message(str(source), error.args[0].str()), extra={"event": "kafka_config_refused"})
        return EXIT_CONFIG
    # A run that stops by itself would wait forever for a topic that is not there: say so and stop.
    problem = topic_problem(consumer, settings.topic) if partition_eof else None
    if problem:
        log.error(
            "%s: topic: %s %s",
            source,
            settings.topic,
            problem,
            extra={"event": "topic_unusable", "topic": settings.topic},
        )
        consumer.close()
        return EXIT_CONFIG
    # The consume loop takes each message apart through Message's C functions (batching/intake.c).
    intake.use_methods_of(Message)
    try:
        instruments = Instruments.start(settings, consumer)  # /healthz /readyz /metrics, status line
    except OSError as error:
        log.error(
            "cannot serve /healthz /readyz /metrics on port %d: %s. Fix: set http.port in %s to a free "
            "port, or 0 to turn the HTTP server off",
            settings.http.port,
            error.strerror,
            source,
            extra={"event": "http_failed"},
        )
        consumer.close()
        return EXIT_CONFIG
    budget = planned_budget(settings)
    pipeline = Pipeline(
        topic=settings.topic,
        consumer=consumer,
        encoder=BatchEncoder(settings),
        store=store,
        ledger=Ledger(store),
        dead_letters=dead_letters,
        policy=FlushPolicy.from_settings(settings.batch),
        faults=FaultInjector.from_environment(),
        observer=instruments.observer,
        partition_eof=partition_eof,
        exit_at_end=exit_at_end,
        publish_slots=PUBLISH_SLOTS,
        memory_budget=budget.messages,
        events=events,
    )
    log.info(
        "memory budget %d MiB (memory.limit): %d MiB for messages, %d MiB librdkafka prefetch, %d MiB "
        "encoding; %d full batches of batch.max_bytes at once",
        budget.limit >> 20,
        budget.messages >> 20,
        budget.prefetch >> 20,
        budget.encode_working >> 20,
        budget.full_batches,
        extra={
            "event": "memory_budget",
            "limit": budget.limit,
            "messages": budget.messages,
            "prefetch": budget.prefetch,
            "encode_working": budget.encode_working,
        },
    )
    consumer.subscribe(
        [settings.topic],
        on_assign=StartPositions.from_config(kafka_config, then=pipeline.on_assign),
        on_revoke=pipeline.on_revoke,
        on_lost=pipeline.on_lost,
    )
    log.info(
        "consuming %s as group %s into %s (%s)",
        settings.topic,
        settings.group,
        settings.output.url,
        settings.output.format,
        extra={"event": "started", "topic": settings.topic, "group": settings.group, "arrow_allocator": allocator},
    )

    def should_stop() -> bool:  # called once per loop turn, on the main thread
        instruments.on_turn(pipeline)
        return stop["requested"]

    try:
        clean = pipeline.run(should_stop, exit_when_idle, shutdown_timeout)
    except FatalError as error:
        log.error("stopping: %s", error, extra={"event": "fatal"})
        pipeline.states.clear()  # publish nothing more; uncommitted work is replayed by the next run
        consumer.close()
        instruments.close()
        return EXIT_FATAL
    consumer.close()
    instruments.close()
    s = pipeline.stats
    log.info(
        "stopped: %d records landed in %d files, %d dead letters",
        s.records,
        s.files,
        s.dead_letters,
        extra={"event": "stopped", "records": s.records, "files": s.files, "dead_letters": s.dead_letters},
    )
    return EXIT_OK if clean else EXIT_UNCLEAN
