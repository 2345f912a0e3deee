"""Amazon S3 and S3-compatible stores (s3fs: `pip install "lake-ingest[s3]"`). Create-only
publication is a conditional PUT (`If-None-Match: *`)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest_core.sink.stores import ObjectStore


@dataclass(frozen=True)
class S3Store(ObjectStore):
    name: str = "s3"
    schemes: tuple[str, ...] = ("s3", "s3a", "s3n")
    extra: str | None = "s3"

    def spark_path(self, url: str, options: dict, databricks: bool) -> str:
        """s3a:// for open-source Spark (hadoop-aws), s3:// on Databricks."""
        return f"{'s3' if databricks else 's3a'}://{url.split('://', 1)[1]}"

    def spark_options(self, options: dict) -> dict[str, str]:
        """Hadoop s3a settings for an S3-compatible endpoint named in storage_options (never
        credentials: Spark takes those from its own environment, instance role or spark-defaults)."""
        client = options.get("client_kwargs") or {}
        endpoint = client.get("endpoint_url") or options.get("endpoint_url")
        if not endpoint:
            return {}
        found = {"fs.s3a.endpoint": str(endpoint), "fs.s3a.path.style.access": "true"}
        if str(endpoint).startswith("http://"):
            found["fs.s3a.connection.ssl.enabled"] = "false"
        region = client.get("region_name")
        if region:
            found["fs.s3a.endpoint.region"] = str(region)
        return found


STORE = S3Store()
