"""The lake's storage: create-only publication of whole files through fsspec.

A published name is never overwritten: locally the bytes go to a hidden temp file
that is hard-linked to its final name (link fails if the name exists); on object
stores fsspec's `mode="create"` makes the write conditional: `If-None-Match: *` on
S3 and Azure, `ifGenerationMatch=0` on GCS, each answered 412 when the name exists.
Either way a reader never sees a partial file, and "already exists" during a replay
proves the file is there.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid
from dataclasses import dataclass

import fsspec

from ingest_core.settings import is_secret_key
from ingest_core.sink.formats import FileData, data_bytes
from ingest_core.sink.stores import Store, gs, store_for
from ingest_core.sink.stores.local import STORE as LOCAL

log = logging.getLogger("ingest.storage")


class StorageError(Exception):
    """A storage call failed; `permanent` says retrying will not help."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


def classify(error: BaseException, url: str, secrets: tuple[str, ...] = ()) -> StorageError:
    """Turn a library error into a StorageError with the URL and a likely fix (no secrets, one line)."""
    if isinstance(error, StorageError):
        return error
    message = str(error)
    for secret in secrets:  # before cutting to one line: a secret may span lines (a PEM private key)
        message = message.replace(secret, "***")
    first_line = (message.strip().splitlines() or [""])[0][:300]
    text = f"{type(error).__name__}: {first_line}"
    lowered = f"{type(error).__name__}: {error}".lower()
    if isinstance(error, PermissionError) or getattr(error, "errno", None) in _PERMANENT_ERRNOS:
        return StorageError(
            f"access denied writing to {url} ({text}). Fix: check the credentials in "
            "output.storage_options (or the environment / workload identity) and their write permission",
            permanent=True,
        )
    if (
        "nosuchbucket" in lowered
        or "containernotfound" in lowered
        or "bucket does not exist" in lowered
        or "specified container does not exist" in lowered
        or (isinstance(error, FileNotFoundError) and gs.NO_BUCKET.search(str(error)))
    ):
        return StorageError(
            f"{url}: the bucket or container does not exist ({text}). Fix: create it, or correct output.url",
            permanent=True,
        )
    if (
        "invalidaccesskeyid" in lowered
        or "signaturedoesnotmatch" in lowered
        or "authenticationfailed" in lowered
        or "accessdenied" in lowered
        or "authorizationfailure" in lowered
        or "forbidden" in lowered
        or "failed to authenticate" in lowered
        or "invalid credentials" in lowered
        or getattr(error, "code", None) in (401, 403)
        or "invalid_grant" in lowered
    ):
        return StorageError(
            f"{url}: credentials refused ({text}). Fix: check output.storage_options or the environment's credentials",
            permanent=True,
        )
    return StorageError(f"{url}: {text}", permanent=False)


@dataclass
class LakeStore:
    """Files under one root URL. Paths given to methods are relative to the root."""

    url: str
    fs: fsspec.AbstractFileSystem
    root: str
    secrets: tuple[str, ...] = ()  # values to keep out of error messages

    @classmethod
    def open(cls, url: str, storage_options: dict | None = None) -> LakeStore:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        if _is_local(fs):
            root = os.path.abspath(root)
        return cls(url=url, fs=fs, root=root.rstrip("/"), secrets=_secret_values(storage_options or {}))

    @property
    def is_local(self) -> bool:
        return _is_local(self.fs)

    @property
    def kind(self) -> Store:
        """How files are published: the local store for a local filesystem, else by URL scheme."""
        return LOCAL if self.is_local else store_for(self.url)

    def full_path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def publish(self, relative: str, data: FileData) -> bool:
        """Create `relative` with `data`, atomically. True if created, False if it already existed.
        `data` may be pieces (NDJSON text): written one by one locally, joined into bytes elsewhere."""
        path = self.full_path(relative)
        try:
            try:
                return self.kind.publish(self.fs, path, data)
            except FileExistsError:
                return self._check_existing(relative, path, data_bytes(data))
        except Exception as error:  # noqa: BLE001 - every library error is classified below
            raise classify(error, self.url, self.secrets) from error

    def _check_existing(self, relative: str, path: str, data: bytes) -> bool:
        """The name exists: a replay, or a retried request that had in fact succeeded. A published
        name never changes content, so the object is kept either way; a size that differs from
        ours (another library version encoding the same rows differently, say) is logged."""
        self.fs.invalidate_cache(path)
        size = self.fs.size(path)
        if size != len(data):
            log.warning(
                "%s/%s already exists with %s bytes where this run made %d; keeping the published file",
                self.url,
                relative,
                size,
                len(data),
                extra={"event": "exists_other_size", "path": relative},
            )
        return False

    def read(self, relative: str) -> bytes | None:
        """The bytes of `relative`, or None if there is no such file."""
        path = self.full_path(relative)
        try:
            data = self.fs.cat_file(path)  # a plain GET: no cached listing decides what exists
            self.fs.invalidate_cache(path)
            size = self.fs.size(path)
            if len(data) != size:
                # Seen after outages: a reused connection handed back a short body.
                raise StorageError(f"{self.url}/{relative}: read {len(data)} of {size} bytes", permanent=False)
            return data
        except FileNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001
            raise classify(error, self.url, self.secrets) from error

    def read_many(self, relatives: list[str]) -> dict[str, bytes]:
        """The bytes of many files at once (concurrent GETs on object stores), by relative path."""
        if not relatives:
            return {}
        full = [self.full_path(r) for r in relatives]
        try:
            found = self.fs.cat(full)
        except Exception as error:  # noqa: BLE001
            raise classify(error, self.url, self.secrets) from error
        by_full = {self.fs._strip_protocol(k): v for k, v in found.items()}
        return {r: by_full[self.fs._strip_protocol(f)] for r, f in zip(relatives, full, strict=False)}

    def list_files(self, relative: str = "") -> list[str]:
        """Every file below `relative`, as paths relative to the root, sorted."""
        base = self.full_path(relative) if relative else self.root
        try:
            self.fs.invalidate_cache(base)  # fsspec caches listings; ours must be current
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except Exception as error:  # noqa: BLE001
            raise classify(error, self.url, self.secrets) from error
        prefix = self.root.rstrip("/") + "/"
        # s3fs's find() returns the folder itself when nothing is below it and a listing
        # calls it a directory (seen against moto under load): never a file below it.
        found = [p for p in found if p.rstrip("/") != base.rstrip("/")]
        return sorted(p[len(prefix) :] if p.startswith(prefix) else p for p in found)

    def check_writable(self) -> None:
        """Fail fast with a clear message when the root cannot be written (permanent errors)."""
        probe = f"_ingest/.probe-{uuid.uuid4().hex}"
        self.publish(probe, b"")
        try:
            self.fs.rm(self.full_path(probe))
        except Exception:  # noqa: BLE001 - a leftover probe in _ingest/ is harmless
            pass


def _secret_values(options: dict) -> tuple[str, ...]:
    """The secret-looking values in storage options (and the key parts of connection strings)."""
    found: list[str] = []

    def walk(value, key: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, str(name))
        elif isinstance(value, str) and value and is_secret_key(key) and value not in gs.TOKEN_MODES:
            found.append(value)
            found.extend(
                part.split("=", 1)[1]
                for part in value.split(";")
                if part.split("=", 1)[0].lower() in ("accountkey", "sharedaccesssignature") and "=" in part
            )

    walk(options, "")
    return tuple(sorted(set(found), key=len, reverse=True))


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols
