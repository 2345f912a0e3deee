"""`ingest validate`'s sizing checks: memory per replica, KEDA's cooldown, the grace period."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ingest_core.commands.sizing import PartitionCount, memory_warnings, sizing_warnings, timing_warnings
from ingest_core.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def settings(**sections) -> Settings:
    return Settings.model_validate({"topic": "clicks", "output": {"url": "file:///tmp/lake"}, **sections})


def test_the_shipped_defaults_hold_a_full_batch_for_each_of_six_partitions():
    assert memory_warnings(Path("c.yaml"), settings(), PartitionCount(6, "test")) == []
    [warning] = memory_warnings(Path("c.yaml"), settings(), PartitionCount(7, "test"))
    assert warning.startswith("c.yaml: memory.limit / batch.max_bytes:")
    assert "up to 7 partitions" in warning and "deploy.resources.memory 1Gi" in warning


def test_the_warning_names_each_fix_with_numbers_that_work():
    wide = settings(deploy={"replicas": 2})
    [warning] = memory_warnings(Path("c.yaml"), wide, PartitionCount(64, "topic clicks on b:9092"))
    assert "up to 32 partitions (64 of topic clicks on b:9092 over 2 replica(s))" in warning
    assert "raise deploy.resources.memory to" in warning and "lower batch.max_bytes to 12MiB" in warning
    assert "raise deploy.replicas to 11" in warning
    # Each fix, applied, silences the warning.
    pod = warning.split("raise deploy.resources.memory to ")[1].split(",")[0]
    assert memory_warnings(Path("c.yaml"), settings(deploy={"replicas": 2, "resources": {"memory": pod}}),
                           PartitionCount(64, "t")) == []
    assert memory_warnings(Path("c.yaml"), settings(deploy={"replicas": 2}, batch={"max_bytes": "12MiB"}),
                           PartitionCount(64, "t")) == []
    assert memory_warnings(Path("c.yaml"), settings(deploy={"replicas": 11}), PartitionCount(64, "t")) == []


def test_keda_scales_down_to_its_minimum_so_that_is_what_a_replica_may_own():
    keda = settings(deploy={"replicas": 8, "keda": {"enabled": True, "partitions": 24, "min_replicas": 1}})
    [warning] = sizing_warnings(Path("c.yaml"), keda)  # the partition count from deploy.keda.partitions
    assert "24 of deploy.keda.partitions over 1 replica(s)" in warning
    assert "deploy.replicas (deploy.keda.min_replicas) to 4" in warning


def test_no_partition_count_no_memory_warning():
    assert sizing_warnings(Path("c.yaml"), settings(), lookup=lambda s: None) == []


def test_a_cooldown_shorter_than_max_age_is_named_with_its_fix():
    short = settings(batch={"max_age": "5m"},
                     deploy={"keda": {"enabled": True, "partitions": 4, "cooldown": "2m"}})
    [warning] = timing_warnings(Path("c.yaml"), short)
    assert "deploy.keda.cooldown: 120s is not longer than batch.max_age 300s" in warning
    assert "at least 600s" in warning
    assert timing_warnings(Path("c.yaml"), settings(deploy={"keda": {"enabled": True, "partitions": 4}})) == []


def test_a_grace_period_that_cannot_cover_the_final_flush_is_named_with_its_fix():
    tight = settings(deploy={"termination_grace_period": "40s"})
    [warning] = timing_warnings(Path("c.yaml"), tight)
    assert "deploy.termination_grace_period: 40s does not cover a final flush" in warning
    assert "deploy.shutdown_timeout 30s" in warning and "at least 49s" in warning
    assert timing_warnings(Path("c.yaml"), settings(deploy={"termination_grace_period": "49s"})) == []


def test_validate_prints_the_warnings_and_still_exits_0(tmp_path):
    config = tmp_path / "clicks.yaml"
    config.write_text("topic: clicks\noutput: {url: 'file:///tmp/lake'}\n"
                      "deploy: {keda: {enabled: true, partitions: 64, cooldown: 30s}}\n")
    result = subprocess.run([sys.executable, "-m", "ingest_core", "validate", "--offline", str(config)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"{config}: ok" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and "memory.limit / batch.max_bytes" in warnings[0] and "deploy.keda.cooldown" in warnings[1]


def test_uncompressed_ndjson_to_an_object_store_reserves_its_whole_text():
    """The HTTP clients take a file as one bytes object, so uncompressed NDJSON bound for an
    object store holds its whole text while it uploads: the budget reserves that, and holds
    fewer message bytes; on local disk, compressed, or as Parquet the text streams."""
    from ingest_core.commands.sizing import planned_budget

    def budget(url: str, fmt: str, compression: str):
        return planned_budget(Settings.model_validate(
            {"topic": "clicks", "output": {"url": url, "format": fmt, "compression": compression}}))

    streamed = budget("file:///tmp/lake", "ndjson", "none")
    for url, fmt, compression in (("s3://b/lake", "parquet", "zstd"), ("abfs://c/lake", "ndjson", "gzip")):
        assert budget(url, fmt, compression) == streamed
    for url in ("s3://b/lake", "abfs://c/lake", "gs://b/lake"):
        whole = budget(url, "ndjson", "none")
        assert whole.limit == streamed.limit and whole.messages < streamed.messages
        assert whole.encode_working >= 1.5 * 2 * whole.max_bytes > streamed.encode_working
