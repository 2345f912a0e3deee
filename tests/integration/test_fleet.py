"""Fleet operations against real servers: secrets stay out of logs and errors of a real run;
/metrics matches what landed; /readyz follows a storage outage.
"""
from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingest_core.sink.storage import LakeStore

from .lake import (
    committed_offsets,
    create_topic,
    data_files,
    ingest,
    landed_rows,
    produce_events,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

SECRETS = {"sasl.password": "kafka-Pw-8c31e0", "sasl.username": "kafka-user-51aa",
           "key": "AKIA-FLEET-77f0", "secret": "S3-FLEET-SECRET-2b9d"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_http(config: Path) -> int:
    port = free_port()
    config.write_text(config.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    return port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def metrics(port: int) -> dict[tuple[str, tuple], float]:
    status, text = get(port, "/metrics")
    if status != 200:
        return {}
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "topic"))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=90)
    return err


def test_no_secret_in_the_logs_of_a_run_whose_broker_refuses_its_credentials(kafka, topic_name, tmp_path):
    # The broker's listener is PLAINTEXT: a SASL client fails the handshake and logs about it.
    create_topic(kafka.bootstrap, topic_name, partitions=1)
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{tmp_path / 'lake'}",
                          storage_options={"key": SECRETS["key"], "secret": SECRETS["secret"]},
                          kafka={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                                 "sasl.username": SECRETS["sasl.username"], "sasl.password": SECRETS["sasl.password"]})
    port = with_http(config)
    process = ingest("run", str(config), "--log-format", "json")
    time.sleep(8)  # joins fail and are retried; errors are logged meanwhile
    scraped = get(port, "/metrics")[1]
    err = stop(process)
    assert process.returncode == 0, err[-3000:]
    assert "broker_" in err or "Kafka error" in err, "the failing handshake should have been logged"
    for secret in SECRETS.values():
        assert secret not in err and secret not in scraped


def test_no_secret_in_the_error_of_a_permanent_storage_failure(moto, topic_name, tmp_path):
    options = {**moto.storage_options, "key": SECRETS["key"], "secret": SECRETS["secret"]}
    config = write_config(tmp_path, topic_name, "127.0.0.1:9", "s3://no-such-bucket-here/lake", storage_options=options,
                          kafka={"sasl.username": SECRETS["sasl.username"], "sasl.password": SECRETS["sasl.password"]})
    process = ingest("run", str(config), "--log-format", "json")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err[-3000:]
    problem = [json.loads(line)["message"] for line in err.splitlines() if '"storage_fatal"' in line]
    assert problem and "no-such-bucket-here" in problem[0] and "Fix:" in problem[0]
    for secret in SECRETS.values():
        assert secret not in err


def test_metrics_counters_match_what_landed(kafka, topic_name, tmp_path):
    create_topic(kafka.bootstrap, topic_name, partitions=3)
    produce_events(kafka.bootstrap, topic_name, 3000)
    lake = tmp_path / "lake"
    config = write_config(tmp_path, topic_name, kafka.bootstrap, f"file://{lake}",
                          batch={"max_records": 400, "max_age": "1s"})
    port = with_http(config)
    process = ingest("run", str(config), "--log-format", "json")
    try:
        wait_for("/readyz", lambda: get(port, "/readyz")[0] == 200, 60, every=0.3)
        wait_for("every offset committed", lambda: committed_offsets(kafka.bootstrap, f"ingest-{topic_name}", topic_name)
                 == {0: 1000, 1: 1000, 2: 1000}, 90, every=0.3)
        scraped = wait_for("a scrape", lambda: (m := metrics(port)) and m[("ingest_commits_total", (("result", "ok"),))] > 0
                           and m, 10, every=0.3)
        store = LakeStore.open(f"file://{lake}")
        files = data_files(store)
        assert scraped[("ingest_records_total", ())] == len(landed_rows(store, "parquet")) == 3000
        assert scraped[("ingest_consumed_messages_total", ())] == 3000
        assert scraped[("ingest_files_total", ())] == len(files)
        assert scraped[("ingest_bytes_total", ())] == sum(len(store.read(p)) for p in files)
        assert scraped[("ingest_dead_letters_total", ())] == 0
        assert scraped[("ingest_commits_total", (("result", "failed"),))] == 0
        assert scraped[("ingest_commits_total", (("result", "ok"),))] == scraped[("ingest_flush_duration_seconds_count", ())]
        assert scraped[("ingest_assigned_partitions", ())] == 3
        assert scraped[("ingest_buffered_bytes", ())] == 0
        assert {labels: v for (name, labels), v in scraped.items() if name == "ingest_partition_lag"} == {
            (("partition", str(p)),): 0 for p in range(3)}
    finally:
        err = stop(process)
    assert process.returncode == 0, err[-3000:]


def test_readyz_is_false_during_a_storage_outage_and_true_after(kafka, topic_name, tmp_path):
    from object_stores import MotoS3Server  # the refusable relay lives with the store servers

    with MotoS3Server(refusable=True) as server:
        server.create_bucket("ready")
        create_topic(kafka.bootstrap, topic_name, partitions=2)
        config = write_config(tmp_path, topic_name, kafka.bootstrap, "s3://ready/lake",
                              storage_options=server.storage_options, batch={"max_records": 50, "max_age": "1s"})
        port = with_http(config)
        process = ingest("run", str(config), "--log-format", "json")
        try:
            wait_for("ready before the outage", lambda: get(port, "/readyz")[0] == 200, 60, every=0.3)
            with server.outage("refuse"):
                produce_events(kafka.bootstrap, topic_name, 200, partitions=2)
                status, body = wait_for("not ready in the outage", lambda: (r := get(port, "/readyz"))[0] == 503 and r, 60,
                                        every=0.3)
                assert "storage" in body
                assert get(port, "/healthz")[0] == 200, "an outage must not get the pod restarted"
                assert metrics(port)[("ingest_storage_retries_total", ())] > 0
            wait_for("ready again after the outage", lambda: get(port, "/readyz")[0] == 200, 120, every=0.3)
            wait_for("the outage's records committed", lambda: committed_offsets(kafka.bootstrap, f"ingest-{topic_name}",
                                                                             topic_name, 2) == {0: 100, 1: 100}, 60, every=0.3)
        finally:
            err = stop(process)
        assert process.returncode == 0, err[-3000:]
