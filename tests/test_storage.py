import os


from ingest_core.storage import LakeStore, classify


def test_local_publish_is_create_only_and_leaves_no_temp_files(tmp_path):
    store = LakeStore.open(f"file://{tmp_path}/lake")
    assert store.publish("dt=1/a.parquet", b"one") is True
    assert store.publish("dt=1/a.parquet", b"two") is False
    assert store.read("dt=1/a.parquet") == b"one"
    assert os.listdir(tmp_path / "lake" / "dt=1") == ["a.parquet"]
    assert store.list_files() == ["dt=1/a.parquet"]
    assert store.read("missing") is None


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
    from ingest_core.storage import _secret_values
    found = _secret_values({"key": "AKIA123", "secret": "s3cr3t", "client_kwargs": {"endpoint_url": "http://h:1"},
                            "connection_string": "AccountName=a;AccountKey=KEYKEY==;BlobEndpoint=http://h"})
    assert "s3cr3t" in found and "KEYKEY==" in found and "http://h:1" not in found


def test_a_listing_never_returns_the_folder_itself():
    """s3fs's find() on an empty prefix may answer with the prefix itself (when its info
    call takes it for a directory): that is not a file below it."""
    import fsspec

    from ingest_core.storage import LakeStore

    class FolderItself(fsspec.AbstractFileSystem):
        def invalidate_cache(self, path=None):
            pass

        def find(self, path, **kwargs):
            return [path]

    store = LakeStore("s3://bucket/topic", FolderItself(), "bucket/topic")
    assert store.list_files() == [] and store.list_files("dt=1") == []
