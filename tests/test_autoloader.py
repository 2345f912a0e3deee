"""`ingest autoloader`: partition columns, paths, the Spark reader as data and as code, the snippets.
No Spark here: tests/integration/test_spark.py runs the same reader code against real lakes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest_core.commands.autoloader import (
    autoloader_snippet,
    layout_problems,
    layout_warnings,
    partition_columns,
    spark_path,
    spark_reader,
    spark_snippet,
)
from ingest_core.commands.cli import main
from ingest_core.settings import Settings
from ingest_core.sink.paths import data_file_name

METADATA = "_topic STRING, _partition INT, _offset BIGINT, _timestamp TIMESTAMP, _key STRING"


def settings(**output) -> Settings:
    topic = output.pop("topic", "orders")
    return Settings.model_validate({"topic": topic, "output": {"url": "s3://bucket/lake/orders", **output}})


def test_default_partition_by_gives_dt_date_and_hour_int():
    assert [(c.name, c.type) for c in partition_columns(settings().output.partition_by)] == [("dt", "DATE"), ("hour", "INT")]


def test_partition_column_types_follow_what_spark_infers_from_the_folder_values():
    template = ("country={payload.country}/y={timestamp:%Y}/m={timestamp:%m}/raw/v=1/"
                "ts={timestamp:%Y-%m-%dT%H}/h=h{timestamp:%H}/d={timestamp:%Y%m%d}")
    assert [(c.name, c.type) for c in partition_columns(template)] == [
        ("country", "STRING"), ("y", "INT"), ("m", "INT"), ("v", "INT"), ("ts", "STRING"), ("h", "STRING"),
        ("d", "INT")]


def test_file_names_of_one_kafka_partition_sort_lexically_by_offset():
    offsets = [0, 9, 10, 99, 100, 123_456, 2**40, 2**63 - 1]
    names = [data_file_name("orders", 3, o, ".parquet") for o in offsets]
    assert sorted(names) == names and all(not n.startswith(("_", ".")) for n in names)


def test_hidden_names_make_the_lake_unreadable_and_are_refused():
    assert layout_problems(settings()) == []
    with pytest.raises(ValueError, match="hidden from Spark"):  # refused already when the YAML is validated
        settings(topic="_orders")
    assert len(layout_problems(settings(partition_by=".staging/dt={timestamp:%Y-%m-%d}"))) == 1
    assert len(layout_problems(settings(partition_by="_raw/dt={timestamp:%Y-%m-%d}"))) == 1
    assert layout_problems(settings(partition_by="_dt={timestamp:%Y-%m-%d}")) == []  # '=' keeps it visible to Spark


def test_folders_without_a_name_and_no_metadata_are_warned_about():
    assert layout_warnings(settings()) == []
    warnings = layout_warnings(settings(partition_by="{timestamp:%Y}/dt={timestamp:%Y-%m-%d}", metadata=False))
    assert len(warnings) == 2 and "no 'name='" in warnings[0] and "metadata" in warnings[1]


@pytest.mark.parametrize("url,options,oss,databricks", [
    ("s3://b/lake/t", {}, "s3a://b/lake/t", "s3://b/lake/t"),
    ("abfs://c/lake/t", {"account_name": "acct"}, "abfss://c@acct.dfs.core.windows.net/lake/t", None),
    ("az://c/lake/t", {"connection_string": "DefaultEndpointsProtocol=https;AccountName=ac2;AccountKey=x"},
     "abfss://c@ac2.dfs.core.windows.net/lake/t", None),
    ("abfs://c/lake/t", {}, "abfss://c@<storage-account>.dfs.core.windows.net/lake/t", None),
    ("abfss://c@acct.dfs.core.windows.net/lake", {}, "abfss://c@acct.dfs.core.windows.net/lake", None),
    ("gs://b/lake", {}, "gs://b/lake", "gs://b/lake"),
    ("file:///data/lake/t", {}, "file:///data/lake/t", "file:///data/lake/t"),
])
def test_spark_paths(url, options, oss, databricks):
    configured = settings(url=url, storage_options=options)
    assert spark_path(configured) == oss
    assert spark_path(configured, databricks=True) == (databricks or oss)


def test_a_relative_file_url_is_resolved_where_ingest_runs():
    assert spark_path(settings(url="file://./lake/orders")) == "file://" + os.path.join(os.getcwd(), "lake/orders")


def test_explicit_schema_is_metadata_then_payload_then_partition_columns():
    reader = spark_reader(settings(), "order_id BIGINT, amount DOUBLE,")
    assert reader.format == "parquet"
    assert reader.schema == f"{METADATA}, order_id BIGINT, amount DOUBLE, dt DATE, hour INT"
    assert reader.options == {"pathGlobFilter": "*.parquet"} and reader.session_conf == {}


def test_inferred_schema_merges_parquet_schemas_and_reads_ndjson_timestamps():
    parquet = spark_reader(settings())
    assert parquet.schema is None and parquet.options["mergeSchema"] == "true"
    assert parquet.session_conf == {"spark.sql.streaming.schemaInference": "true"}
    ndjson = spark_reader(settings(format="ndjson"))
    assert ndjson.format == "json" and ndjson.options == {"pathGlobFilter": "*.ndjson.gz", "inferTimestamp": "true"}
    assert spark_reader(settings(format="ndjson", compression="none")).options["pathGlobFilter"] == "*.ndjson"


def test_an_s3_compatible_endpoint_becomes_s3a_options_but_credentials_never_do():
    configured = settings(storage_options={"key": "AKIA-SECRET-ID", "secret": "s3cr3t-value",
                                           "client_kwargs": {"endpoint_url": "http://minio:9000", "region_name": "eu-1"}})
    reader = spark_reader(configured, "a INT")
    assert {k: v for k, v in reader.options.items() if k.startswith("fs.")} == {
        "fs.s3a.endpoint": "http://minio:9000", "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false", "fs.s3a.endpoint.region": "eu-1"}
    for text in (reader.code(), spark_snippet(configured), autoloader_snippet(configured)):
        assert "AKIA-SECRET-ID" not in text and "s3cr3t-value" not in text


AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=QXp1cml0ZUtleQ==;"
           "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")


def test_an_azurite_endpoint_becomes_abfs_options_but_the_account_key_never_does():
    configured = settings(url="abfs://lake/orders", storage_options={"connection_string": AZURITE})
    reader = spark_reader(configured, "a INT")
    assert reader.path == "abfs://lake@devstoreaccount1.dfs.core.windows.net/orders"  # plain http: abfs, not abfss
    assert {k: v for k, v in reader.options.items() if k.startswith("fs.")} == {
        "fs.azure.abfs.endpoint": "127.0.0.1:10000", "fs.azure.account.hns.enabled": "false",
        "fs.azure.fns.account.service.type": "BLOB", "fs.azure.always.use.https": "false",
        "fs.azure.networking.library": "JDK_HTTP_URL_CONNECTION"}
    snippet = spark_snippet(configured)
    assert "fs.azure.account.key.devstoreaccount1.dfs.core.windows.net" in snippet
    for text in (reader.code(), snippet, autoloader_snippet(configured)):
        assert "QXp1cml0ZUtleQ==" not in text
    # Databricks never talks to an emulator: its snippet keeps the account's abfss:// URL.
    assert spark_path(configured, databricks=True) == "abfss://lake@devstoreaccount1.dfs.core.windows.net/orders"


@pytest.mark.parametrize("connection_string", [
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=x",  # Azure itself
    "AccountName=acct;AccountKey=x;BlobEndpoint=https://blobs.example.com/",  # a custom domain, not path style
])
def test_an_azure_account_gets_abfss_and_no_endpoint_options(connection_string):
    reader = spark_reader(settings(url="abfs://lake/orders", storage_options={"connection_string": connection_string}))
    assert reader.path == "abfss://lake@acct.dfs.core.windows.net/orders"
    assert not [k for k in reader.options if k.startswith("fs.")]


class FakeSpark:
    """Records the builder calls the reader code makes, like pyspark's DataStreamReader would receive."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.conf = self
        self.readStream = self

    def set(self, key, value):
        self.calls.append(("conf", key, value))

    def format(self, name):
        self.calls.append(("format", name))
        return self

    def schema(self, ddl):
        self.calls.append(("schema", ddl))
        return self

    def option(self, key, value):
        self.calls.append(("option", key, value))
        return self

    def load(self, path):
        self.calls.append(("load", path))
        return "the dataframe"


@pytest.mark.parametrize("payload", [None, "order_id BIGINT"])
def test_open_runs_exactly_the_reader_it_describes(payload):
    reader = spark_reader(settings(format="ndjson"), payload)
    spark = FakeSpark()
    assert reader.open(spark) == "the dataframe"
    expected = [("conf", k, v) for k, v in reader.session_conf.items()] + [("format", "json")]
    expected += [("schema", reader.schema)] if payload else []
    expected += [("option", k, v) for k, v in reader.options.items()] + [("load", "s3a://bucket/lake/orders")]
    assert spark.calls == expected


def test_snippets_are_valid_python():
    configured = settings(format="ndjson")
    for text in (autoloader_snippet(configured), spark_snippet(configured), spark_snippet(configured, payload_schema="a INT")):
        compile(text, "<snippet>", "exec")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orders.yaml"
    path.write_text(text)
    return path


def test_cli_prints_auto_loader_and_the_tested_spark_reader(tmp_path, capsys):
    path = write(tmp_path, "topic: orders\noutput:\n  url: s3://bucket/lake/orders\n  format: ndjson\n"
                           "  storage_options: {secret: TOPSECRET}\nbatch: {max_age: 30s}\n")
    assert main(["autoloader", str(path)]) == 0
    out = capsys.readouterr().out
    for fragment in ['.format("cloudFiles")', '.option("cloudFiles.format", "json")',
                     '.option("cloudFiles.schemaLocation", checkpoint)',
                     '.option("cloudFiles.schemaEvolutionMode", "addNewColumns")',
                     f'.option("cloudFiles.schemaHints", "{METADATA}, dt DATE, hour INT")',
                     '.option("cloudFiles.partitionColumns", "dt,hour")',
                     '.option("cloudFiles.useIncrementalListing", "false")',
                     '.option("pathGlobFilter", "*.ndjson.gz")', '.load("s3://bucket/lake/orders")',
                     'checkpoint = "s3://bucket/lake/_checkpoints/orders"', ".trigger(availableNow=True)",
                     "up to 120 per partition per hour"]:
        assert fragment in out, fragment
    from ingest_core.config import load_settings
    assert spark_reader(load_settings(path)).code() in out  # the printed open-source reader is the tested one
    assert "TOPSECRET" not in out


def test_cli_only_spark_with_an_explicit_schema(tmp_path, capsys):
    path = write(tmp_path, "topic: orders\noutput: {url: 'file:///data/lake/orders'}\n")
    assert main(["autoloader", str(path), "--only", "spark", "--schema", "order_id BIGINT",
                 "--checkpoint", "/chk/orders", "--table", "raw.orders"]) == 0
    out = capsys.readouterr().out
    assert "cloudFiles" not in out
    assert f'.schema("{METADATA}, order_id BIGINT, dt DATE, hour INT")' in out
    assert '.option("checkpointLocation", "/chk/orders")' in out and '.toTable("raw.orders")' in out


def test_cli_refuses_a_lake_spark_cannot_see(tmp_path, capsys):
    path = write(tmp_path, "topic: _orders\noutput: {url: 'file:///data/lake/orders'}\n")
    assert main(["autoloader", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "_orders" in captured.err and str(path) in captured.err


def test_cli_bad_config_exits_1(tmp_path, capsys):
    path = write(tmp_path, "topic: orders\noutput: {url: 'file:///x', format: csv}\n")
    assert main(["autoloader", str(path)]) == 1
    assert "output.format" in capsys.readouterr().err
