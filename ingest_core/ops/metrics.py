"""Prometheus metrics of one consumer, fed by the pipeline's observer hooks.

`PrometheusObserver` owns its own CollectorRegistry (no global state: tests and several
pipelines in one process never share counters). Counters and histograms are updated on
the pipeline's main thread. Per-partition lag is read at scrape time by a collector
from the callable `lag_provider`, so a revoked partition's series disappears; it must be
safe to call from the HTTP thread (Instruments gives it a snapshot the main thread
refreshes: the Kafka consumer itself must not be called from another thread).

`FanOutObserver` hands every hook to several observers (metrics, health, status line),
since the pipeline takes one. `Instruments` is that set for one `ingest run`: the runner
gives its `observer` to the Pipeline and calls `on_turn(pipeline)` once per loop turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest_core.ops.health import HealthObserver, HealthState, serve
from ingest_core.ops.observer import PipelineObserver
from ingest_core.ops.status import StatusLine

log = logging.getLogger("ingest.metrics")

LagProvider = Callable[[], dict[int, int]]
# Flushes run from milliseconds (a few rows, local disk) to minutes (64 MiB to a slow store).
FLUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class PrometheusObserver(PipelineObserver):
    """Counts what the pipeline reports. Every series carries the `topic` label, so one
    Prometheus query covers a fleet of one-topic consumers.

    `lag_provider()` returns {partition: messages behind the high watermark}; it is called
    on the scraping thread and may be replaced at any time (an attribute). Buffered bytes
    are set by `buffered()` from the main thread, which owns the buffers."""

    def __init__(self, topic: str, registry: CollectorRegistry | None = None, lag_provider: LagProvider | None = None):
        self.topic = topic
        self.lag_provider = lag_provider
        self.registry = registry if registry is not None else CollectorRegistry()
        r, t = self.registry, ["topic"]
        self.consumed_messages = Counter(
            "ingest_consumed_messages", "Messages taken from Kafka into buffers", t, registry=r
        )
        self.consumed_bytes = Counter(
            "ingest_consumed_bytes", "Value bytes taken from Kafka into buffers", t, registry=r
        )
        self.records = Counter("ingest_records", "Rows landed in published data files", t, registry=r)
        self.bytes = Counter("ingest_bytes", "Bytes of published data files", t, registry=r)
        self.files = Counter("ingest_files", "Data files published", t, registry=r)
        self.dead_letters = Counter(
            "ingest_dead_letters", "Messages sent to the dead-letter destination", t, registry=r
        )
        self.widenings = Counter(
            "ingest_schema_widenings",
            "Columns written as strings because their type differed within a batch",
            t,
            registry=r,
        )
        self.storage_retries = Counter(
            "ingest_storage_retries", "Storage calls that failed and will be retried", t, registry=r
        )
        self.commits = Counter("ingest_commits", "Offset commits, by result", t + ["result"], registry=r)
        self.flush_seconds = Histogram(
            "ingest_flush_duration_seconds",
            "Encode to last file published, per batch",
            t,
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "ingest_commit_latency_seconds",
            "Time Kafka took to commit an offset",
            t,
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.assigned = Gauge("ingest_assigned_partitions", "Partitions this member owns", t, registry=r)
        self.last_flush = Gauge(
            "ingest_last_flush_timestamp_seconds", "Unix time of the last published batch", t, registry=r
        )
        self.buffered_bytes = Gauge(
            "ingest_buffered_bytes",
            "Key and value bytes held, buffered or being published (not yet committed)",
            t,
            registry=r,
        )
        self.batches_cut = Counter(
            "ingest_batches_cut",
            "Batches cut from their buffers, by reason (records, bytes, "
            "age, memory, end, shutdown, replay); 'memory' = cut early at the memory budget, "
            "'end' = read to its end under --exit-at-end",
            t + ["reason"],
            registry=r,
        )
        self.memory_held = Gauge(
            "ingest_memory_held_bytes",
            "Message bytes held against the memory budget (buffered, or cut and not yet committed)",
            t,
            registry=r,
        )
        self.memory_budget = Gauge(
            "ingest_memory_budget_bytes",
            "Message bytes the memory budget allows now "
            "(memory.limit less prefetch and encode reserve, at most max_bytes x partitions)",
            t,
            registry=r,
        )
        for reason in ("records", "bytes", "age", "memory", "end", "shutdown", "replay"):
            self.batches_cut.labels(topic, reason)
        for counter in (
            self.memory_held,
            self.memory_budget,
            self.consumed_messages,
            self.consumed_bytes,
            self.records,
            self.bytes,
            self.files,
            self.dead_letters,
            self.widenings,
            self.storage_retries,
            self.assigned,
            self.buffered_bytes,
        ):
            counter.labels(topic)  # present (at 0) from the first scrape, so rate() has a start
        for result in ("ok", "failed"):
            self.commits.labels(topic, result)
        self.registry.register(_PartitionLag(self))

    def consumed(self, count: int, nbytes: int) -> None:
        self.consumed_messages.labels(self.topic).inc(count)
        self.consumed_bytes.labels(self.topic).inc(nbytes)

    def flushed(
        self, partition: int, rows: int, nbytes: int, files: int, dead_letters: int, widened: int, seconds: float
    ) -> None:
        t = self.topic
        self.records.labels(t).inc(rows)
        self.bytes.labels(t).inc(nbytes)
        self.files.labels(t).inc(files)
        self.dead_letters.labels(t).inc(dead_letters)
        self.widenings.labels(t).inc(widened)
        self.flush_seconds.labels(t).observe(seconds)
        self.last_flush.labels(t).set(time.time())

    def committed(self, partition: int, offset: int, seconds: float, ok: bool) -> None:
        self.commits.labels(self.topic, "ok" if ok else "failed").inc()
        self.commit_seconds.labels(self.topic).observe(seconds)

    def storage_retry(self, partition: int, attempt: int) -> None:
        self.storage_retries.labels(self.topic).inc()

    def assignment(self, partitions: list[int]) -> None:
        self.assigned.labels(self.topic).set(len(partitions))

    def buffered(self, nbytes: int) -> None:
        self.buffered_bytes.labels(self.topic).set(nbytes)

    def cut(self, reason: str) -> None:
        self.batches_cut.labels(self.topic, reason).inc()

    def memory(self, held: int, budget: int) -> None:
        self.memory_held.labels(self.topic).set(held)
        self.memory_budget.labels(self.topic).set(budget)


class _PartitionLag(Collector):
    """Per-partition lag, read when Prometheus scrapes, so a revoked partition's series goes."""

    def __init__(self, observer: PrometheusObserver):
        self.observer = observer

    def describe(self) -> Iterable:
        return []  # values are read at collect time only

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "ingest_partition_lag",
            "Messages between the consumer's position and the partition's high watermark",
            labels=["topic", "partition"],
        )
        provider, topic = self.observer.lag_provider, self.observer.topic
        try:
            behind = provider() if provider is not None else {}
        except Exception as error:  # noqa: BLE001 - a failing provider costs its series, never the scrape
            log.debug("lag provider failed: %s", error)
            behind = {}
        for partition, messages in sorted(behind.items()):
            lag.add_metric([topic, str(partition)], messages)
        yield lag


def consumer_lag(consumer, topic: str) -> LagProvider:
    """A lag provider for a confluent_kafka.Consumer: per assigned partition, the cached high
    watermark minus the consumer's position. Local reads, no broker round trip (< 1 ms).

    Call it only on the thread that calls `consume()`: confluent-kafka holds other threads'
    calls while `consume()` runs (seen here: `assignment()` from a second thread never
    returned while the main thread kept consuming)."""

    def lag() -> dict[int, int]:
        from confluent_kafka import TopicPartition

        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        result: dict[int, int] = {}
        for tp in consumer.position(assigned):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), cached=True)
            if high >= 0 and tp.offset >= 0:  # negative: not fetched yet / no position yet
                result[tp.partition] = max(0, high - tp.offset)
        return result

    return lag


class FanOutObserver(PipelineObserver):
    """Passes each hook to every observer, in order. One observer's failure is logged and
    does not stop the others or the pipeline: metrics must never break ingestion."""

    def __init__(self, *observers: PipelineObserver | None):
        self.observers = [o for o in observers if o is not None]

    def _each(self, hook: str, *args) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:  # noqa: BLE001
                log.exception("observer %s failed in %s", type(observer).__name__, hook)

    def consumed(self, count: int, nbytes: int) -> None:
        self._each("consumed", count, nbytes)

    def flushed(
        self, partition: int, rows: int, nbytes: int, files: int, dead_letters: int, widened: int, seconds: float
    ) -> None:
        self._each("flushed", partition, rows, nbytes, files, dead_letters, widened, seconds)

    def committed(self, partition: int, offset: int, seconds: float, ok: bool) -> None:
        self._each("committed", partition, offset, seconds, ok)

    def storage_retry(self, partition: int, attempt: int) -> None:
        self._each("storage_retry", partition, attempt)

    def assignment(self, partitions: list[int]) -> None:
        self._each("assignment", partitions)

    def cut(self, reason: str) -> None:
        self._each("cut", reason)

    def memory(self, held: int, budget: int) -> None:
        self._each("memory", held, budget)


class Instruments:
    """What one `ingest run` reports through: Prometheus metrics, the probes' HealthState
    and HTTP server (`http.port`, 0 = off), and the status line on a terminal.

    Use: `Instruments.start(settings, consumer)` before building the Pipeline, pass
    `.observer` to it, call `.on_turn(pipeline)` every loop turn (main thread), `.close()`
    at exit. Everything that touches the consumer or pipeline state happens in `on_turn`,
    on the main thread that owns them; the HTTP thread reads only HealthState, the
    registry and the lag snapshot, which `on_turn` replaces whole (never mutates)."""

    def __init__(
        self,
        metrics: PrometheusObserver,
        health: HealthState,
        server,
        status: StatusLine | None,
        lag_source: LagProvider | None = None,
        lag_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.metrics = metrics
        self.health = health
        self.server = server
        self.status = status
        self.lag_source = lag_source
        self.lag_every = lag_every
        self.clock = clock
        self.lag: dict[int, int] = {}
        self._lag_read_at = float("-inf")
        metrics.lag_provider = self.lag_snapshot
        if status is not None:
            status.lag_provider = self.lag_snapshot
        self.observer = FanOutObserver(metrics, HealthObserver(health), status)

    @classmethod
    def start(cls, settings, consumer, terminal=None) -> Instruments:
        """`terminal`: the stream for the status line (default stderr, used only if a tty)."""
        metrics = PrometheusObserver(settings.topic)
        health = HealthState()
        server = serve(settings.http.port, health, metrics.registry)
        status = StatusLine.for_terminal(settings.topic, stream=terminal)
        if status is not None:
            status.attach_to_logging()
        if server is not None:
            log.info(
                "serving /healthz /readyz /metrics on port %d",
                server.port,
                extra={"event": "http_started", "port": server.port},
            )
        return cls(metrics, health, server, status, consumer_lag(consumer, settings.topic))

    def lag_snapshot(self) -> dict[int, int]:
        return self.lag

    def on_turn(self, pipeline) -> None:
        """Once per loop turn, on the main thread: liveness, outage, buffer and lag facts."""
        states = list(pipeline.states.values())
        self.health.loop_turned()
        self.health.set_paused(sum(1 for s in states if s.attempts > 0))
        self.metrics.buffered(pipeline.held_bytes())  # buffered, or cut and not yet committed: the byte budget's count
        now = self.clock()
        if self.lag_source is not None and now - self._lag_read_at >= self.lag_every:
            self._lag_read_at = now
            try:
                self.lag = self.lag_source()
            except Exception as error:  # noqa: BLE001 - lag is information; ingestion goes on
                log.debug("reading lag failed: %s", error)
                self.lag = {}
        if self.status is not None:
            self.status.tick()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.status is not None:
            self.status.clear()
