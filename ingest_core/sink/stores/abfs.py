"""Azure Data Lake Storage Gen2 / Blob Storage (adlfs: `pip install "lake-ingest[azure]"`), and
the Azurite emulator. Create-only publication is a conditional commit (`If-None-Match`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from ingest_core.sink.stores import ObjectStore


@dataclass(frozen=True)
class AbfsStore(ObjectStore):
    name: str = "abfs"
    schemes: tuple[str, ...] = ("abfs", "abfss", "az", "adl")
    extra: str | None = "azure"

    def spark_path(self, url: str, options: dict, databricks: bool) -> str:
        """abfss://container@account.dfs.core.windows.net/path (abfs:// for an emulator on plain http)."""
        container, _, path = url.split("://", 1)[1].partition("/")
        if "@" not in container:
            container = f"{container}@{_azure_account(options)}.dfs.core.windows.net"
        emulator = None if databricks else _emulator_endpoint(options)
        secure = emulator is None or emulator.scheme == "https"
        return f"{'abfss' if secure else 'abfs'}://{container}/{path}".rstrip("/")

    def spark_options(self, options: dict) -> dict[str, str]:
        """hadoop-azure (abfs) settings for an emulator endpoint named in storage_options (never the
        account key: Spark takes it from its own configuration). Azurite serves the Blob API only,
        on the endpoint given, often over plain http."""
        endpoint = _emulator_endpoint(options)
        if endpoint is None:
            return {}
        found = {
            "fs.azure.abfs.endpoint": endpoint.netloc,
            "fs.azure.account.hns.enabled": "false",  # a flat namespace: no ACL or DFS calls
            "fs.azure.fns.account.service.type": "BLOB",  # talk the Blob API, not the DFS one
        }
        if endpoint.scheme == "http":
            found["fs.azure.always.use.https"] = "false"
            # the default Apache HTTP client insists on an SSL socket factory, even for http
            found["fs.azure.networking.library"] = "JDK_HTTP_URL_CONNECTION"
        return found


def _azure_account(options: dict) -> str:
    if options.get("account_name"):
        return str(options["account_name"])
    match = re.search(r"AccountName=([^;]+)", str(options.get("connection_string", "")))
    return match.group(1) if match else "<storage-account>"


def _emulator_endpoint(options: dict) -> SplitResult | None:
    """The BlobEndpoint of the connection string when it is an emulator's (Azurite's): path style,
    `http(s)://host:port/<account>`. None for Azure itself and for custom domains."""
    match = re.search(r"BlobEndpoint=([^;]+)", str(options.get("connection_string", "")))
    if not match:
        return None
    endpoint = urlsplit(match.group(1).strip())
    if not endpoint.netloc or endpoint.path.strip("/") != _azure_account(options):
        return None
    return endpoint


STORE = AbfsStore()
