"""The CLI as a person meets it: errors name the file, the key and the fix; no tracebacks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest_core", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


BAD = {
    "syntax": ("topic: t\noutput: {url: 'file:///x'\n  format: [\n", ["YAML syntax error", "Fix:"]),
    "unknown": ("topic: t\noutput: {url: 'file:///x'}\nbatch: {max_recrods: 5}\n", ["batch.max_recrods", "did you mean `max_records`"]),
    "missing_topic": ("output: {url: 'file:///x'}\n", ["topic: required but missing", "Fix: add `topic: orders`"]),
    "bad_size": ("topic: t\noutput: {url: 'file:///x'}\nbatch: {max_bytes: 12 parsecs}\n", ["batch.max_bytes", "e.g. 64MiB"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_config_exits_1_with_file_key_and_fix(tmp_path, case, command):
    text, expected = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = cli(command, str(path))
    assert result.returncode == 1
    assert str(path) in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_kafka_property_librdkafka_refuses_exits_1_naming_file_property_and_fix(tmp_path, command):
    path = tmp_path / "typo.yaml"
    path.write_text(f"topic: t\noutput: {{url: 'file://{tmp_path}/lake'}}\nhttp: {{port: 0}}\n"
                    "kafka: {bootstrap.servers: '127.0.0.1:1', fetch.wait.max.mss: 5}\n")
    result = cli(command, str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    message = json.loads(lines[-1])["message"] if command == "run" else lines[-1]  # run logs JSON off a terminal
    assert message.startswith(f"{path}: kafka: librdkafka refuse"), message
    assert 'No such configuration property: "fetch.wait.max.mss"' in message
    assert "Fix: correct or remove that property under kafka:" in message
    assert "Traceback" not in result.stderr


def test_validate_folder_checks_every_topic():
    result = cli("validate", "consumers/")
    assert result.returncode == 0, result.stderr
    assert "consumers/example.yaml: ok" in result.stdout


def test_new_copies_the_example_with_topic_group_and_url(tmp_path):
    folder = tmp_path / "consumers"
    folder.mkdir()
    for name in ("example.yaml", "defaults.yaml"):
        (folder / name).write_text((REPO / "consumers" / name).read_text())
    result = cli("new", "payments", "--dir", str(folder))
    assert result.returncode == 0, result.stderr
    text = (folder / "payments.yaml").read_text()
    assert "topic: payments" in text and "group_id: ingest-payments" in text and "lake}/payments" in text
    assert cli("validate", str(folder / "payments.yaml")).returncode == 0
    assert cli("new", "payments", "--dir", str(folder)).returncode == 1


def test_only_the_asked_commands_module_is_imported():
    """`ingest validate` (and `run`) do not import what `audit`, `render` and `autoloader` need; `ingest audit
    --help` still shows audit's own arguments, and `ingest --help` lists every command."""
    probe = (
        "import sys; from ingest_core.commands import cli; code = cli.main(['validate', '--offline', 'consumers/']); "
        "print(sorted(m for m in sys.modules if m.split('.')[-1] in ('audit', 'render', 'autoloader')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    audit_help = cli("audit", "--help")
    assert audit_help.returncode == 0 and "--deep" in audit_help.stdout
    overview = cli("--help")
    assert all(name in overview.stdout for name in ("render", "autoloader", "audit"))
