"""Publication on real stores: local disk, S3 (moto server), Azure Blob / ADLS Gen2 (Azurite)
and Google Cloud Storage (fake-gcs-server)."""
from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time

import pytest

from .lake import REPO, run_until_idle, write_config

pytestmark = pytest.mark.slow

BIG = 20 * 1024 * 1024  # above s3fs's multipart threshold once block_size is 5 MiB (gcsfs's chunksize, too)


def force_multipart(store, kind: str) -> None:
    """Make BIG go up in parts: an S3 multipart upload, a GCS resumable upload in 5 MiB chunks
    (whose ifGenerationMatch=0 is checked when the last chunk finalises it)."""
    if kind == "s3":
        store.fs.blocksize = 5 * 1024 * 1024
    elif kind == "gcs":
        pipe_file = store.fs.pipe_file
        store.fs.pipe_file = lambda path, data, **kw: pipe_file(path, data, chunksize=5 * 1024 * 1024, **kw)


def test_publish_is_create_only_for_small_and_multipart_files(lake):
    store = lake.store
    assert store.publish("dt=1/small.parquet", b"first") is True
    assert store.publish("dt=1/small.parquet", b"second") is False
    assert store.read("dt=1/small.parquet") == b"first"
    force_multipart(store, lake.kind)
    big = os.urandom(BIG)
    assert store.publish("dt=1/big.parquet", big) is True
    assert store.publish("dt=1/big.parquet", b"other") is False
    assert store.read("dt=1/big.parquet") == big
    assert store.list_files() == ["dt=1/big.parquet", "dt=1/small.parquet"]


UPLOADER = """
import json, os, sys
sys.path.insert(0, {repo!r})
from ingest_core.sink.storage import LakeStore
store = LakeStore.open({url!r}, json.loads({options!r}))
{force_multipart}
force_multipart(store, {kind!r})
data = os.urandom({size})
print("uploading", flush=True)
store.publish({path!r}, data)
print("done", flush=True)
"""


@pytest.mark.parametrize("step", [0, 1])
def test_sigkill_during_a_large_upload_leaves_no_visible_partial_file(lake, step):
    import json
    size = 64 * 1024 * 1024
    # Local disk writes 64 MiB in well under 0.2 s, so it is killed sooner. On a fast day moto
    # took a whole 64 MiB upload in under 0.2 s (30 Nov), so the kill that must land mid-upload
    # comes 0.02 s after the upload starts.
    delay = {"local": [0.002, 0.03]}.get(lake.kind, [0.02, 0.6])[step]
    path = f"dt=1/killed-{delay}.parquet"
    script = UPLOADER.format(repo=str(REPO), force_multipart=inspect.getsource(force_multipart), url=lake.url, options=json.dumps(lake.storage_options), kind=lake.kind,
                             size=size, path=path)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "uploading"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    visible = [p for p in lake.store.list_files() if not any(part.startswith((".", "_")) for part in p.split("/"))]
    if path in visible:  # finished before the kill: then it must be whole
        assert len(lake.store.read(path)) == size
    else:
        assert visible == []
    # On object stores the kill surely lands mid-upload for the short delay: nothing may show.
    if step == 0 and lake.kind != "local":
        assert path not in visible


def _run_expecting_failure(tmp_path, kafka_bootstrap, url, options, topic):
    config = write_config(tmp_path, topic, kafka_bootstrap, url, storage_options=options)
    result = run_until_idle(config, idle="2s", timeout=60)
    return result


def test_missing_bucket_or_container_stops_with_a_clear_message(tmp_path, moto, azurite, fake_gcs, topic_name):
    for url, options in [("s3://no-such-bucket/lake", moto.storage_options),
                         ("abfs://no-such-container/lake", azurite.storage_options),
                         ("gs://no-such-bucket/lake", fake_gcs.storage_options)]:
        result = _run_expecting_failure(tmp_path, "127.0.0.1:1", url, options, topic_name)
        assert result.returncode == 2, result.stderr[-2000:]
        assert url in result.stderr and "does not exist" in result.stderr and "Fix:" in result.stderr
        assert "Traceback" not in result.stderr


def test_wrong_credentials_stop_with_a_clear_message_and_no_secret(tmp_path, azurite, topic_name, monkeypatch):
    from object_stores import MotoS3Server

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "1")  # moto checks credentials after the first call
    with MotoS3Server() as strict_s3:
        strict_s3.create_bucket("locked")
        s3_options = {**strict_s3.storage_options, "secret": "WRONG-secret-value-123"}
        azurite.create_container("keyed")
        az_options = {"connection_string": azurite.connection_string.replace(azurite.ACCOUNT_KEY, "V3JvbmdLZXlXcm9uZ0tleQ==")}
        for url, options, secret in [("s3://locked/lake", s3_options, "WRONG-secret-value-123"),
                                     ("abfs://keyed/lake", az_options, "V3JvbmdLZXlXcm9uZ0tleQ==")]:
            result = _run_expecting_failure(tmp_path, "127.0.0.1:1", url, options, topic_name)
            assert result.returncode == 2, result.stderr[-2000:]
            assert url in result.stderr and "Fix:" in result.stderr
            assert ("credentials" in result.stderr or "access denied" in result.stderr)
            assert secret not in result.stderr and secret not in result.stdout
