from pathlib import Path

import pytest

from ingest_core.config import ConfigError, load_settings


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_extends_deep_merges_and_this_file_wins(tmp_path):
    write(tmp_path, "defaults.yaml", "kafka: {bootstrap.servers: a:1, client.id: x}\nbatch: {max_records: 10, max_age: 5s}\n")
    path = write(tmp_path, "t.yaml", "extends: defaults.yaml\ntopic: t\noutput: {url: 'file:///tmp/l'}\nbatch: {max_records: 20}\n")
    settings = load_settings(path, environ={})
    assert settings.batch.max_records == 20 and settings.batch.max_age == 5.0
    assert settings.kafka == {"bootstrap.servers": "a:1", "client.id": "x"}
    assert settings.group == "ingest-t"


def test_env_expansion_with_default_and_value(tmp_path):
    path = write(tmp_path, "t.yaml", "topic: t\nkafka: {bootstrap.servers: '${BOOT:-localhost:9092}'}\n"
                                     "output: {url: '${LAKE}/t', format: ndjson, compression: none}\nbatch: {max_bytes: 1MiB}\n")
    settings = load_settings(path, environ={"LAKE": "s3://bucket/lake"})
    assert settings.kafka["bootstrap.servers"] == "localhost:9092"
    assert settings.output.url == "s3://bucket/lake/t"
    assert settings.batch.max_bytes == 1024 * 1024
    assert settings.output.codec == "none"


def problems(tmp_path, text, environ=None) -> str:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {})
    return str(caught.value)


def test_unknown_key_has_did_you_mean(tmp_path):
    text = problems(tmp_path, "topic: t\noutput: {url: 'file:///x'}\nbach: {max_records: 1}\n")
    assert "bad.yaml: bach: unknown key; did you mean `batch`?" in text
    nested = problems(tmp_path, "topic: t\noutput: {url: 'file:///x', partiton_by: x}\n")
    assert "output.partiton_by: unknown key; did you mean `partition_by`?" in nested


def test_missing_topic_names_the_fix(tmp_path):
    text = problems(tmp_path, "output: {url: 'file:///x'}\n")
    assert "bad.yaml: topic: required but missing. Fix: add `topic: orders`" in text


def test_bad_size_names_key_and_fix(tmp_path):
    text = problems(tmp_path, "topic: t\noutput: {url: 'file:///x'}\nbatch: {max_bytes: 64 megs}\n")
    assert "bad.yaml: batch.max_bytes:" in text and "e.g. 64MiB" in text


def test_yaml_syntax_error_has_line(tmp_path):
    text = problems(tmp_path, "topic: t\noutput: {url: 'file:///x'\n  format: [\n")
    assert "bad.yaml:" in text and "YAML syntax error" in text and "Fix:" in text


def test_unset_variable_names_key_and_fix(tmp_path):
    text = problems(tmp_path, "topic: t\noutput: {url: '${NOPE}/x'}\n")
    assert "output.url: environment variable NOPE is not set" in text and "${NOPE:-value}" in text


def test_compression_must_fit_format(tmp_path):
    text = problems(tmp_path, "topic: t\noutput: {url: 'file:///x', format: ndjson, compression: snappy}\n")
    assert "output:" in text and "gzip, zstd, none" in text


def test_example_and_defaults_validate():
    repo = Path(__file__).resolve().parents[1]
    settings = load_settings(repo / "consumers" / "example.yaml", environ={})
    assert settings.topic == "example" and settings.output.format == "parquet"
