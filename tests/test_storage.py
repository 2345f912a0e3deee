import os

import pytest

from ingest_core.sink.storage import LakeStore, StorageError, classify


def test_local_publish_is_create_only_and_leaves_no_temp_files(tmp_path):
    store = LakeStore.open(f"file://{tmp_path}/lake")
    assert store.publish("dt=1/a.parquet", b"one") is True
    assert store.publish("dt=1/a.parquet", b"two") is False
    assert store.read("dt=1/a.parquet") == b"one"
    assert os.listdir(tmp_path / "lake" / "dt=1") == ["a.parquet"]
    assert store.list_files() == ["dt=1/a.parquet"]
    assert store.read("missing") is None


def test_local_publish_drops_the_written_pages_from_the_page_cache_after_the_fsync(tmp_path, monkeypatch):
    """Written once, never read back: once fsynced, its pages are left to the kernel to drop
    (bench/page_cache.py shows what that saves); the file is whole, and a refused hint changes nothing."""
    calls = []
    plain_fsync, plain_fadvise = os.fsync, os.posix_fadvise
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd)) or plain_fsync(fd))
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, offset, length, advice: calls.append(("fadvise", fd, offset, length, advice))
                        or plain_fadvise(fd, offset, length, advice))
    store = LakeStore.open(f"file://{tmp_path}")
    assert store.publish("dt=1/a.ndjson", b"{}\n" * 1000)
    assert (tmp_path / "dt=1" / "a.ndjson").read_bytes() == b"{}\n" * 1000
    fd = calls[0][1]
    assert calls[:2] == [("fsync", fd), ("fadvise", fd, 0, 0, os.POSIX_FADV_DONTNEED)]

    def refuse(*_args):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    assert store.publish("dt=1/b.ndjson", b"{}\n")
    assert (tmp_path / "dt=1" / "b.ndjson").read_bytes() == b"{}\n"


def test_local_publish_starts_the_disk_on_each_piece_as_it_is_written_then_fsyncs(tmp_path, monkeypatch):
    """NDJSON comes in pieces: writeback of each is asked for right after it is written (the
    ranges cover the file, in order), and the fsync still comes before the name. Without
    sync_file_range (not Linux) the file is the same."""
    import sys

    import pyarrow as pa

    from ingest_core.sink.formats import Pieces
    from ingest_core.sink.stores import local

    pieces = [b"a" * 5000, pa.py_buffer(b"b" * 3000), b"", b"c" * 7]
    calls = []
    monkeypatch.setattr(local, "_sync_file_range", lambda fd, offset, count, flags: calls.append((offset, count, flags)))
    plain_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or plain_fsync(fd))
    store = LakeStore.open(f"file://{tmp_path}")
    assert store.publish("a.ndjson", Pieces(lambda: iter(pieces)))
    assert (tmp_path / "a.ndjson").read_bytes() == b"a" * 5000 + b"b" * 3000 + b"c" * 7
    assert calls[:4] == [(0, 5000, 2), (5000, 3000, 2), (8000, 7, 2), "fsync"]
    monkeypatch.setattr(local, "_sync_file_range", None)
    assert store.publish("b.ndjson", Pieces(lambda: iter(pieces)))
    assert (tmp_path / "b.ndjson").read_bytes() == (tmp_path / "a.ndjson").read_bytes()
    if sys.platform.startswith("linux"):  # the real call is there and accepted
        function = local._libc_sync_file_range()
        with open(tmp_path / "a.ndjson", "rb+") as handle:
            assert function(handle.fileno(), 0, 8007, local._SYNC_FILE_RANGE_WRITE) == 0


def test_permission_denied_is_permanent_with_a_fix(tmp_path):
    error = classify(PermissionError(13, "Permission denied"), "s3://b/x")
    assert error.permanent and "s3://b/x" in str(error) and "Fix:" in str(error)


def test_transient_errors_are_retryable():
    assert not classify(ConnectionError("reset by peer"), "s3://b/x").permanent
    assert not classify(TimeoutError("read timeout"), "s3://b/x").permanent


def test_secrets_never_appear_in_storage_errors():
    store = LakeStore.open("memory://lake", {})
    secret_store = LakeStore("s3://b/x", store.fs, store.root,
                             secrets=LakeStore.open("memory://x", {}).secrets + ("sup3rs3cret",))
    error = classify(RuntimeError("denied for key sup3rs3cret"), secret_store.url, secret_store.secrets)
    assert "sup3rs3cret" not in str(error) and "***" in str(error)


def test_secret_values_come_from_secret_keys_and_connection_strings():
    from ingest_core.sink.storage import _secret_values
    found = _secret_values({"key": "AKIA123", "secret": "s3cr3t", "client_kwargs": {"endpoint_url": "http://h:1"},
                            "connection_string": "AccountName=a;AccountKey=KEYKEY==;BlobEndpoint=http://h"})
    assert "s3cr3t" in found and "KEYKEY==" in found and "http://h:1" not in found


def test_a_listing_never_returns_the_folder_itself():
    """s3fs's find() on an empty prefix may answer with the prefix itself (when its info
    call takes it for a directory): that is not a file below it."""
    import fsspec

    from ingest_core.sink.storage import LakeStore

    class FolderItself(fsspec.AbstractFileSystem):
        def invalidate_cache(self, path=None):
            pass

        def find(self, path, **kwargs):
            return [path]

    store = LakeStore("s3://bucket/topic", FolderItself(), "bucket/topic")
    assert store.list_files() == [] and store.list_files("dt=1") == []


def test_a_gcs_upload_into_a_missing_bucket_is_permanent_and_says_so():
    """gcsfs raises FileNotFoundError(url) for every 404; on an upload URL (the bucket's object
    collection) that can only mean the bucket is missing. A missing object elsewhere stays transient."""
    for url in ("http://gcs:4443/upload/storage/v1/b/nobucket/o",
                "https://storage.googleapis.com/upload/storage/v1/b/nobucket/o?uploadType=resumable&name=x"):
        error = classify(FileNotFoundError(url), "gs://nobucket/lake")
        assert error.permanent and "does not exist" in str(error) and "Fix:" in str(error)
    assert not classify(FileNotFoundError("http://gcs/storage/v1/b/lake/o/dt%3D1%2Fa"), "gs://lake/x").permanent


def test_gcs_credential_errors_are_permanent():
    from gcsfs.retry import HttpError

    refused = classify(HttpError({"code": 401, "message": "Invalid Credentials"}), "gs://b/x")
    forbidden = classify(OSError("Forbidden: https://storage.googleapis.com/b/x\nno storage.objects.create"), "gs://b/x")
    assert refused.permanent and forbidden.permanent and "Fix:" in str(refused)
    assert not classify(HttpError({"code": 503, "message": "Backend Error"}), "gs://b/x").permanent


def test_a_gcs_service_account_key_is_a_secret_and_token_modes_are_not():
    from ingest_core.sink.storage import _secret_values
    key = "-----BEGIN PRIVATE KEY-----\nMIIEv...\n-----END PRIVATE KEY-----\n"
    found = _secret_values({"token": {"type": "service_account", "private_key": key, "private_key_id": "abc123def",
                                      "client_email": "ingest@p.iam.gserviceaccount.com"}, "project": "p"})
    assert key in found and "abc123def" in found and "ingest@p.iam.gserviceaccount.com" not in found
    assert _secret_values({"token": "anon", "endpoint_url": "http://127.0.0.1:4443"}) == ()
    error = classify(RuntimeError(f"refresh failed with {key} (invalid_grant)"), "gs://b/x", found)
    assert "PRIVATE KEY" not in str(error) and "MIIEv" not in str(error) and "***" in str(error)


@pytest.mark.parametrize("damage", [b'{\n "base": 0,\n "dead', b"", b'{"base": 0, "topic": "orders"}'])
def test_a_damaged_batch_marker_is_a_permanent_error_naming_it_and_the_fix(tmp_path, damage):
    from ingest_core.sink.ledger import Ledger, marker_path

    store = LakeStore.open(f"file://{tmp_path}")
    path = tmp_path / marker_path("orders", 3, 500)
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    with pytest.raises(StorageError) as raised:
        Ledger(store).find("orders", 3, 500)
    assert raised.value.permanent
    message = str(raised.value)
    assert message.startswith(f"file://{tmp_path}/_ingest/batches/orders/3/00000000000000000500.json: the batch marker")
    assert "Fix: restore the marker from a backup" in message and "partition 3's data files from offset 500" in message
    assert Ledger(store).find("orders", 3, 0) is None  # no marker: nothing claimed
