"""Prometheus metrics: what the pipeline reports is what a scrape shows."""
from __future__ import annotations

import io

import pytest
from confluent_kafka import TopicPartition
from fakes import FakeConsumer, json_messages
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_pipeline import TOPIC, Clock, landed, make, spin

from ingest_core.ops.health import HealthState
from ingest_core.ops.metrics import FanOutObserver, Instruments, PrometheusObserver, consumer_lag
from ingest_core.ops.observer import PipelineObserver
from ingest_core.settings import Settings


def scrape(observer: PrometheusObserver) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} parsed back from the exposition text."""
    text = generate_latest(observer.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(observer, name, **labels) -> float:
    return scrape(observer)[(name, tuple(sorted({"topic": observer.topic, **labels}.items())))]


def test_counters_match_what_a_real_pipeline_landed(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 25), 1: json_messages(TOPIC, 1, 12)})
    consumer.log[1].append(consumer.log[1][0].__class__(TOPIC, 1, 12, b"not json"))
    pipeline, store = make(tmp_path, consumer, max_records=10)
    metrics = PrometheusObserver(TOPIC)
    pipeline.observer = metrics
    spin(pipeline)
    pipeline.shutdown(5)

    rows = landed(tmp_path)
    data_files = [p for p in store.list_files() if not p.startswith(("_", "."))]
    assert value(metrics, "ingest_records_total") == len(rows) == 37
    assert value(metrics, "ingest_files_total") == len(data_files) == pipeline.stats.files
    assert value(metrics, "ingest_bytes_total") == sum(len(store.read(p)) for p in data_files)
    assert value(metrics, "ingest_dead_letters_total") == 1
    assert value(metrics, "ingest_consumed_messages_total") == 38
    assert value(metrics, "ingest_commits_total", result="ok") == pipeline.stats.commits == 5  # p0: 10+10+5, p1: 10+3
    assert value(metrics, "ingest_commits_total", result="failed") == 0
    assert value(metrics, "ingest_flush_duration_seconds_count") == 5
    assert value(metrics, "ingest_commit_latency_seconds_count") == 5
    assert value(metrics, "ingest_last_flush_timestamp_seconds") > 0


def test_storage_retries_and_failed_commits_are_counted(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 10)})
    pipeline, store = make(tmp_path, consumer, max_records=10)
    metrics = PrometheusObserver(TOPIC)
    pipeline.observer = metrics
    store.broken = True
    spin(pipeline, turns=1)
    assert value(metrics, "ingest_storage_retries_total") == 1
    assert value(metrics, "ingest_records_total") == 0
    store.broken = False
    consumer.fail_commits = True
    pipeline.clock.now += 10
    spin(pipeline, turns=1)
    assert value(metrics, "ingest_records_total") == 10
    assert value(metrics, "ingest_commits_total", result="failed") == 1


def test_each_observer_has_its_own_registry():
    a, b = PrometheusObserver("a"), PrometheusObserver("b")
    a.consumed(5, 50)
    assert value(a, "ingest_consumed_messages_total") == 5
    assert value(b, "ingest_consumed_messages_total") == 0
    assert ("ingest_consumed_messages_total", (("topic", "a"),)) not in scrape(b)


def test_lag_is_read_at_scrape_time():
    lag = {0: 5, 1: 7}
    metrics = PrometheusObserver(TOPIC, lag_provider=lambda: dict(lag))
    metrics.assignment([0, 1])
    metrics.buffered(123)
    assert value(metrics, "ingest_partition_lag", partition="0") == 5
    assert value(metrics, "ingest_partition_lag", partition="1") == 7
    assert value(metrics, "ingest_buffered_bytes") == 123
    assert value(metrics, "ingest_assigned_partitions") == 2
    del lag[1]  # revoked: its series must go, not freeze at its last value
    samples = scrape(metrics)
    assert ("ingest_partition_lag", (("partition", "1"), ("topic", TOPIC))) not in samples
    assert samples[("ingest_partition_lag", (("partition", "0"), ("topic", TOPIC)))] == 5


def test_a_failing_provider_costs_its_series_not_the_scrape():
    def broken():
        raise RuntimeError("dictionary changed size during iteration")

    metrics = PrometheusObserver(TOPIC, lag_provider=broken)
    metrics.consumed(3, 30)
    samples = scrape(metrics)
    assert samples[("ingest_consumed_messages_total", (("topic", TOPIC),))] == 3
    assert not any(name == "ingest_partition_lag" for name, _ in samples)


class _WatermarkConsumer:
    def assignment(self):
        return [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1), TopicPartition(TOPIC, 2),
                TopicPartition("other", 0)]

    def position(self, partitions):
        positions = {0: 90, 1: -1001, 2: 40}
        return [TopicPartition(tp.topic, tp.partition, positions[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, tp, cached=False):
        assert cached, "a scrape must not wait for the broker"
        return {0: (0, 100), 1: (0, 50), 2: (-1001, -1001)}[tp.partition]


def test_consumer_lag_is_high_watermark_minus_position_for_known_partitions():
    # Partition 1 has no position yet and partition 2 no watermark yet: neither is guessed.
    assert consumer_lag(_WatermarkConsumer(), TOPIC)() == {0: 10}


class _Recorder(PipelineObserver):
    def __init__(self):
        self.calls = []

    def consumed(self, count, nbytes):
        self.calls.append(("consumed", count, nbytes))

    def assignment(self, partitions):
        self.calls.append(("assignment", partitions))


class _Broken(PipelineObserver):
    def consumed(self, count, nbytes):
        raise ValueError("boom")


def test_fan_out_calls_every_observer_even_after_one_fails(caplog):
    first, last = _Recorder(), _Recorder()
    fan = FanOutObserver(first, None, _Broken(), last)
    fan.consumed(2, 20)
    fan.assignment([3])
    fan.flushed(0, 1, 2, 1, 0, 0, 0.1)
    fan.committed(0, 1, 0.01, True)
    fan.storage_retry(0, 1)
    assert first.calls == last.calls == [("consumed", 2, 20), ("assignment", [3])]
    assert "_Broken failed in consumed" in caplog.text


@pytest.mark.parametrize("hook", ["consumed", "flushed", "committed", "storage_retry", "assignment"])
def test_fan_out_covers_every_hook_of_the_interface(hook):
    assert getattr(FanOutObserver, hook) is not getattr(PipelineObserver, hook)


def test_instruments_without_http_or_terminal_still_count_and_track_buffers(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 7)})
    pipeline, _ = make(tmp_path, consumer, max_records=10)
    settings = Settings.model_validate({"topic": TOPIC, "output": {"url": "file:///x"}, "http": {"port": 0}})
    instruments = Instruments.start(settings, _WatermarkConsumer(), terminal=io.StringIO())
    assert instruments.server is None and instruments.status is None
    pipeline.observer = instruments.observer
    pipeline.observer.assignment([0])
    spin(pipeline, turns=1)
    instruments.on_turn(pipeline)
    assert value(instruments.metrics, "ingest_buffered_bytes") == pipeline.states[0].buffer.nbytes > 0
    assert value(instruments.metrics, "ingest_consumed_messages_total") == 7
    assert value(instruments.metrics, "ingest_partition_lag", partition="0") == 10
    assert instruments.health.ready() == (True, "ready: 1 partition(s) assigned")
    instruments.close()


def test_instruments_read_lag_on_the_main_thread_at_most_once_a_second(tmp_path):
    consumer = FakeConsumer(TOPIC, {0: json_messages(TOPIC, 0, 3)})
    pipeline, _ = make(tmp_path, consumer)
    reads = []

    def lag_source():
        reads.append(len(reads))
        return {0: 100 - len(reads)}

    clock = Clock()
    metrics = PrometheusObserver(TOPIC)
    instruments = Instruments(metrics, HealthState(), None, None, lag_source, clock=clock)
    instruments.on_turn(pipeline)
    snapshot = instruments.lag_snapshot()
    clock.now += 0.5
    instruments.on_turn(pipeline)
    assert len(reads) == 1 and value(metrics, "ingest_partition_lag", partition="0") == 99
    clock.now += 0.6
    instruments.on_turn(pipeline)
    assert len(reads) == 2 and value(metrics, "ingest_partition_lag", partition="0") == 98
    assert snapshot == {0: 99}, "a snapshot handed out is never changed in place"
